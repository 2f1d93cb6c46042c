"""Staff: password login, roles per hospital, staff creation, hospital rules and the audit log."""
from __future__ import annotations

import itertools

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from guahao.catalog import rules as hospital_rules
from guahao.catalog.models import HospitalRules
from guahao.core.audit import AuditEntry
from guahao.core.deps import SESSION_COOKIE
from guahao.core.errors import NotFound
from guahao.staff import service as staff_service
from guahao.staff.errors import InvalidRole, RoleScope, UsernameTaken, WeakPassword
from guahao.staff.models import StaffUser
from tests.builders import auth, make_account, make_hospital, make_staff

PASSWORD = "correct horse battery"
_names = itertools.count(1)


async def create_user(db, clock, *, role: str, hospital_id: int | None, password: str = PASSWORD) -> str:
    username = f"user{next(_names)}"
    async with db.begin() as s:
        await staff_service.do_create_staff(s, username=username, password=password, role=role,
                                            hospital_id=hospital_id, display_name="测试员", now=clock.now())
    return username


async def staff_login(client, username: str, password: str = PASSWORD):
    return await client.post("/api/v1/staff/auth/login", json={"username": username, "password": password})


async def rules_body(client, token: str, hospital_id: int, **changes) -> dict:
    r = await client.get(f"/api/v1/staff/hospitals/{hospital_id}/rules", headers=auth(token))
    assert r.status_code == 200, r.text
    return {**r.json(), **changes}


# --- login ----------------------------------------------------------------------------------

async def test_staff_login_gives_a_token_and_cookie_that_work(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    username = await create_user(db, clock, role="hospital_admin", hospital_id=hospital)
    r = await staff_login(client, username.upper())  # usernames are case-insensitive
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["staff"]["role"] == "hospital_admin"
    assert body["staff"]["hospital_id"] == hospital and "password" not in r.text
    assert "HttpOnly" in r.headers["set-cookie"] and r.headers["set-cookie"].startswith(SESSION_COOKIE)
    me = await client.get("/api/v1/staff/me", headers=auth(body["token"]))
    assert me.status_code == 200 and me.json()["username"] == username


@pytest.mark.parametrize("who", ["wrong_password", "unknown_user", "inactive_user"])
async def test_staff_login_refusals_look_the_same(client, db, clock, who):
    username = await create_user(db, clock, role="platform_operator", hospital_id=None)
    password = PASSWORD
    if who == "wrong_password":
        password = "not the password"
    elif who == "unknown_user":
        username = "nobody-here"
    else:
        async with db.begin() as s:
            (await staff_service.get_by_username(s, username)).active = False
    r = await staff_login(client, username, password)
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_credentials" and "用户名或密码" in r.json()["detail"]


async def test_staff_logout_revokes_the_token(client, db, clock):
    username = await create_user(db, clock, role="platform_operator", hospital_id=None)
    token = (await staff_login(client, username)).json()["token"]
    assert (await client.post("/api/v1/staff/auth/logout", headers=auth(token))).status_code == 204
    assert (await client.get("/api/v1/staff/me", headers=auth(token))).status_code == 401


async def test_account_and_staff_tokens_do_not_cross(client, db, clock):
    _, account_token = await make_account(db, clock.now())
    _, staff_token = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    assert (await client.get("/api/v1/staff/me", headers=auth(account_token))).status_code == 401
    assert (await client.get("/api/v1/me", headers=auth(staff_token))).status_code == 401


# --- creating staff -------------------------------------------------------------------------

async def test_operator_creates_a_hospital_admin_who_can_log_in(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    _, operator = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    r = await client.post("/api/v1/staff/users", headers=auth(operator), json={
        "username": "admin.one", "password": PASSWORD, "role": "hospital_admin", "hospital_id": hospital,
        "display_name": "王主任"})
    assert r.status_code == 201, r.text
    assert r.json()["hospital_id"] == hospital and r.json()["display_name"] == "王主任"
    assert (await staff_login(client, "admin.one")).status_code == 200
    async with db.read() as s:
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.action == "staff.create"))
    assert entry.hospital_id == hospital and entry.object_id == str(r.json()["id"])


