"""Every answer for an Idempotency-Key is the key's answer (I7), the sold-out gate included,
and refusals that depend on time are replayed only for a short window."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter

from sqlalchemy import func, select

from guahao.booking import actions
from guahao.booking.models import Booking
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_hospital

DAY = dt.date(2026, 11, 21)


async def _hold(client, token, slot, patient, key=None):
    return await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                             headers={**auth(token), "Idempotency-Key": key or uuid.uuid4().hex})


async def _last_seat(db, now, capacity=1, **schedule):
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=None, day=DAY,
                                   capacity=capacity, **schedule)
    return slots[0]


async def _bookings_of(db, account_id):
    async with db.read() as s:
        return await s.scalar(select(func.count()).select_from(Booking).where(Booking.account_id == account_id))


async def test_retry_while_first_holds_the_seat_and_gate_says_full_gets_the_first_answer(
        client, app, db, clock, monkeypatch):
    """The reported race: the first request has the last seat (not committed yet), the gate
    already knows the slot is full, and the client retries with the same key."""
    now = clock.now()
    slot = await _last_seat(db, now)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    claimed, release = asyncio.Event(), asyncio.Event()
    original = actions.do_hold

    async def slow_hold(session, **kw):
        result = await original(session, **kw)
        claimed.set()
        await release.wait()  # the first request stalls after its claim, before commit
        return result

    monkeypatch.setattr(actions, "do_hold", slow_hold)
    first = asyncio.create_task(_hold(client, token, slot, patient, key="K"))
    await claimed.wait()
    await app.state.gate.mark_full(slot)
    retries = [asyncio.create_task(_hold(client, token, slot, patient, key="K")) for _ in range(5)]
    # give the retries every chance to answer on their own (the old code answered "sold out"
    # here at once); correct retries wait in the database for the first request instead
    await asyncio.wait(retries, timeout=3)
    release.set()
    answers = [await first] + [await r for r in retries]

    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert len({r.text for r in answers}) == 1
    assert await _bookings_of(db, account_id) == 1


async def test_rush_on_last_seat_with_retries_every_key_has_one_answer(client, db, clock):
    """40 patients race for 1 seat; each sends its request 3 times at once with its key."""
    now = clock.now()
    slot = await _last_seat(db, now)
    players = []
    for _ in range(40):
        account_id, token = await make_account(db, now)
        players.append((account_id, token, await make_patient(db, now, account_id), uuid.uuid4().hex))

    calls = [(p, _hold(client, p[1], slot, p[2], key=p[3])) for p in players for _ in range(3)]
    answers = await asyncio.gather(*(c for _, c in calls))

    by_key: dict[str, set[str]] = {}
    for (player, _), answer in zip(calls, answers):
        assert answer.status_code in (201, 409), answer.text
        by_key.setdefault(player[3], set()).add(answer.text)
    assert all(len(texts) == 1 for texts in by_key.values()), "a key got two different answers"
    winners = [p for p in players if '"visit_no"' in next(iter(by_key[p[3]]))]
    assert len(winners) == 1
    codes = Counter(r.json().get("code", r.status_code) for r in answers)
    assert codes == {201: 3, "slot_sold_out": 117}, codes
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Booking)) == 1
        assert await s.scalar(select(Booking.account_id)) == winners[0][0]


async def test_gate_answer_is_the_keys_answer_even_after_a_seat_comes_back(client, app, db, clock):
    """A sold-out told by the gate is stored: a retry inside the window gets it again rather
    than a booking the client would not know how to match with its first answer."""
    now = clock.now()
    slot = await _last_seat(db, now)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    await app.state.gate.mark_full(slot)
    first = await _hold(client, token, slot, patient, key="G")
    assert first.json()["code"] == "slot_sold_out"
    await app.state.gate.forget(slot)
    again = await _hold(client, token, slot, patient, key="G")
    assert again.text == first.text
    assert await _bookings_of(db, account_id) == 0


async def test_sold_out_is_not_replayed_after_its_window(client, app, db, clock):
    now = clock.now()
    slot = await _last_seat(db, now)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    await app.state.gate.mark_full(slot)
    assert (await _hold(client, token, slot, patient, key="W")).json()["code"] == "slot_sold_out"
    await app.state.gate.forget(slot)
    clock.advance(seconds=11)
    r = await _hold(client, token, slot, patient, key="W")
    assert r.status_code == 201, r.text
    assert (await _hold(client, token, slot, patient, key="W")).text == r.text  # a success stays


async def test_not_yet_released_is_replayed_only_until_the_release(client, db, clock):
    now = clock.now()
    release = now + dt.timedelta(seconds=5)
    slot = await _last_seat(db, now, release_at=release)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    early = await _hold(client, token, slot, patient, key="R")
    assert early.json()["code"] == "not_yet_released"
    clock.advance(seconds=2)
    assert (await _hold(client, token, slot, patient, key="R")).text == early.text
    clock.set(release)
    r = await _hold(client, token, slot, patient, key="R")
    assert r.status_code == 201, r.text


async def test_missing_key_with_bad_token_is_401_first(client):
    r = await client.post("/api/v1/bookings", json={"slot_id": 1, "patient_id": 1}, headers=auth("nope"))
    assert r.status_code == 401


async def test_rules_are_checked_at_the_time_of_the_claim_not_of_arrival(client, app, db, clock, monkeypatch):
    """A request that arrives just before the release and waits in the slot's lane past it
    is judged at the time it reaches the database."""
    now = clock.now()
    slot = await _last_seat(db, now, release_at=now + dt.timedelta(seconds=1))
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    gate = app.state.gate
    real_lane = gate.slot_lane

    class SlowLane:
        def __init__(self, slot_id):
            self._lane = real_lane(slot_id)

        async def __aenter__(self):
            await self._lane.__aenter__()
            clock.advance(seconds=2)  # the wait for the lane took two seconds

        async def __aexit__(self, *exc):
            await self._lane.__aexit__(*exc)

    monkeypatch.setattr(gate, "slot_lane", SlowLane)
    r = await _hold(client, token, slot, patient)
    assert r.status_code == 201, r.text
