"""Search by Chinese text, full pinyin and initials: the right hits, ranked sensibly."""
from __future__ import annotations

import pytest

from guahao.catalog import service as catalog_service
from guahao.catalog.schemas import DepartmentCreate, DoctorCreate, HospitalCreate
from guahao.catalog.search import pinyin_keys
from tests.builders import auth, make_department, make_doctor, make_hospital, make_staff


async def build_catalog(db, clock) -> dict[str, int]:
    """Two hospitals in two cities, built through the catalog's own service functions."""
    ids: dict[str, int] = {}
    async with db.begin() as s:
        for key, name, city in (("xiehe", "北京协和医院", "北京市"), ("huashan", "复旦大学附属华山医院", "上海市")):
            h = await catalog_service.do_create_hospital(s, HospitalCreate(
                name=name, level="三级甲等", city=city, district="某区", address="某路1号", phone="010-1",
                latitude=39.9, longitude=116.4), clock.now())
            ids[key] = h.id
        for key, name, parent in (("neike", "内科", None), ("xinneike", "心内科", "neike"),
                                  ("xiaohua", "消化内科", "neike"), ("waike", "外科", None)):
            parent_id = ids[parent] if parent else None
            d = await catalog_service.do_create_department(s, ids["xiehe"], DepartmentCreate(name=name, parent_id=parent_id))
            ids[key] = d.id
        sh = await catalog_service.do_create_department(s, ids["huashan"], DepartmentCreate(name="心内科"))
        ids["sh_xinneike"] = sh.id
        for key, name, title, dep in (("zhangweiming", "张伟明", "chief", "xinneike"),
                                      ("zhangwei", "张伟", "resident", "xinneike"),
                                      ("shan", "单雄信", "attending", "waike"),
                                      ("lina", "李娜", "attending", "xiaohua")):
            doc = await catalog_service.do_create_doctor(s, ids["xiehe"], DoctorCreate(
                department_id=ids[dep], name=name, title=title))
            ids[key] = doc.id
        doc = await catalog_service.do_create_doctor(s, ids["huashan"], DoctorCreate(
            department_id=sh.id, name="张伟", title="chief"))
        ids["sh_zhangwei"] = doc.id
    return ids


