"""Public availability: states around the release instant and the closing time, in
Asia/Shanghai, with a frozen clock; drafts never shown; only the platform pool sold."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from guahao.scheduling import avail_cache, service
from guahao.scheduling.models import Schedule
from tests.builders import auth, make_department, make_doctor, make_hospital, make_staff

UTC = dt.UTC
VISIT_DAY = dt.date(2026, 11, 26)  # a Thursday; 08:00 local = 00:00 UTC


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


async def setup_clinic(client, db, clock, *, publish=True, template=None, **rules):
    """A hospital with one doctor holding a Thursday morning clinic, generated for the visit day."""
    clock.set(utc(2026, 11, 18, 12, 0))  # Wednesday 20:00 local: before anything is released
    now = clock.now()
    hospital_id = await make_hospital(db, now, **rules)
    department_id = await make_department(db, hospital_id)
    doctor_id = await make_doctor(db, hospital_id, department_id)
    _, token = await make_staff(db, now, role="scheduler", hospital_id=hospital_id)
    headers = auth(token)
    body = {"doctor_id": doctor_id, "weekday": 3, "period": "morning", "platform_capacity": 16,
            "onsite_capacity": 4} | (template or {})
    response = await client.post(f"/api/v1/staff/hospitals/{hospital_id}/schedule-templates", json=body,
                                 headers=headers)
    assert response.status_code == 201, response.text
    response = await client.post(f"/api/v1/staff/hospitals/{hospital_id}/schedules/generate", headers=headers,
                                 json={"from_date": VISIT_DAY.isoformat(), "to_date": VISIT_DAY.isoformat(),
                                       "publish": publish})
    assert response.json()["created"] == 1, response.text
    return {"hospital": hospital_id, "department": department_id, "doctor": doctor_id, "headers": headers,
            "schedule": response.json()["schedule_ids"][0]}


async def visit_day(client, clinic, *, by="doctor", **params):
    url = (f"/api/v1/doctors/{clinic['doctor']}/availability" if by == "doctor"
           else f"/api/v1/departments/{clinic['department']}/availability")
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    days = {d["date"]: d for d in response.json()["days"]}
    return days.get(VISIT_DAY.isoformat())


def only_schedule(day):
    [period] = day["periods"]
    [schedule] = period["schedules"]
    return schedule


async def test_one_second_before_release_is_not_yet_released_then_bookable(client, db, clock):
    clinic = await setup_clinic(client, db, clock)
    clock.set(utc(2026, 11, 18, 23, 59, 59))  # 07:59:59 local, seven days ahead
    schedule = only_schedule(await visit_day(client, clinic))
    assert schedule["state"] == "not_yet_released"
    assert schedule["release_at"] == "2026-11-19T08:00:00+08:00"
    assert {s["state"] for s in schedule["slots"]} == {"not_yet_released"}
    assert schedule["slots"][0]["release_at"] == "2026-11-19T08:00:00+08:00"

    clock.set(utc(2026, 11, 19, 0, 0, 0))  # 08:00:00 local, the release instant
    schedule = only_schedule(await visit_day(client, clinic))
    assert schedule["state"] == "bookable" and schedule["release_at"] is None
    assert {s["state"] for s in schedule["slots"]} == {"bookable"}
    assert all(s["release_at"] is None for s in schedule["slots"])


async def test_release_at_local_midnight_is_the_previous_day_in_utc(client, db, clock):
    clinic = await setup_clinic(client, db, clock, release_time=dt.time(0, 0))
    clock.set(utc(2026, 11, 18, 15, 59, 59))  # 23:59:59 local on the 18th: the 26th is 8 days away
    before = await visit_day(client, clinic)
    assert before is None  # default window: local today (18th) + 7 days ends on the 25th
    schedule = only_schedule(await visit_day(client, clinic, days=9))
    assert (schedule["state"], schedule["release_at"]) == ("not_yet_released", "2026-11-19T00:00:00+08:00")

    clock.set(utc(2026, 11, 18, 16, 0, 0))  # 00:00 local on the 19th: a new local day
    schedule = only_schedule(await visit_day(client, clinic))  # the default window now reaches the 26th
    assert schedule["state"] == "bookable"


async def test_booking_closes_at_the_period_start(client, db, clock):
    clinic = await setup_clinic(client, db, clock)
    clock.set(utc(2026, 11, 25, 23, 59, 59))  # 07:59:59 local on the visit day
    schedule = only_schedule(await visit_day(client, clinic))
    assert schedule["state"] == "bookable"
    assert schedule["closes_at"] == "2026-11-26T08:00:00+08:00"
    clock.set(utc(2026, 11, 26, 0, 0, 0))
    schedule = only_schedule(await visit_day(client, clinic))
    assert schedule["state"] == "closed" and {s["state"] for s in schedule["slots"]} == {"closed"}


async def test_booking_closes_thirty_minutes_before_the_start(client, db, clock):
    clinic = await setup_clinic(client, db, clock, close_minutes_before_start=30)
    clock.set(utc(2026, 11, 25, 23, 29, 59))  # 07:29:59 local
    assert only_schedule(await visit_day(client, clinic))["state"] == "bookable"
    clock.set(utc(2026, 11, 25, 23, 30, 0))  # 07:30 local
    schedule = only_schedule(await visit_day(client, clinic))
    assert (schedule["state"], schedule["closes_at"]) == ("closed", "2026-11-26T07:30:00+08:00")


async def test_suspended_schedule_is_shown_as_suspended(client, db, clock):
    clinic = await setup_clinic(client, db, clock)
    async with db.begin() as s:
        await s.execute(update(Schedule).where(Schedule.id == clinic["schedule"])
                        .values(status="suspended", suspended_reason="医生出差"))
    for now in (utc(2026, 11, 18, 23, 0), utc(2026, 11, 20, 3, 0), utc(2026, 11, 26, 1, 0)):
        clock.set(now)  # before release, while open, after closing: suspension wins
        schedule = only_schedule(await visit_day(client, clinic, **{"from": "2026-11-26", "days": 1}))
        assert schedule["state"] == "suspended"
        assert {s["state"] for s in schedule["slots"]} == {"suspended"}


async def test_full_when_nothing_remains(client, db, clock, monkeypatch):
    clinic = await setup_clinic(client, db, clock)
    clock.set(utc(2026, 11, 20, 3, 0))

    async def all_but_one_taken(session, slot_ids, now):
        return {slot_id: 2 for slot_id in slot_ids[1:]}

    monkeypatch.setattr(service, "live_counts", all_but_one_taken)
    avail_cache.invalidate()  # the counts changed behind the cache's back (no write)
    schedule = only_schedule(await visit_day(client, clinic))
    assert [s["state"] for s in schedule["slots"]] == ["bookable"] + ["full"] * 7
    assert (schedule["state"], schedule["remaining"]) == ("bookable", 2)

    async def all_taken(session, slot_ids, now):
        return {slot_id: 2 for slot_id in slot_ids}

    monkeypatch.setattr(service, "live_counts", all_taken)
    avail_cache.invalidate()  # the counts changed behind the cache's back (no write)
    schedule = only_schedule(await visit_day(client, clinic))
    assert (schedule["state"], schedule["remaining"]) == ("full", 0)


async def test_schedule_without_platform_seats_is_full(client, db, clock):
    clinic = await setup_clinic(client, db, clock, template={"platform_capacity": 0, "onsite_capacity": 10})
    clock.set(utc(2026, 11, 20, 3, 0))
    schedule = only_schedule(await visit_day(client, clinic))
    assert (schedule["state"], schedule["slots"]) == ("full", [])


async def test_draft_schedules_are_invisible_publicly(client, db, clock):
    clinic = await setup_clinic(client, db, clock, publish=False)
    clock.set(utc(2026, 11, 20, 3, 0))
    assert (await visit_day(client, clinic))["periods"] == []
    assert (await visit_day(client, clinic, by="department"))["periods"] == []
    await client.post(f"/api/v1/staff/schedules/{clinic['schedule']}/publish", headers=clinic["headers"])
    assert only_schedule(await visit_day(client, clinic))["state"] == "bookable"


async def test_availability_shows_the_platform_pool_in_local_time_with_fees(client, db, clock):
    clinic = await setup_clinic(client, db, clock)
    clock.set(utc(2026, 11, 20, 3, 0))
    response = await client.get(f"/api/v1/doctors/{clinic['doctor']}/availability")
    body = response.json()
    assert (body["timezone"], body["from_date"], body["to_date"]) == ("Asia/Shanghai", "2026-11-20", "2026-11-27")
    assert len(body["days"]) == 8
    schedule = only_schedule(await visit_day(client, clinic))
    assert schedule["doctor"] == {"id": clinic["doctor"], "name": "张伟", "title": "chief"}
    assert (schedule["registration_level"], schedule["registration_fee"], schedule["consultation_fee"],
            schedule["total_fee"]) == ("expert", 500, 5000, 5500)
    slots = schedule["slots"]
    assert len(slots) == 8 and sum(s["capacity"] for s in slots) == 16  # onsite seats are not sold
    assert (slots[0]["starts_at"], slots[0]["ends_at"]) == ("2026-11-26T08:00:00+08:00", "2026-11-26T08:30:00+08:00")
    assert (slots[0]["capacity"], slots[0]["remaining"]) == (2, 2)


async def test_department_availability_includes_sub_departments(client, db, clock):
    clock.set(utc(2026, 11, 18, 12, 0))
    hospital_id = await make_hospital(db, clock.now())
    parent = await make_department(db, hospital_id, name="内科")
    child = await make_department(db, hospital_id, name="心内科", parent_id=parent)
    doctor_id = await make_doctor(db, hospital_id, child, name="王芳")
    _, token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hospital_id)
    for body in ({"doctor_id": doctor_id}, {"department_id": child, "registration_level": "general"}):
        response = await client.post(f"/api/v1/staff/hospitals/{hospital_id}/schedule-templates", headers=auth(token),
                                     json=body | {"weekday": 3, "period": "afternoon", "platform_capacity": 8})
        assert response.status_code == 201, response.text
    await client.post(f"/api/v1/staff/hospitals/{hospital_id}/schedules/generate", headers=auth(token),
                      json={"from_date": "2026-11-26", "to_date": "2026-11-26", "publish": True})
    clock.set(utc(2026, 11, 20, 3, 0))
    clinic = {"department": parent, "doctor": doctor_id}
    day = await visit_day(client, clinic, by="department")
    [period] = day["periods"]
    assert period["period"] == "afternoon"
    assert [s["doctor"] and s["doctor"]["name"] for s in period["schedules"]] == ["王芳", None]
    assert period["schedules"][1]["total_fee"] == 500


@pytest.mark.parametrize("url", ["/api/v1/departments/987654/availability", "/api/v1/doctors/987654/availability"])
async def test_unknown_department_or_doctor_is_404(client, url):
    response = await client.get(url)
    assert response.status_code == 404 and response.json()["code"] == "not_found"


async def test_window_is_at_most_31_days(client, db, clock):
    clinic = await setup_clinic(client, db, clock)
    response = await client.get(f"/api/v1/doctors/{clinic['doctor']}/availability", params={"days": 32})
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    response = await client.get(f"/api/v1/doctors/{clinic['doctor']}/availability", params={"days": 31})
    assert len(response.json()["days"]) == 31


async def test_generated_release_instant_is_stored_in_utc(client, db, clock):
    clinic = await setup_clinic(client, db, clock)
    async with db.read() as s:
        schedule = (await s.scalars(select(Schedule).where(Schedule.id == clinic["schedule"]))).one()
    assert schedule.release_at == utc(2026, 11, 19, 0, 0)
    assert (schedule.starts_at, schedule.ends_at) == (utc(2026, 11, 26, 0, 0), utc(2026, 11, 26, 4, 0))
