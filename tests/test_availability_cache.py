"""The in-process availability cache (scheduling/avail_cache.py): an answer is reused for at
most 1 s of the injected clock, a committed hold or cancellation in this process is seen at
once, a write it cannot see (another worker process) at most 1 s later, and a release instant
is never hidden behind a cached "not yet released". No wall clock anywhere."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import update

from guahao.scheduling import avail_cache, availability
from guahao.scheduling.models import Slot
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital

DAY = dt.date(2026, 11, 21)


@pytest.fixture(autouse=True)
def _fresh_cache():
    avail_cache.invalidate()
    yield
    avail_cache.configure(1.0)


def _slot(avail, slot_id: int):
    for day in avail.days:
        for period in day.periods:
            for schedule in period.schedules:
                for slot in schedule.slots:
                    if slot.slot_id == slot_id:
                        return slot
    raise AssertionError("slot not listed")


async def _world(db, now, **schedule):
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY,
                                   capacity=3, **schedule)
    return dep, doc, slots[0]


async def _doctor(db, doc, now):
    async with db.read() as s:
        return await availability.doctor_availability(s, doc, now=now)


async def _department(db, dep, now):
    async with db.read() as s:
        return await availability.department_availability(s, dep, now=now)


async def test_answer_reused_within_a_second_of_the_callers_clock(db, clock):
    now = clock.now()
    dep, doc, _ = await _world(db, now)
    first = await _doctor(db, doc, now)
    assert await _doctor(db, doc, now + dt.timedelta(milliseconds=999)) is first
    assert await _doctor(db, doc, now + dt.timedelta(seconds=1)) is not first
    assert await _doctor(db, doc, now - dt.timedelta(milliseconds=1)) is not first  # never from the future
    dept = await _department(db, dep, now)
    assert await _department(db, dep, now) is dept


async def test_hold_and_cancellation_committed_here_are_seen_at_once(client, db, clock):
    now = clock.now()
    dep, doc, slot = await _world(db, now)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    assert _slot(await _doctor(db, doc, now), slot).remaining == 3
    assert _slot(await _department(db, dep, now), slot).remaining == 3
    r = await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                          headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    # same instant of the injected clock: only the invalidation can explain the new count
    assert _slot(await _doctor(db, doc, now), slot).remaining == 2
    assert _slot(await _department(db, dep, now), slot).remaining == 2
    r = await client.post(f"/api/v1/bookings/{r.json()['id']}/cancel", json={},
                          headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 200, r.text
    assert _slot(await _doctor(db, doc, now), slot).remaining == 3
    api = await client.get(f"/api/v1/doctors/{doc}/availability")
    assert api.json()["days"]  # the API answers from the same functions


async def test_a_write_elsewhere_is_seen_within_one_second(db, clock):
    """A change made by another worker process: this process's cache cannot know, the entry
    lapses. Simulated with a statement on a bare connection (no session, so no invalidation)."""
    now = clock.now()
    _, doc, slot = await _world(db, now)
    assert _slot(await _doctor(db, doc, now), slot).remaining == 3
    async with db.engine.begin() as conn:
        await conn.execute(update(Slot).where(Slot.id == slot).values(capacity=2))
    later = now + dt.timedelta(milliseconds=999)
    assert _slot(await _doctor(db, doc, later), slot).remaining == 3  # stale, but less than 1 s old
    assert _slot(await _doctor(db, doc, now + dt.timedelta(seconds=1)), slot).remaining == 2


async def test_release_instant_is_not_hidden_by_the_cache(db, clock):
    now = clock.now()
    release = now + dt.timedelta(milliseconds=300)
    _, doc, slot = await _world(db, now, release_at=release)
    assert _slot(await _doctor(db, doc, now), slot).state == "not_yet_released"
    assert _slot(await _doctor(db, doc, release), slot).state == "bookable"


async def test_cache_can_be_turned_off(db, clock):
    now = clock.now()
    _, doc, _ = await _world(db, now)
    avail_cache.configure(0)
    first = await _doctor(db, doc, now)
    assert await _doctor(db, doc, now) is not first


async def test_a_cached_answer_is_serialised_once_for_every_poller_of_its_second(client, db, clock, monkeypatch):
    """The API sends the cached answer's JSON as made the first time (scheduling/availability.py
    `rendered`); a write in this process makes a new answer, and a new JSON with it."""
    from guahao.scheduling.schemas import Availability

    now = clock.now()
    dep, doc, slot = await _world(db, now)
    dumps = 0
    original = Availability.model_dump_json

    def counting(self, **kwargs):
        nonlocal dumps
        dumps += 1
        return original(self, **kwargs)

    monkeypatch.setattr(Availability, "model_dump_json", counting)
    polls = [await client.get(f"/api/v1/doctors/{doc}/availability") for _ in range(5)]
    assert dumps == 1
    assert len({p.content for p in polls}) == 1 and polls[0].headers["content-type"] == "application/json"
    assert polls[0].json() == (await _doctor(db, doc, now)).model_dump(mode="json")
    account, token = await make_account(db, now)
    patient = await make_patient(db, now, account)
    held = await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                             headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    assert held.status_code == 201
    after = await client.get(f"/api/v1/doctors/{doc}/availability")
    assert dumps == 2 and _slot(Availability.model_validate(after.json()), slot).remaining == 2
