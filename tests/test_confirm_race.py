"""A payment confirmation races another patient's claim of the same seat as its hold lapses.

Each round: patient A holds the only seat of a slot; at the hold deadline (give or take a
millisecond: two API processes never agree on the clock to the microsecond) A's payment
confirmation and patient B's hold on the same slot run at the same instant in separate
sessions. Whatever the interleaving, exactly one of them owns the seat (I1), and a hold
whose deadline has passed at the confirmation's `now` is never confirmed (I4).
"""
from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select, text

from guahao.booking import actions
from guahao.booking.models import Booking, BookingEvent
from guahao.core.errors import GuahaoError
from guahao.scheduling.models import SlotPosition
from tests.booking_builders import make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital

DAY = dt.date(2026, 11, 21)
ROUNDS = 24
MS = dt.timedelta(milliseconds=1)
# confirmation's clock relative to the deadline; the claimer's clock is exactly at it
CONFIRM_OFFSETS = (-MS, dt.timedelta(0), MS)


async def _attempt(db, work):
    try:
        async with db.begin() as s:
            return await work(s)
    except GuahaoError as exc:
        return exc


async def test_confirm_races_a_claim_of_the_lapsed_seat(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    rounds = []
    for i in range(ROUNDS):
        doc = await make_doctor(db, hid, dep, name=f"医生{i}")
        _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY, capacity=1)
        people = []
        for _ in range(2):
            account_id, _ = await make_account(db, now)
            people.append((account_id, await make_patient(db, now, account_id)))
        rounds.append((slots[0], people))

    outcomes = {"A": 0, "B": 0}
    for i, (slot, ((acc_a, pat_a), (acc_b, pat_b))) in enumerate(rounds):
        held = await _attempt(db, lambda s: actions.do_hold(s, account_id=acc_a, patient_id=pat_a, slot_id=slot,
                                                             now=now))
        assert not isinstance(held, GuahaoError), held
        deadline = held.hold_expires_at
        confirm_at = deadline + CONFIRM_OFFSETS[i % len(CONFIRM_OFFSETS)]

        confirmed, claimed = await asyncio.gather(
            _attempt(db, lambda s: actions.do_confirm(s, held.id, now=confirm_at)),
            _attempt(db, lambda s: actions.do_hold(s, account_id=acc_b, patient_id=pat_b, slot_id=slot,
                                                   now=deadline)),
        )

        a_won, b_won = not isinstance(confirmed, GuahaoError), not isinstance(claimed, GuahaoError)
        assert a_won != b_won, (i, confirmed, claimed)  # exactly one owner
        if confirm_at >= deadline:
            assert not a_won and confirmed.code in ("hold_expired", "invalid_state"), (i, confirmed)  # I4
        if a_won:
            assert claimed.code == "slot_sold_out", (i, claimed)
        else:
            assert confirmed.code in ("hold_expired", "invalid_state"), (i, confirmed)
        outcomes["A" if a_won else "B"] += 1

        async with db.read() as s:
            seat = await s.scalar(select(SlotPosition).where(SlotPosition.slot_id == slot))
            mine = await s.get(Booking, held.id)
            theirs = list(await s.scalars(select(Booking).where(Booking.slot_id == slot, Booking.id != held.id)))
            confirmations = list(await s.scalars(select(BookingEvent).where(
                BookingEvent.booking_id == held.id, BookingEvent.to_state == "confirmed")))
        # I1: the one seat row names the winner, and the winner is the only live booking
        if a_won:
            assert (seat.booking_id, seat.hold_expires_at) == (held.id, None)
            assert mine.state == "confirmed" and theirs == []
            assert [e.at < deadline for e in confirmations] == [True]  # I4 in the event log
        else:
            assert seat.booking_id == claimed.id and seat.hold_expires_at == claimed.hold_expires_at
            assert mine.state == "expired" and confirmations == []
            assert [(b.id, b.state) for b in theirs] == [(claimed.id, "held")]
    # the rounds where the payment came in time must be able to win, the others never
    assert outcomes["B"] >= 2 * ROUNDS // 3, outcomes


async def _wait_until_blocked_on_a_lock(db, backend: str) -> None:
    """PostgreSQL: until another backend of this database waits on a row lock. SQLite has one
    writer at a time, so the other transaction is simply queued behind ours."""
    if backend != "postgresql":
        for _ in range(20):
            await asyncio.sleep(0)
        return
    for _ in range(500):
        async with db.read() as s:
            waiting = await s.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"))
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the sweeper never queued on the seat lock")


async def test_sweeper_that_read_a_hold_before_its_payment_committed_keeps_the_seat(db, clock, backend, request):
    """The expiry sweep lists lapsing holds, then waits for their seat locks. If the payment of
    one of them commits in between (its `now` was just inside the deadline), the sweep's
    `expire` is refused, and the seat must stay with the now confirmed booking."""
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=None, day=DAY, capacity=2)
    (acc_a, pat_a), (acc_b, pat_b), (acc_c, pat_c) = [
        (acc, await make_patient(db, now, acc)) for acc in [(await make_account(db, now))[0] for _ in range(3)]]
    held = await _attempt(db, lambda s: actions.do_hold(s, account_id=acc_a, patient_id=pat_a, slot_id=slots[0],
                                                         now=now))
    deadline = held.hold_expires_at

    async with db.begin() as s:  # the payment, just in time; it commits while the sweep waits
        await actions.do_confirm(s, held.id, now=deadline - MS)
        sweep = asyncio.create_task(_attempt(db, lambda s2: actions.do_expire_due(s2, now=deadline)))
        await _wait_until_blocked_on_a_lock(db, backend)
    assert await sweep == 0

    async with db.read() as s:
        seat = await s.scalar(select(SlotPosition).where(SlotPosition.booking_id == held.id))
        assert (await s.get(Booking, held.id)).state == "confirmed"
    assert seat is not None and seat.hold_expires_at is None, "the confirmed booking lost its seat"
    # the slot still sells its other seat, and then is full
    second = await _attempt(db, lambda s: actions.do_hold(s, account_id=acc_b, patient_id=pat_b, slot_id=slots[0],
                                                           now=deadline))
    assert not isinstance(second, GuahaoError) and second.visit_no == 2, second
    third = await _attempt(db, lambda s: actions.do_hold(s, account_id=acc_c, patient_id=pat_c, slot_id=slots[0],
                                                          now=deadline))
    assert isinstance(third, GuahaoError) and third.code == "slot_sold_out", third
