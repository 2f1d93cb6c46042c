"""The public catalog (hospitals, department tree, doctors, fees) and its staff management."""
from __future__ import annotations

import pytest

from guahao.catalog import service as catalog_service
from guahao.catalog.schemas import DepartmentCreate, DoctorCreate, HospitalCreate
from guahao.core.errors import NotFound
from tests.builders import auth, make_department, make_doctor, make_hospital, make_staff

TIANANMEN = (39.9087, 116.3975)


def hospital_data(**fields) -> HospitalCreate:
    base = dict(name="测试医院", level="三级甲等", city="北京市", district="东城区", address="测试路1号",
                phone="010-12345678", latitude=39.91, longitude=116.41)
    return HospitalCreate(**{**base, **fields})


async def new_hospital(db, clock, **fields) -> int:
    async with db.begin() as s:
        return (await catalog_service.do_create_hospital(s, hospital_data(**fields), clock.now())).id


async def operator(db, clock) -> dict[str, str]:
    return auth((await make_staff(db, clock.now(), role="platform_operator", hospital_id=None))[1])


async def staff_of(db, clock, hospital_id: int, role: str = "hospital_admin") -> dict[str, str]:
    return auth((await make_staff(db, clock.now(), role=role, hospital_id=hospital_id))[1])


# --- hospitals ------------------------------------------------------------------------------

async def test_operator_onboards_hospital_with_default_rules_and_fees(client, db, clock):
    body = hospital_data(name="北京协和医院").model_dump()
    r = await client.post("/api/v1/staff/hospitals", json=body, headers=await operator(db, clock))
    assert r.status_code == 201, r.text
    hid = r.json()["id"]
    assert r.json()["his_mode"] == "local" and r.json()["active"] is True

    detail = (await client.get(f"/api/v1/hospitals/{hid}")).json()
    assert detail["name"] == "北京协和医院"
    assert detail["rules"]["hold_minutes"] == 15
    assert detail["rules"]["release_days_ahead"] == 7 and detail["rules"]["release_time"] == "08:00"
    assert detail["rules"]["cancel_deadline"] == "就诊前一日24:00前可在线取消"

    fees = (await client.get(f"/api/v1/staff/hospitals/{hid}/fees", headers=await operator(db, clock))).json()
    assert len(fees) == 15 and all(f["total"] == f["registration_fee"] + f["consultation_fee"] for f in fees)


async def test_hospital_list_filters_by_city_district_level_and_keyword(client, db, clock):
    await new_hospital(db, clock, name="北京协和医院", district="东城区")
    await new_hospital(db, clock, name="北京朝阳医院", district="朝阳区", level="三级乙等")
    await new_hospital(db, clock, name="复旦大学附属华山医院", city="上海市", district="静安区")

    async def names(**params):
        page = (await client.get("/api/v1/hospitals", params=params)).json()
        assert page["total"] == len(page["items"])
        return sorted(h["name"] for h in page["items"])

    assert await names(city="北京市") == ["北京协和医院", "北京朝阳医院"]
    assert await names(city="北京市", district="朝阳区") == ["北京朝阳医院"]
    assert await names(level="三级甲等") == ["北京协和医院", "复旦大学附属华山医院"]
    assert await names(keyword="协和") == ["北京协和医院"]
    assert await names(keyword="huashan") == ["复旦大学附属华山医院"]
    assert await names(keyword="bjcy") == ["北京朝阳医院"]
    assert await names(keyword="%") == []


async def test_nearby_orders_by_great_circle_distance(client, db, clock):
    far = await new_hospital(db, clock, name="上海医院", city="上海市", latitude=31.2304, longitude=121.4737)
    mid = await new_hospital(db, clock, name="海淀医院", latitude=39.9990, longitude=116.3265)
    near = await new_hospital(db, clock, name="王府井医院", latitude=39.9139, longitude=116.4109)

    r = await client.get("/api/v1/hospitals", params={"near": f"{TIANANMEN[0]},{TIANANMEN[1]}"})
    items = r.json()["items"]
    assert [h["id"] for h in items] == [near, mid, far]
    assert items[0]["distance_km"] == pytest.approx(1.28, abs=0.02)
    assert items[1]["distance_km"] == pytest.approx(11.7, abs=0.1)
    assert items[2]["distance_km"] == pytest.approx(1068, abs=5)  # Beijing - Shanghai

    same = await client.get("/api/v1/hospitals", params={"lat": TIANANMEN[0], "lng": TIANANMEN[1]})
    assert [h["id"] for h in same.json()["items"]] == [near, mid, far]
    page = (await client.get("/api/v1/hospitals", params={"near": "39.9087,116.3975", "limit": 1, "offset": 1})).json()
    assert page["total"] == 3 and [h["id"] for h in page["items"]] == [mid]
    within = (await client.get("/api/v1/hospitals", params={"near": "39.9087,116.3975", "radius_km": 20})).json()
    assert [h["id"] for h in within["items"]] == [near, mid] and within["total"] == 2
    plain = (await client.get("/api/v1/hospitals")).json()["items"]
    assert all(h["distance_km"] is None for h in plain)


