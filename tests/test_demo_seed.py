"""`guahao seed --demo`: the demo data set, seen through the public and logged-in APIs."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from guahao.catalog.models import TITLES
from guahao.config import Settings
from guahao.demo import data
from guahao.demo.seed import SeedRefused, run_seed
from guahao.scheduling.models import Schedule
from guahao.staff.models import ROLES
from tests.builders import auth

TODAY = dt.date(2026, 11, 19)  # the conftest clock: Thursday 10:00 in Shanghai


@pytest.fixture
async def seeded(db, settings, clock):
    lines: list[str] = []
    # --if-empty on the empty test database: the README's command seeds the first time
    report = await run_seed(settings, if_empty=True, clock=clock, db=db, echo=lines.append)
    assert not report.skipped
    return report, lines


async def _hospitals(client) -> list[dict]:
    r = await client.get("/api/v1/hospitals", params={"limit": 100})
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def _tree(client, hospital_id: int) -> list[dict]:
    r = await client.get(f"/api/v1/hospitals/{hospital_id}/departments")
    assert r.status_code == 200, r.text
    return r.json()


async def _all_doctors(client) -> list[dict]:
    doctors = {}
    for hospital in await _hospitals(client):
        for top in await _tree(client, hospital["id"]):
            r = await client.get(f"/api/v1/departments/{top['id']}/doctors")
            assert r.status_code == 200, r.text
            doctors.update({d["id"]: d for d in r.json()})
    return list(doctors.values())


async def _availability(client) -> list[tuple[dt.date, dict]]:
    """Every (date, schedule) of every top-level department over the 14 demo days."""
    found = []
    for hospital in await _hospitals(client):
        for top in await _tree(client, hospital["id"]):
            r = await client.get(f"/api/v1/departments/{top['id']}/availability",
                                 params={"from": TODAY.isoformat(), "days": data.SCHEDULE_DAYS})
            assert r.status_code == 200, r.text
            for day in r.json()["days"]:
                for period in day["periods"]:
                    found += [(dt.date.fromisoformat(day["date"]), s) for s in period["schedules"]]
    return found


async def _login_demo_account(client, app) -> str:
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": data.DEMO_PHONE})
    assert r.status_code == 202, r.text
    code = app.state.sms.last_code(f"+86{data.DEMO_PHONE}")
    r = await client.post("/api/v1/auth/login", json={"phone": data.DEMO_PHONE, "code": code})
    assert r.status_code == 200, r.text
    return r.json()["token"]


async def test_catalog_has_hospitals_in_two_cities_departments_doctors_and_varied_rules(client, seeded):
    hospitals = await _hospitals(client)
    assert len(hospitals) >= 3 and len({h["city"] for h in hospitals}) >= 2
    assert all(h["level"] and h["latitude"] and h["longitude"] for h in hospitals)
    by_name: dict[str, int] = {}
    for hospital in hospitals:
        tree = await _tree(client, hospital["id"])
        assert any(top["children"] for top in tree), hospital["name"]  # two levels
        if hospital["name"] == data.HOSPITALS[0].name:
            by_name = {d["name"]: d["id"] for top in tree for d in (top, *top["children"])}
    paediatrics = (await client.get(f"/api/v1/departments/{by_name['儿科']}")).json()
    gynaecology = (await client.get(f"/api/v1/departments/{by_name['妇科']}")).json()
    assert paediatrics["restrictions"]["max_age"] == 14
    assert gynaecology["restrictions"]["allowed_sex"] == "F"

    doctors = await _all_doctors(client)
    assert len(doctors) >= 20
    assert {d["title"] for d in doctors} == set(TITLES)
    assert all(d["fees"] and d["fees"]["total"] > 0 for d in doctors)
    r = await client.get("/api/v1/search", params={"q": "zhangwei"})
    assert "张伟" in {d["name"] for d in r.json()["doctors"]}

    rules = [(await client.get(f"/api/v1/hospitals/{h['id']}")).json()["rules"] for h in hospitals]
    assert {r["slot_granularity"] for r in rules} == {"day", "half_day", "time_band"}
    assert 10 in {r["hold_minutes"] for r in rules}
    assert {(r["release_days_ahead"], r["release_time"]) for r in rules} == {(7, "08:00")}


async def test_fourteen_days_of_schedules_show_every_public_state(client, db, seeded):
    found = await _availability(client)
    assert {day for day, _ in found} == {TODAY + dt.timedelta(days=n) for n in range(data.SCHEDULE_DAYS)}
    states = {s["state"] for _, s in found}
    assert {"bookable", "not_yet_released", "suspended"} <= states
    # released 7 days ahead at 08:00: today + 7 opened at 08:00 today, the later days wait
    for day, schedule in found:
        if day > TODAY + dt.timedelta(days=7):
            assert schedule["state"] in ("not_yet_released", "suspended"), (day, schedule)
            if schedule["state"] == "not_yet_released":
                assert schedule["release_at"].endswith("+08:00") and "T08:00:00" in schedule["release_at"]
        elif day > TODAY:
            assert schedule["state"] in ("bookable", "suspended"), (day, schedule)
    assert [s["schedule_id"] for _, s in found if s["state"] == "suspended"] == [seeded[0].suspended_schedule_id]
    async with db.read() as s:
        drafts = await s.scalar(select(func.count()).select_from(Schedule).where(Schedule.status == "draft"))
    assert drafts == 0


async def test_demo_account_and_one_staff_user_per_role_log_in(client, app, seeded):
    token = await _login_demo_account(client, app)
    r = await client.get("/api/v1/me/patients", headers=auth(token))
    assert r.status_code == 200, r.text
    patients = r.json()["items"]
    assert sorted(p["relationship"] for p in patients) == ["child", "self"]
    assert all(p["verification"] == "verified" for p in patients)
    assert next(p for p in patients if p["relationship"] == "child")["age"] <= 14
    # verified, so the demo account can book straight away
    me = next(p for p in patients if p["relationship"] == "self")
    slot = next(sl for _, s in await _availability(client) if s["state"] == "bookable" and s["doctor"]
                for sl in s["slots"] if sl["state"] == "bookable")
    r = await client.post("/api/v1/bookings", json={"slot_id": slot["slot_id"], "patient_id": me["id"]},
                          headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text

    roles = {}
    for person in data.STAFF:
        r = await client.post("/api/v1/staff/auth/login",
                              json={"username": person.username, "password": data.DEMO_PASSWORD})
        assert r.status_code == 200, r.text
        roles[r.json()["staff"]["role"]] = r.json()["staff"]["hospital_id"]
    assert set(roles) == set(ROLES)
    assert roles["platform_operator"] is None
    assert len({roles[r] for r in ROLES if r != "platform_operator"}) == 1  # all at the first hospital


async def test_summary_then_if_empty_is_a_no_op_and_a_plain_rerun_is_refused(client, db, settings, clock, seeded):
    report, lines = seeded
    text = "\n".join(lines)
    assert "http://127.0.0.1:8000/" in text and "http://127.0.0.1:8000/docs" in text
    assert data.DEMO_PHONE in text and data.DEMO_PASSWORD in text
    assert all(person.username in text for person in data.STAFF)
    assert "development only" in text
    assert not any(p.name in text for p in data.DEMO_PATIENTS)  # names only masked (I9)

    async with db.read() as s:
        before = await s.scalar(select(func.count()).select_from(Schedule))
    again: list[str] = []
    second = await run_seed(settings, if_empty=True, clock=clock, db=db, echo=again.append)
    assert second.skipped and not second.hospitals
    assert "already has hospitals" in "\n".join(again)
    with pytest.raises(SeedRefused, match="already has"):
        await run_seed(settings, clock=clock, db=db, echo=again.append)
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Schedule)) == before
    assert len(await _hospitals(client)) == len(report.hospitals)


async def test_refused_in_production(db, settings, clock):
    production = Settings(**{**settings.model_dump(), "env": "production", "payment_provider": "none",
                                       "sms_provider": "none", "face_check_provider": "none"})
    with pytest.raises(SeedRefused, match="production"):
        await run_seed(production, clock=clock, db=db, echo=lambda _: None)
