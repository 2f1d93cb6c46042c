"""Polls of a cached availability answer are answered in front of FastAPI
(scheduling/fast_answers.py) with the route's bytes; misses and anything unusual reach the
route; freshness stays the cache's (a commit in this process is seen at once)."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from guahao.scheduling import avail_cache
from guahao.scheduling import router as scheduling_router
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital

DAY = dt.date(2026, 11, 21)


@pytest.fixture(autouse=True)
def _fresh_cache():
    avail_cache.invalidate()
    yield
    avail_cache.invalidate()


async def _world(db, now):
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY, capacity=3)
    return dep, doc, slots[0]


@pytest.fixture
def route_counter(monkeypatch):
    calls = []
    real_doctor, real_department = scheduling_router.doctor_answer, scheduling_router.department_answer

    async def doctor(*args, **kwargs):
        calls.append("doctor")
        return await real_doctor(*args, **kwargs)

    async def department(*args, **kwargs):
        calls.append("department")
        return await real_department(*args, **kwargs)
    monkeypatch.setattr(scheduling_router, "doctor_answer", doctor)
    monkeypatch.setattr(scheduling_router, "department_answer", department)
    return calls


def _remaining(body: dict, slot_id: int) -> int:
    return next(s["remaining"] for d in body["days"] for p in d["periods"] for sch in p["schedules"]
                for s in sch["slots"] if s["slot_id"] == slot_id)


async def test_a_cached_answer_is_sent_without_the_route_byte_for_byte(client, db, clock, route_counter):
    dep, doc, _ = await _world(db, clock.now())
    for path in (f"/api/v1/doctors/{doc}/availability", f"/api/v1/departments/{dep}/availability"):
        first = await client.get(path)
        again = await client.get(path)
        assert first.status_code == again.status_code == 200
        assert again.content == first.content
        assert again.headers["content-type"] == first.headers["content-type"] == "application/json"
    assert route_counter == ["doctor", "department"]  # the second poll of each never reached it


async def test_misses_and_other_shapes_reach_the_route(client, db, clock, route_counter):
    dep, doc, _ = await _world(db, clock.now())
    path = f"/api/v1/doctors/{doc}/availability"
    await client.get(path)
    clock.advance(seconds=1)  # the kept answer's second is over
    await client.get(path)
    await client.get(path + "?days=3")  # a query string: the route's
    assert (await client.get("/api/v1/doctors/999999/availability")).status_code == 404
    assert route_counter == ["doctor", "doctor", "doctor", "doctor"]


async def test_a_hold_committed_in_this_process_shows_on_the_next_poll(client, db, clock):
    dep, doc, slot = await _world(db, clock.now())
    path = f"/api/v1/doctors/{doc}/availability"
    assert _remaining((await client.get(path)).json(), slot) == 3
    account_id, token = await make_account(db, clock.now())
    patient = await make_patient(db, clock.now(), account_id)
    held = await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                             headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    assert held.status_code == 201
    assert _remaining((await client.get(path)).json(), slot) == 2