@pytest.mark.parametrize("params", [{"near": "abc"}, {"near": "91,116"}, {"lat": 39.9}, {"radius_km": 5}])
async def test_bad_point_is_invalid_request(client, params):
    r = await client.get("/api/v1/hospitals", params=params)
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"


async def test_inactive_hospital_is_hidden_from_the_public_but_not_from_its_operator(client, db, clock):
    hid = await new_hospital(db, clock)
    r = await client.patch(f"/api/v1/staff/hospitals/{hid}", json={"active": False}, headers=await operator(db, clock))
    assert r.status_code == 200 and r.json()["active"] is False
    assert (await client.get(f"/api/v1/hospitals/{hid}")).status_code == 404
    assert (await client.get("/api/v1/hospitals")).json()["total"] == 0
    staff_view = await client.get(f"/api/v1/staff/hospitals/{hid}", headers=await staff_of(db, clock, hid))
    assert staff_view.status_code == 200


async def test_unknown_ids_are_not_found_problems(client):
    for path, what in (("/api/v1/hospitals/999999", "医院"), ("/api/v1/departments/999999", "科室"),
                       ("/api/v1/doctors/999999", "医生"), ("/api/v1/hospitals/999999/departments", "医院")):
        r = await client.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "not_found" and what in r.json()["detail"]


# --- departments and doctors ----------------------------------------------------------------

async def test_department_tree_has_two_levels_sorted_by_sort_order_then_id(client, db, clock):
    hid = await make_hospital(db, clock.now())
    internal = await make_department(db, hid, name="内科", sort_order=2)
    surgery = await make_department(db, hid, name="外科", sort_order=1)
    cardio = await make_department(db, hid, name="心内科", parent_id=internal, sort_order=1)
    gastro = await make_department(db, hid, name="消化内科", parent_id=internal, sort_order=0)
    general = await make_department(db, hid, name="普通内科", parent_id=internal, sort_order=1)

    tree = (await client.get(f"/api/v1/hospitals/{hid}/departments")).json()
    assert [(n["id"], [c["id"] for c in n["children"]]) for n in tree] == [
        (surgery, []), (internal, [gastro, cardio, general])]
    assert all(c["children"] == [] for c in tree[1]["children"])


async def test_department_shows_restrictions_in_callers_language(client, db, clock):
    hid = await make_hospital(db, clock.now(), name="妇儿医院")
    top = await make_department(db, hid, name="妇产科")
    dep = await make_department(db, hid, name="妇科", parent_id=top, min_age=14, allowed_sex="F")
    body = (await client.get(f"/api/v1/departments/{dep}")).json()
    assert body["hospital_name"] == "妇儿医院" and body["parent_name"] == "妇产科"
    assert body["restrictions"] == {"min_age": 14, "max_age": None, "allowed_sex": "F", "allowed_sex_label": "女"}
    en = (await client.get(f"/api/v1/departments/{dep}", headers={"Accept-Language": "en"})).json()
    assert en["restrictions"]["allowed_sex_label"] == "Female"
    assert [c["id"] for c in (await client.get(f"/api/v1/departments/{top}")).json()["children"]] == [dep]


async def test_doctor_shows_fees_for_its_level_and_title(client, db, clock):
    hid = await make_hospital(db, clock.now())  # expert/chief: 500 + 5000 fen
    dep = await make_department(db, hid, name="心内科")
    chief = await make_doctor(db, hid, dep, name="张伟", title="chief", registration_level="expert")
    unpriced = await make_doctor(db, hid, dep, name="李娜", title="resident", registration_level="special")

    body = (await client.get(f"/api/v1/doctors/{chief}")).json()
    assert body["fees"] == {"registration_fee": 500, "consultation_fee": 5000, "total": 5500}
    assert (body["title"], body["title_label"]) == ("chief", "主任医师")
    assert (body["registration_level"], body["registration_level_label"]) == ("expert", "专家号")
    assert body["department_name"] == "心内科" and body["hospital_name"] == "测试医院"
    assert (await client.get(f"/api/v1/doctors/{unpriced}")).json()["fees"] is None


