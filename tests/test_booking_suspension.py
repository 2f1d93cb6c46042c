"""停诊 against holds, cancellations and confirmations at the same moment (DESIGN.md section 5
lock order: schedule → person → seats → booking → payment). 停诊 always succeeds and leaves
no active booking on a suspended schedule; a payment for a suspended schedule is refunded."""
from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select, update

from guahao.booking import actions, errors, hospital_actions
from guahao.booking.lifecycle import Actor
from guahao.booking.models import ACTIVE_STATES, Booking
from guahao.payments import actions as payment_actions
from guahao.payments.models import Payment
from guahao.payments.port import ProviderPayment
from guahao.scheduling.models import Schedule
from tests.booking_builders import make_schedule
from tests.builders import make_account, make_department, make_hospital
from tests.payments_support import make_patients, start_payment

DAY = dt.date(2026, 11, 21)
ROUNDS = 6
PER_ROUND = 6


async def _world(db, now):
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    account_id, token = await make_account(db, now)
    patients = await make_patients(db, now, account_id, ROUNDS * PER_ROUND)
    return hid, dep, account_id, token, patients


async def _schedule(db, now, hid, dep, day_offset, **kw):
    return await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=None,
                               day=DAY + dt.timedelta(days=day_offset), capacity=PER_ROUND, **kw)


async def _suspend(db, now, schedule_id, hid):
    async with db.begin() as s:
        return await hospital_actions.do_suspend(s, schedule_id=schedule_id, hospital_id=hid, reason="医生临时停诊",
                                                 actor=Actor("staff", None), now=now)


async def _hold(db, now, account_id, patient_id, slot):
    async with db.begin() as s:
        return (await actions.do_hold(s, account_id=account_id, patient_id=patient_id, slot_id=slot, now=now)).id


async def _attempt(coro):
    try:
        return await coro
    except errors.ScheduleSuspended as exc:
        return exc
    except errors.TransitionRefused as exc:
        return exc
    except errors.HoldExpired as exc:
        return exc


async def _assert_suspended_and_nothing_active(db, schedule_id):
    async with db.read() as s:
        assert await s.scalar(select(Schedule.status).where(Schedule.id == schedule_id)) == "suspended"
        states = list(await s.scalars(select(Booking.state).where(Booking.schedule_id == schedule_id)))
    assert not set(states) & set(ACTIVE_STATES), states
    return states


async def test_suspension_racing_holds_leaves_no_active_booking(db, clock):
    now = clock.now()
    hid, dep, account_id, _, patients = await _world(db, now)
    for r in range(ROUNDS):
        schedule_id, slots = await _schedule(db, now, hid, dep, r)
        mine = patients[r * PER_ROUND:(r + 1) * PER_ROUND]
        holds = [_attempt(_hold(db, now, account_id, p, slots[0])) for p in mine]
        results = await asyncio.gather(*holds[:3], _suspend(db, now, schedule_id, hid), *holds[3:])
        assert isinstance(results[3], list)  # 停诊 succeeded
        for result in results[:3] + results[4:]:
            assert isinstance(result, int) or result.code == "schedule_suspended", result
        await _assert_suspended_and_nothing_active(db, schedule_id)


async def test_suspension_racing_patient_cancellations_always_succeeds(db, clock):
    now = clock.now()
    hid, dep, account_id, _, patients = await _world(db, now)
    for r in range(ROUNDS):
        schedule_id, slots = await _schedule(db, now, hid, dep, r, registration_fee=0, consultation_fee=0)
        ids = [await _hold(db, now, account_id, p, slots[0]) for p in patients[r * PER_ROUND:(r + 1) * PER_ROUND]]

        async def cancel(booking_id):
            async with db.begin() as s:
                return (await actions.do_cancel(s, account_id=account_id, booking_id=booking_id, now=now)).state

        results = await asyncio.gather(*(_attempt(cancel(b)) for b in ids[:3]), _suspend(db, now, schedule_id, hid),
                                       *(_attempt(cancel(b)) for b in ids[3:]))
        revoked = results[3]
        assert isinstance(revoked, list)
        cancels = results[:3] + results[4:]
        for result in cancels:
            assert result == "cancelled" or (result.code == "invalid_state" and result.params["state"] == "revoked")
        states = await _assert_suspended_and_nothing_active(db, schedule_id)
        assert sorted(states) == sorted(["revoked"] * len(revoked) + ["cancelled"] * cancels.count("cancelled"))


async def test_suspension_racing_confirmations_never_leaves_a_confirmed_booking(db, clock):
    now = clock.now()
    hid, dep, account_id, _, patients = await _world(db, now)
    for r in range(ROUNDS):
        schedule_id, slots = await _schedule(db, now, hid, dep, r)
        ids = [await _hold(db, now, account_id, p, slots[0]) for p in patients[r * PER_ROUND:(r + 1) * PER_ROUND]]

        async def confirm(booking_id):
            async with db.begin() as s:
                return (await actions.do_confirm(s, booking_id, now=now)).state

        results = await asyncio.gather(*(_attempt(confirm(b)) for b in ids[:3]), _suspend(db, now, schedule_id, hid),
                                       *(_attempt(confirm(b)) for b in ids[3:]))
        assert isinstance(results[3], list)
        states = await _assert_suspended_and_nothing_active(db, schedule_id)
        assert set(states) == {"revoked"}


async def test_payment_for_a_held_booking_on_a_suspended_schedule_is_refunded(client, db, clock):
    """Belt and braces: should a hold ever sit on a suspended schedule, paying it refunds."""
    now = clock.now()
    hid, dep, account_id, token, patients = await _world(db, now)
    schedule_id, slots = await _schedule(db, now, hid, dep, 0)
    booking_id = await _hold(db, now, account_id, patients[0], slots[0])
    assert (await start_payment(client, token, booking_id)).status_code in (200, 201)
    async with db.begin() as s:  # the status flips without 停诊's revocations
        await s.execute(update(Schedule).where(Schedule.id == schedule_id).values(status="suspended"))
    async with db.begin() as s:
        payment = await s.scalar(select(Payment).where(Payment.booking_id == booking_id))
        outcome = await payment_actions.settle_paid(
            s, payment, ProviderPayment(payment.out_trade_no, "SUCCESS", payment.amount, "txn-1", now), now=now)
    assert outcome == "late_refund"
    async with db.read() as s:
        assert (await s.get(Booking, booking_id)).state == "held"
        assert (await s.scalar(select(Payment.settled_as).where(Payment.booking_id == booking_id))) == "refund"
