"""One computation per availability answer at a time (avail_cache.shared): concurrent misses
of the same answer wait for one read instead of each reading, and never take a result that
the cache itself would refuse (a write committed in this process since, a later second)."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import update

from guahao.scheduling import avail_cache, availability
from guahao.scheduling.models import Slot
from tests.booking_builders import make_schedule
from tests.builders import make_department, make_doctor, make_hospital

DAY = dt.date(2026, 11, 21)


@pytest.fixture(autouse=True)
def _fresh_cache():
    avail_cache.invalidate()
    yield
    avail_cache.configure(1.0)


@pytest.fixture
def reads(monkeypatch):
    """Count the answer's reads, each held open until `gate` is set, so misses pile up."""
    real, calls, gate = availability._availability, [], asyncio.Event()

    async def counted(*args, **kwargs):
        calls.append(args)
        await gate.wait()
        return await real(*args, **kwargs)
    monkeypatch.setattr(availability, "_availability", counted)
    return calls, gate


async def _world(db, now):
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY, capacity=3)
    return doc, slots[0]


async def _settle(gate: asyncio.Event, tasks):
    await asyncio.sleep(0.05)  # every task has reached the cache
    gate.set()
    return await asyncio.gather(*tasks)


async def test_fifty_concurrent_misses_read_once_and_share_the_answer(db, clock, reads):
    calls, gate = reads
    doc, _ = await _world(db, clock.now())
    now = clock.now()
    tasks = [asyncio.create_task(availability.doctor_shared(db, doc, now=now)) for _ in range(50)]
    answers = await _settle(gate, tasks)
    assert len(calls) == 1
    assert all(a is answers[0] for a in answers)


async def test_a_miss_a_second_later_does_not_wait_for_an_older_read(db, clock, reads):
    calls, gate = reads
    doc, _ = await _world(db, clock.now())
    now = clock.now()
    first = asyncio.create_task(availability.doctor_shared(db, doc, now=now))
    later = asyncio.create_task(availability.doctor_shared(db, doc, now=now + dt.timedelta(seconds=1)))
    await _settle(gate, [first, later])
    assert len(calls) == 2


async def test_a_read_that_began_before_a_commit_in_this_process_is_neither_kept_nor_shared(db, clock, reads):
    calls, gate = reads
    doc, slot = await _world(db, clock.now())
    now = clock.now()
    before = asyncio.create_task(availability.doctor_shared(db, doc, now=now))
    await asyncio.sleep(0.05)
    async with db.begin() as s:  # a write to a table the answer is made from
        await s.execute(update(Slot).where(Slot.id == slot).values(capacity=2))
    after = asyncio.create_task(availability.doctor_shared(db, doc, now=now))
    await _settle(gate, [before, after])
    assert len(calls) == 2  # the later miss did not wait for the pre-commit read
    assert avail_cache.lookup(db, ("doctor", doc, None, None), now) is (await after)
    gate.clear()
    third = asyncio.create_task(availability.doctor_shared(db, doc, now=now))
    await _settle(gate, [third])
    assert len(calls) == 2  # the post-commit answer was kept; the pre-commit one never was


async def test_waiters_of_a_cancelled_read_make_their_own(db, clock, reads):
    calls, gate = reads
    doc, _ = await _world(db, clock.now())
    now = clock.now()
    first = asyncio.create_task(availability.doctor_shared(db, doc, now=now))
    await asyncio.sleep(0.02)
    waiters = [asyncio.create_task(availability.doctor_shared(db, doc, now=now)) for _ in range(3)]
    await asyncio.sleep(0.02)
    first.cancel()
    answers = await _settle(gate, waiters)
    assert first.cancelled()
    assert len(calls) == 2  # the cancelled read, then one shared by the three waiters
    assert all(a is answers[0] for a in answers)


async def test_an_error_reaches_every_waiter(db, clock, reads):
    calls, gate = reads
    now = clock.now()
    tasks = [asyncio.create_task(availability.doctor_shared(db, 999_999, now=now)) for _ in range(5)]
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(type(r).__name__ == "NotFound" for r in results)