async def test_english_labels_follow_accept_language(client, db, clock):
    hid = await make_hospital(db, clock.now())
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep, title="associate_chief", registration_level="expert")
    en = {"Accept-Language": "en-US,en;q=0.9"}
    body = (await client.get(f"/api/v1/doctors/{doc}", headers=en)).json()
    assert body["title_label"] == "Associate chief physician" and body["registration_level_label"] == "Expert"
    hospital = (await client.get(f"/api/v1/hospitals/{hid}", headers=en)).json()
    assert hospital["level_label"] == "Tertiary, grade A"
    assert hospital["rules"]["cancel_deadline"] == "Online cancellation until 24:00 on the day before the visit"
    listed = (await client.get(f"/api/v1/departments/{dep}/doctors", headers={"Accept-Language": "zh-CN"})).json()
    assert listed[0]["title_label"] == "副主任医师"


async def test_department_doctors_lists_active_doctors_of_it_and_its_children_by_title(client, db, clock):
    hid = await make_hospital(db, clock.now())
    top = await make_department(db, hid, name="内科")
    child = await make_department(db, hid, name="心内科", parent_id=top)
    resident = await make_doctor(db, hid, top, name="王芳", title="resident", registration_level="general")
    chief = await make_doctor(db, hid, child, name="赵强", title="chief")
    retired = await make_doctor(db, hid, child, name="钱进", title="chief")
    r = await client.patch(f"/api/v1/staff/doctors/{retired}", json={"active": False},
                           headers=await staff_of(db, clock, hid))
    assert r.status_code == 200 and r.json()["active"] is False

    assert [d["id"] for d in (await client.get(f"/api/v1/departments/{top}/doctors")).json()] == [chief, resident]
    assert [d["id"] for d in (await client.get(f"/api/v1/departments/{child}/doctors")).json()] == [chief]
    assert (await client.get(f"/api/v1/doctors/{retired}")).status_code == 404


# --- staff management -----------------------------------------------------------------------

async def test_hospital_admin_manages_departments_doctors_and_fees_of_own_hospital(client, db, clock):
    hid = await new_hospital(db, clock)
    admin = await staff_of(db, clock, hid)
    r = await client.post(f"/api/v1/staff/hospitals/{hid}/departments", json={"name": "内科"}, headers=admin)
    assert r.status_code == 201, r.text
    top = r.json()["id"]
    r = await client.post(f"/api/v1/staff/hospitals/{hid}/departments",
                          json={"name": "儿内科", "parent_id": top, "max_age": 14}, headers=admin)
    assert r.status_code == 201 and r.json()["parent_name"] == "内科"
    child = r.json()["id"]
    r = await client.post(f"/api/v1/staff/hospitals/{hid}/doctors", headers=admin,
                          json={"department_id": child, "name": "张伟", "title": "chief", "registration_level": "expert"})
    assert r.status_code == 201 and r.json()["fees"]["total"] == 100 + 6000  # the default price list
    doctor = r.json()["id"]

    rows = [{"registration_level": "expert", "title": "chief", "registration_fee": 0, "consultation_fee": 8000}]
    r = await client.put(f"/api/v1/staff/hospitals/{hid}/fees", json=rows, headers=admin)
    assert r.status_code == 200 and [f["total"] for f in r.json()] == [8000]
    assert (await client.get(f"/api/v1/doctors/{doctor}")).json()["fees"]["consultation_fee"] == 8000

    r = await client.patch(f"/api/v1/staff/departments/{child}", json={"name": "小儿内科"}, headers=admin)
    assert r.status_code == 200 and r.json()["name"] == "小儿内科"
    r = await client.patch(f"/api/v1/staff/hospitals/{hid}", json={"introduction": "百年老院"}, headers=admin)
    assert r.status_code == 200 and r.json()["introduction"] == "百年老院"


async def test_fee_rows_must_be_non_negative_integers_and_unique(client, db, clock):
    hid = await new_hospital(db, clock)
    admin = await staff_of(db, clock, hid)
    row = {"registration_level": "general", "title": "none", "registration_fee": 500, "consultation_fee": 0}
    for bad in ([{**row, "registration_fee": -1}], [{**row, "consultation_fee": 1.5}], [{**row, "title": "boss"}]):
        r = await client.put(f"/api/v1/staff/hospitals/{hid}/fees", json=bad, headers=admin)
        assert r.status_code == 422 and r.json()["code"] == "invalid_request", bad
    r = await client.put(f"/api/v1/staff/hospitals/{hid}/fees", json=[row, row], headers=admin)
    assert r.status_code == 422 and r.json()["code"] == "duplicate_fee_rule"
    assert len((await client.get(f"/api/v1/staff/hospitals/{hid}/fees", headers=admin)).json()) == 15


async def test_fees_for_uses_the_none_title_for_general_clinics_and_refuses_unpriced(db, clock):
    hid = await make_hospital(db, clock.now())
    async with db.read() as s:
        assert await catalog_service.fees_for(s, hid, "general", None) == (500, 0)
        assert await catalog_service.fees_for(s, hid, "expert", "chief") == (500, 5000)
        with pytest.raises(catalog_service.FeeNotConfigured) as err:
            await catalog_service.fees_for(s, hid, "special", "chief")
    assert err.value.code == "fee_not_configured"