async def search(client, q: str, **params) -> dict:
    r = await client.get("/api/v1/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    return r.json()


def ids_of(items: list[dict]) -> list[int]:
    return [i["id"] for i in items]


def test_pinyin_keys_of_names():
    assert pinyin_keys("心内科") == ("xinneike", "xnk")
    assert pinyin_keys("张伟", person_name=True) == ("zhangwei", "zw")
    assert pinyin_keys("B超室") == ("bchaoshi", "bcs")
    assert pinyin_keys("ＭＲＩ室") == ("mrishi", "mris")  # full-width letters, kept whole
    assert pinyin_keys("北京朝阳医院") == ("beijingchaoyangyiyuan", "bjcyyy")  # place name, not zhaoyang
    # a surname reads differently from the word: keep both readings, the surname's first
    assert pinyin_keys("单雄信", person_name=True) == ("shanxiongxin danxiongxin", "sxx dxx")
    assert pinyin_keys("曾国藩", person_name=True)[0].split()[0] == "zengguofan"


async def test_initials_and_full_pinyin_find_the_department(client, db, clock):
    ids = await build_catalog(db, clock)
    for q in ("xnk", "xinneike", "xinnei", "XinNeiKe", "xin nei ke"):
        found = await search(client, q, hospital_id=ids["xiehe"])
        assert ids_of(found["departments"])[:1] == [ids["xinneike"]], q
    found = await search(client, "xnk")
    assert set(ids_of(found["departments"])) == {ids["xinneike"], ids["sh_xinneike"]}
    assert found["departments"][0]["hospital_name"] in ("北京协和医院", "复旦大学附属华山医院")
    assert {d["parent_name"] for d in found["departments"]} == {"内科", None}


async def test_pinyin_and_initials_find_the_doctor_exact_before_longer_names(client, db, clock):
    ids = await build_catalog(db, clock)
    found = await search(client, "zhangwei", hospital_id=ids["xiehe"])
    assert ids_of(found["doctors"]) == [ids["zhangwei"], ids["zhangweiming"]]
    found = await search(client, "zw", hospital_id=ids["xiehe"])
    assert ids_of(found["doctors"]) == [ids["zhangwei"], ids["zhangweiming"]]
    doctor = found["doctors"][0]
    assert (doctor["title"], doctor["title_label"]) == ("resident", "住院医师")
    assert doctor["department_name"] == "心内科" and doctor["hospital_name"] == "北京协和医院"
    found = await search(client, "张伟", hospital_id=ids["xiehe"])
    assert ids_of(found["doctors"]) == [ids["zhangwei"], ids["zhangweiming"]]


async def test_higher_title_goes_first_among_equal_matches(client, db, clock):
    ids = await build_catalog(db, clock)
    found = await search(client, "zhangwei")
    # two 张伟 match equally well: the chief of 华山 before the resident of 协和; 张伟明 after both
    assert ids_of(found["doctors"]) == [ids["sh_zhangwei"], ids["zhangwei"], ids["zhangweiming"]]


async def test_chinese_substring_finds_departments_exact_name_first(client, db, clock):
    ids = await build_catalog(db, clock)
    found = await search(client, "内科", hospital_id=ids["xiehe"])
    assert ids_of(found["departments"]) == [ids["neike"], ids["xinneike"], ids["xiaohua"]]
    assert found["hospitals"] == [] and found["doctors"] == []


async def test_surname_is_found_by_either_reading(client, db, clock):
    ids = await build_catalog(db, clock)
    for q in ("shanxiongxin", "danxiongxin", "sxx", "dxx"):
        assert ids_of((await search(client, q))["doctors"]) == [ids["shan"]], q


async def test_hospitals_are_searched_too_and_filtered_by_city(client, db, clock):
    ids = await build_catalog(db, clock)
    found = await search(client, "huashan")
    assert ids_of(found["hospitals"]) == [ids["huashan"]]
    assert found["hospitals"][0]["level_label"] == "三级甲等"
    found = await search(client, "xnk", city="上海市")
    assert ids_of(found["departments"]) == [ids["sh_xinneike"]]
    found = await search(client, "bjxh", city="上海市")
    assert found["hospitals"] == []


@pytest.mark.parametrize("q", ["%", "_", "%%", "x%k", "\\", "'", "内%"])
async def test_like_wildcards_in_the_query_match_nothing(client, db, clock, q):
    await build_catalog(db, clock)
    found = await search(client, q)
    assert found["hospitals"] == found["departments"] == found["doctors"] == []


@pytest.mark.parametrize("q", ["", "   ", "x" * 51])
async def test_empty_or_overlong_query_is_invalid(client, q):
    r = await client.get("/api/v1/search", params={"q": q})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_inactive_doctors_and_hospitals_are_not_found(client, db, clock):
    ids = await build_catalog(db, clock)
    operator = auth((await make_staff(db, clock.now(), role="platform_operator", hospital_id=None))[1])
    await client.patch(f"/api/v1/staff/doctors/{ids['zhangweiming']}", json={"active": False}, headers=operator)
    await client.patch(f"/api/v1/staff/hospitals/{ids['huashan']}", json={"active": False}, headers=operator)
    found = await search(client, "zw")
    assert ids_of(found["doctors"]) == [ids["zhangwei"]]
    assert ids_of(found["departments"]) == []
    assert ids_of((await search(client, "xnk"))["departments"]) == [ids["xinneike"]]


async def test_renaming_refreshes_the_search_keys(client, db, clock):
    ids = await build_catalog(db, clock)
    admin = auth((await make_staff(db, clock.now(), role="hospital_admin", hospital_id=ids["xiehe"]))[1])
    r = await client.patch(f"/api/v1/staff/departments/{ids['waike']}", json={"name": "普通外科"}, headers=admin)
    assert r.status_code == 200
    assert ids_of((await search(client, "ptwk"))["departments"]) == [ids["waike"]]
    assert (await search(client, "waike"))["departments"][0]["name"] == "普通外科"


async def test_rows_written_without_the_service_still_get_keys(client, db, clock):
    # builders, seeders and admin tools write ORM rows directly: a mapper event fills the keys
    hid = await make_hospital(db, clock.now(), name="朝阳医院")
    dep = await make_department(db, hid, name="消化内科")
    doc = await make_doctor(db, hid, dep, name="曾国藩")
    found = await search(client, "zgf")
    assert ids_of(found["doctors"]) == [doc]
    assert ids_of((await search(client, "xhnk"))["departments"]) == [dep]
    assert ids_of((await search(client, "chaoyang"))["hospitals"]) == [hid]


async def test_search_labels_follow_accept_language(client, db, clock):
    ids = await build_catalog(db, clock)
    r = await client.get("/api/v1/search", params={"q": "zhangweiming"}, headers={"Accept-Language": "en"})
    doctor = r.json()["doctors"][0]
    assert doctor["id"] == ids["zhangweiming"] and doctor["title_label"] == "Chief physician"
    assert doctor["registration_level_label"] == "General"