async def test_hospital_admin_creates_only_desk_and_scheduler_users_of_own_hospital(client, db, clock):
    mine = await make_hospital(db, clock.now())
    other = await make_hospital(db, clock.now(), name="别的医院")
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=mine)

    async def create(**body):
        base = {"username": f"new.user{next(_names)}", "password": PASSWORD, "role": "front_desk"}
        return await client.post("/api/v1/staff/users", headers=auth(admin), json={**base, **body})

    r = await create()
    assert r.status_code == 201 and r.json()["hospital_id"] == mine
    assert (await create(role="scheduler", hospital_id=mine)).status_code == 201
    assert (await create(role="hospital_admin")).status_code == 403
    assert (await create(role="platform_operator")).status_code == 403
    assert (await create(hospital_id=other)).status_code == 404


async def test_desk_and_scheduler_users_cannot_create_staff(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    for role in ("front_desk", "scheduler"):
        _, token = await make_staff(db, clock.now(), role=role, hospital_id=hospital)
        r = await client.post("/api/v1/staff/users", headers=auth(token), json={
            "username": f"new.user{next(_names)}", "password": PASSWORD, "role": "front_desk"})
        assert r.status_code == 403 and r.json()["code"] == "forbidden"


async def test_staff_creation_refusals(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    _, operator = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    taken = await create_user(db, clock, role="front_desk", hospital_id=hospital)

    async def create(**body):
        base = {"username": f"new.user{next(_names)}", "password": PASSWORD, "role": "front_desk", "hospital_id": hospital}
        return await client.post("/api/v1/staff/users", headers=auth(operator), json={**base, **body})

    assert (await create(username=taken)).json()["code"] == "username_taken"
    assert (await create(password="short")).json()["code"] == "invalid_request"
    assert (await create(role="platform_operator")).json()["code"] == "role_scope"
    assert (await create(hospital_id=None)).json()["code"] == "role_scope"
    assert (await create(hospital_id=hospital + 1000)).status_code == 404


async def test_create_staff_cli_writes_a_user_who_can_log_in(client, db, clock, settings):
    hospital = await make_hospital(db, clock.now())
    staff_id = await staff_service.create_staff_cli(settings, username="Desk.Li", role="front_desk",
                                                    password=PASSWORD, hospital_id=hospital, display_name="李")
    async with db.read() as s:
        user = await s.get(StaffUser, staff_id)
    assert user.username == "desk.li" and user.hospital_id == hospital and user.password_hash.startswith("$argon2")
    assert (await staff_login(client, "desk.li")).status_code == 200


@pytest.mark.parametrize("kwargs, error", [
    ({"role": "janitor", "hospital_id": None}, InvalidRole),
    ({"role": "platform_operator", "hospital_id": "hospital"}, RoleScope),
    ({"role": "scheduler", "hospital_id": None}, RoleScope),
    ({"role": "platform_operator", "hospital_id": None, "password": "123456789"}, WeakPassword),
    ({"role": "scheduler", "hospital_id": 987654}, NotFound),
    ({"role": "platform_operator", "hospital_id": None, "username": "taken"}, UsernameTaken),
])
async def test_create_staff_cli_refusals(db, clock, settings, kwargs, error):
    hospital = await make_hospital(db, clock.now())
    await staff_service.create_staff_cli(settings, username="taken", role="platform_operator", password=PASSWORD,
                                         hospital_id=None, display_name="x")
    args = {"username": "new.user", "password": PASSWORD, "display_name": "x", **kwargs}
    if args["hospital_id"] == "hospital":
        args["hospital_id"] = hospital
    with pytest.raises(error):
        await staff_service.create_staff_cli(settings, **args)


# --- hospital rules -------------------------------------------------------------------------

async def test_admin_edits_rules_and_the_change_is_audited(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    admin_id, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hospital)
    body = await rules_body(client, admin, hospital, hold_minutes=20, release_time="07:30", slot_granularity="day")
    r = await client.put(f"/api/v1/staff/hospitals/{hospital}/rules", json=body, headers=auth(admin))
    assert r.status_code == 200, r.text
    assert r.json()["hold_minutes"] == 20 and r.json()["release_time"] == "07:30"
    assert (await rules_body(client, admin, hospital))["slot_granularity"] == "day"

    r = await client.get("/api/v1/staff/audit", headers=auth(admin))
    [entry] = r.json()["items"]
    assert entry["action"] == "hospital_rules.update" and entry["staff_id"] == admin_id
    assert entry["detail"] == {"hold_minutes": [15, 20], "release_time": ["08:00", "07:30"],
                               "slot_granularity": ["time_band", "day"]}
    async with db.read() as s:
        assert (await hospital_rules.get_rules(s, hospital)).hold_minutes == 20


async def test_putting_the_same_rules_writes_no_audit_row(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hospital)
    body = await rules_body(client, admin, hospital)
    assert (await client.put(f"/api/v1/staff/hospitals/{hospital}/rules", json=body, headers=auth(admin))).status_code == 200
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(AuditEntry)) == 0


@pytest.mark.parametrize("field, value", [
    ("hold_minutes", 4), ("hold_minutes", 31), ("hold_minutes", "15"), ("release_days_ahead", 0),
    ("release_days_ahead", 91), ("release_time", "24:00"), ("release_time", "8:00"), ("reminder_time", "18:00:30"),
    ("close_minutes_before_start", -1), ("close_minutes_before_start", 1441), ("slot_granularity", "hour"),
    ("max_live_bookings_per_person", 0), ("max_live_bookings_per_person", 21),
    ("cancel_minutes_before_visit_day", 10081), ("restriction_threshold", 0), ("restriction_window_days", 366),
    ("restriction_days", 0), ("record_requirement", "maybe"), ("verification_required", "yes"),
    ("one_per_department_per_day", None),
])
async def test_invalid_rules_are_refused(client, db, clock, field, value):
    hospital = await make_hospital(db, clock.now())
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hospital)
    body = await rules_body(client, admin, hospital, **{field: value})
    r = await client.put(f"/api/v1/staff/hospitals/{hospital}/rules", json=body,
                         headers={**auth(admin), "Accept-Language": "en"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "invalid_request" and "try again" in problem["detail"]
    assert [e["loc"][-1] for e in problem["errors"]] == [field]
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(AuditEntry)) == 0


async def test_a_missing_rule_is_refused_in_chinese_by_default(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hospital)
    body = await rules_body(client, admin, hospital)
    del body["hold_minutes"]
    r = await client.put(f"/api/v1/staff/hospitals/{hospital}/rules", json=body, headers=auth(admin))
    assert r.status_code == 422 and r.json()["code"] == "invalid_request" and "请求内容有误" in r.json()["detail"]


@pytest.mark.parametrize("column, value", [("hold_minutes", 4), ("hold_minutes", 31), ("release_days_ahead", 0),
                                           ("slot_granularity", "hour"), ("record_requirement", "maybe")])
async def test_the_database_refuses_out_of_range_rules_too(db, clock, column, value):
    hospital = await make_hospital(db, clock.now())
    with pytest.raises(IntegrityError):
        async with db.begin() as s:
            row = await s.get(HospitalRules, hospital)
            setattr(row, column, value)


async def test_front_desk_reads_but_cannot_edit_rules(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    _, desk = await make_staff(db, clock.now(), role="front_desk", hospital_id=hospital)
    body = await rules_body(client, desk, hospital, hold_minutes=20)
    r = await client.put(f"/api/v1/staff/hospitals/{hospital}/rules", json=body, headers=auth(desk))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


async def test_staff_of_another_hospital_get_404_on_its_rules(client, db, clock):
    mine = await make_hospital(db, clock.now())
    other = await make_hospital(db, clock.now(), name="别的医院")
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=mine)
    _, desk = await make_staff(db, clock.now(), role="front_desk", hospital_id=mine)
    body = await rules_body(client, admin, mine)
    for token in (admin, desk):
        assert (await client.get(f"/api/v1/staff/hospitals/{other}/rules", headers=auth(token))).status_code == 404
        r = await client.put(f"/api/v1/staff/hospitals/{other}/rules", json=body, headers=auth(token))
        assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_operator_edits_any_hospital_and_gets_404_for_a_missing_one(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    _, operator = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    body = await rules_body(client, operator, hospital, restriction_days=60)
    r = await client.put(f"/api/v1/staff/hospitals/{hospital}/rules", json=body, headers=auth(operator))
    assert r.status_code == 200 and r.json()["restriction_days"] == 60
    assert (await client.get(f"/api/v1/staff/hospitals/{hospital + 999}/rules", headers=auth(operator))).status_code == 404
    r = await client.put(f"/api/v1/staff/hospitals/{hospital + 999}/rules", json=body, headers=auth(operator))
    assert r.status_code == 404


async def test_hospital_without_a_rules_row_runs_on_defaults_until_edited(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    async with db.begin() as s:
        await s.execute(delete(HospitalRules).where(HospitalRules.hospital_id == hospital))
    async with db.read() as s:
        rules = await hospital_rules.get_rules(s, hospital)
    assert (rules.hold_minutes, rules.release_days_ahead, rules.updated_at) == (15, 7, None)
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hospital)
    body = await rules_body(client, admin, hospital, hold_minutes=10)
    assert (await client.put(f"/api/v1/staff/hospitals/{hospital}/rules", json=body, headers=auth(admin))).status_code == 200
    async with db.read() as s:
        assert (await s.get(HospitalRules, hospital)).hold_minutes == 10


# --- audit log ------------------------------------------------------------------------------

async def test_audit_log_is_paginated_newest_first(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hospital)
    for minutes in (6, 7, 8, 9, 10):
        body = await rules_body(client, admin, hospital, hold_minutes=minutes)
        await client.put(f"/api/v1/staff/hospitals/{hospital}/rules", json=body, headers=auth(admin))
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"before_id": cursor} if cursor else {})}
        page = (await client.get("/api/v1/staff/audit", params=params, headers=auth(admin))).json()
        seen += [item["detail"]["hold_minutes"][1] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [10, 9, 8, 7, 6]


async def test_audit_log_is_scoped_to_the_staff_users_hospital(client, db, clock):
    mine = await make_hospital(db, clock.now())
    other = await make_hospital(db, clock.now(), name="别的医院")
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=mine)
    _, other_admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=other)
    _, desk = await make_staff(db, clock.now(), role="front_desk", hospital_id=mine)
    _, operator = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    body = await rules_body(client, other_admin, other, hold_minutes=25)
    await client.put(f"/api/v1/staff/hospitals/{other}/rules", json=body, headers=auth(other_admin))

    assert (await client.get("/api/v1/staff/audit", headers=auth(admin))).json()["items"] == []
    r = await client.get("/api/v1/staff/audit", params={"hospital_id": other}, headers=auth(admin))
    assert r.status_code == 404
    assert (await client.get("/api/v1/staff/audit", headers=auth(desk))).status_code == 403
    r = await client.get("/api/v1/staff/audit", params={"hospital_id": other}, headers=auth(operator))
    assert len(r.json()["items"]) == 1


async def test_staff_list_is_scoped_to_the_hospital(client, db, clock):
    mine = await make_hospital(db, clock.now())
    other = await make_hospital(db, clock.now(), name="别的医院")
    admin_id, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=mine)
    await make_staff(db, clock.now(), role="front_desk", hospital_id=other)
    r = await client.get("/api/v1/staff/users", headers=auth(admin))
    assert [u["id"] for u in r.json()] == [admin_id]
    assert (await client.get("/api/v1/staff/users", params={"hospital_id": other}, headers=auth(admin))).status_code == 404