async def test_staff_of_another_hospital_get_404_and_other_roles_403(client, db, clock):
    x = await make_hospital(db, clock.now(), name="X医院")
    y = await make_hospital(db, clock.now(), name="Y医院")
    y_dep = await make_department(db, y)
    y_doc = await make_doctor(db, y, y_dep)
    admin_x = await staff_of(db, clock, x)

    for method, path, body in (
        ("PATCH", f"/api/v1/staff/departments/{y_dep}", {"name": "改名"}),
        ("PATCH", f"/api/v1/staff/doctors/{y_doc}", {"specialty": "心衰"}),
        ("POST", f"/api/v1/staff/hospitals/{y}/departments", {"name": "新科室"}),
        ("POST", f"/api/v1/staff/hospitals/{y}/doctors", {"department_id": y_dep, "name": "王五", "title": "resident"}),
        ("PUT", f"/api/v1/staff/hospitals/{y}/fees", []),
        ("PATCH", f"/api/v1/staff/hospitals/{y}", {"introduction": "x"}),
        ("GET", f"/api/v1/staff/hospitals/{y}/fees", None),
    ):
        r = await client.request(method, path, json=body, headers=admin_x)
        assert r.status_code == 404, (method, path, r.text)
    # X's admin cannot attach a doctor of X to Y's department either
    r = await client.post(f"/api/v1/staff/hospitals/{x}/doctors", headers=admin_x,
                          json={"department_id": y_dep, "name": "王五", "title": "resident"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"

    desk = await staff_of(db, clock, y, role="front_desk")
    r = await client.patch(f"/api/v1/staff/departments/{y_dep}", json={"name": "改名"}, headers=desk)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await client.post("/api/v1/staff/hospitals", json=hospital_data().model_dump(), headers=admin_x)
    assert r.status_code == 403
    r = await client.patch(f"/api/v1/staff/hospitals/{x}", json={"his_mode": "synced"}, headers=admin_x)
    assert r.status_code == 403
    r = await client.patch(f"/api/v1/staff/hospitals/{x}", json={"his_mode": "synced"}, headers=await operator(db, clock))
    # the operator may, once the hospital has a HIS connection (tests/test_his_connection_api.py)
    assert r.status_code == 409 and r.json()["code"] == "his_connection_missing"
    assert (await client.post("/api/v1/staff/hospitals", json={})).status_code == 401
    assert (await client.get(f"/api/v1/departments/{y_dep}")).json()["name"] == "内科"  # untouched


async def test_departments_have_at_most_two_levels(client, db, clock):
    hid = await new_hospital(db, clock)
    admin = await staff_of(db, clock, hid)
    top = await make_department(db, hid, name="内科")
    other = await make_department(db, hid, name="外科")
    child = await make_department(db, hid, name="心内科", parent_id=top)

    r = await client.post(f"/api/v1/staff/hospitals/{hid}/departments", json={"name": "心衰组", "parent_id": child},
                          headers=admin)
    assert r.status_code == 422 and r.json()["code"] == "department_depth"
    # a department with children cannot move under another one, nor under itself
    for department, parent in ((top, other), (other, other), (other, child)):
        r = await client.patch(f"/api/v1/staff/departments/{department}", json={"parent_id": parent}, headers=admin)
        assert r.status_code == 422 and r.json()["code"] == "department_depth", (department, parent)
    r = await client.patch(f"/api/v1/staff/departments/{child}", json={"parent_id": other}, headers=admin)
    assert r.status_code == 200 and r.json()["parent_id"] == other
    r = await client.patch(f"/api/v1/staff/departments/{child}", json={"parent_id": None}, headers=admin)
    assert r.status_code == 200 and r.json()["parent_id"] is None


async def test_sibling_departments_have_distinct_names(client, db, clock):
    hid = await new_hospital(db, clock)
    admin = await staff_of(db, clock, hid)
    await make_department(db, hid, name="内科")
    r = await client.post(f"/api/v1/staff/hospitals/{hid}/departments", json={"name": "内科"}, headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "department_name_taken"
    async with db.begin() as s:  # the service refuses the same way
        with pytest.raises(catalog_service.DepartmentNameTaken):
            await catalog_service.do_create_department(s, hid, DepartmentCreate(name="内科"))


async def test_doctor_must_belong_to_a_department_of_the_same_hospital(db, clock):
    x, y = await new_hospital(db, clock), await new_hospital(db, clock, name="另一家")
    y_dep = await make_department(db, y)
    async with db.begin() as s:
        with pytest.raises(NotFound):
            await catalog_service.do_create_doctor(s, x, DoctorCreate(department_id=y_dep, name="王五", title="resident"))
