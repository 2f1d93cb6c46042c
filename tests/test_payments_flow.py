"""Payment flows across the real sandbox process: we call it, it notifies our app over HTTP.
After every flow the money invariant I5 holds: paid = confirmed fees + refunded + pending."""
from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from sqlalchemy import select

from guahao.app import create_app
from guahao.booking.models import Booking, BookingEvent
from guahao.outbox.models import OutboxMessage
from guahao.payments import jobs as payment_jobs
from guahao.payments.models import Payment, PaymentNotification, Refund
from tests.builders import auth, make_staff
from tests.payments_support import (
    FEE,
    assert_money_invariant,
    count_rows,
    get_booking,
    hold,
    hold_many,
    latest_payment,
    make_patients,
    make_world,
    new_patient,
    run_jobs,
    start_payment,
)
from tests.paysim_fixture import *  # noqa: F403
from tests.paysim_fixture import free_port, serving

pytestmark = pytest.mark.timeout(120)





async def _paid_and_confirmed(client, db, clock, sandbox, world) -> tuple[int, str, Payment]:
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    started = await start_payment(client, token, booking_id)
    assert started.status_code == 201, started.text
    no = (await latest_payment(db, booking_id)).out_trade_no
    assert (await sandbox.pay(no)).status_code == 200
    await sandbox.wait_delivered([no])
    assert (await get_booking(db, booking_id)).state == "confirmed"
    return booking_id, token, await latest_payment(db, booking_id)


# --- the happy path ------------------------------------------------------------------------

async def test_paying_on_the_sandbox_page_confirms_the_booking(client, db, clock, live_app, sandbox):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])

    started = await start_payment(client, token, booking_id)
    assert started.status_code == 201
    body = started.json()
    assert body["amount"] == FEE and body["pay_url"].startswith(sandbox.url + "/pay/")
    page = await sandbox.http.get(body["pay_url"])
    assert "确认支付" in page.text and "¥15.00" in page.text
    # the patient presses 确认支付 on the cashier page (an HTML form post)
    no = body["pay_url"].rsplit("/", 1)[1]
    result = await sandbox.http.post(f"/pay/{no}/pay")
    assert result.status_code == 200 and "支付成功" in result.text
    await sandbox.wait_delivered([no])

    booking = await get_booking(db, booking_id)
    assert booking.state == "confirmed"
    payments = (await client.get(f"/api/v1/bookings/{booking_id}/payments", headers=auth(token))).json()
    assert [(p["state"], p["settled_as"], p["amount"]) for p in payments] == [("paid", "booking", FEE)]
    await assert_money_invariant(db)


# --- callback storm ------------------------------------------------------------------------

async def _held_and_opened(client, db, clock, world, n: int) -> tuple[list[int], list[str]]:
    """n holds of n people (one account), each with its payment opened at the sandbox."""
    account, token, _ = await new_patient(db, clock)
    patients = await make_patients(db, clock.now(), account, n)
    bookings = await hold_many(db, clock, account, patients, world["slot"])
    gate = asyncio.Semaphore(8)

    async def open_payment(booking_id):
        async with gate:
            r = await start_payment(client, token, booking_id)
            assert r.status_code == 201, r.text
            return r.json()["pay_url"].rsplit("/", 1)[1]

    return bookings, list(await asyncio.gather(*(open_payment(b) for b in bookings)))


async def _all_pay(sandbox, trade_nos) -> None:
    order = list(trade_nos)
    random.shuffle(order)
    gate = asyncio.Semaphore(16)

    async def pay(no):
        async with gate:
            assert (await sandbox.pay(no)).status_code == 200

    await asyncio.gather(*(pay(no) for no in order))


async def _assert_each_confirmed_once(db, bookings) -> None:
    n = len(bookings)
    assert await count_rows(db, Booking, Booking.id.in_(bookings), Booking.state == "confirmed") == n
    assert await count_rows(db, BookingEvent, BookingEvent.to_state == "confirmed") == n
    assert await count_rows(db, Payment) == n
    assert await count_rows(db, Payment, Payment.state == "paid", Payment.settled_as == "booking") == n
    assert await count_rows(db, PaymentNotification, PaymentNotification.verified.is_(True)) == n
    assert await count_rows(db, PaymentNotification, PaymentNotification.verified.is_(False)) == 0
    assert await count_rows(db, OutboxMessage, OutboxMessage.topic == "notify.booking_confirmed") == n
    assert await count_rows(db, Refund) == 0


async def test_callback_storm_200_bookings_each_notified_5_times_confirm_once(client, db, clock, live_app, sandbox):
    world = await make_world(db, clock, capacity=200)
    bookings, trade_nos = await _held_and_opened(client, db, clock, world, 200)
    await sandbox.switches(duplicate=5)  # every delivery is 5 identical concurrent requests

    await _all_pay(sandbox, trade_nos)  # in shuffled order, 16 patients at a time
    delivered = await sandbox.wait_delivered(trade_nos, timeout=90)

    assert all(len(n["last_status"].split(",")) == 5 and "200" in n["last_status"] for n in delivered)
    await _assert_each_confirmed_once(db, bookings)
    await assert_money_invariant(db)


async def test_notifications_racing_the_reconciliation_job_settle_each_payment_once(
        client, db, clock, live_app, sandbox, job_ctx):
    world = await make_world(db, clock, capacity=40)
    bookings, trade_nos = await _held_and_opened(client, db, clock, world, 40)
    clock.advance(minutes=14)  # one minute before the holds end: the job asks the provider too
    await sandbox.switches(duplicate=2)

    async def reconcile_meanwhile():
        for _ in range(3):
            await payment_jobs.reconcile(job_ctx, {})
            await asyncio.sleep(0.05)

    await asyncio.gather(_all_pay(sandbox, trade_nos), reconcile_meanwhile())
    await sandbox.wait_delivered(trade_nos)

    await _assert_each_confirmed_once(db, bookings)
    async with db.read() as s:
        outcomes = set(await s.scalars(select(PaymentNotification.outcome)))
    assert outcomes <= {"confirmed", "already_settled"}
    await assert_money_invariant(db)


async def test_copies_of_notifications_spread_over_two_api_processes_settle_once(
        client, db, clock, live_app, sandbox, settings, our_port):
    """Nothing in-process is needed for correctness: copies of the same notification reach
    two app instances (own engines and pools, one database) at once; the unique index on the
    notification id and the conditional UPDATE of the payment decide."""
    world = await make_world(db, clock, capacity=30)
    bookings, trade_nos = await _held_and_opened(client, db, clock, world, 30)
    await sandbox.switches(drop_notifications=True)
    await _all_pay(sandbox, trade_nos)
    notes = await sandbox.wait_delivered(trade_nos, states=("dropped",))
    signed = [await sandbox.signed(n["id"]) for n in notes]

    other = create_app(settings, clock=clock)
    other_port = free_port()
    try:
        async with serving(other, sandbox, other_port), httpx.AsyncClient(timeout=30) as http:
            posts = [(port, headers, body) for headers, body in signed for port in (our_port, other_port) * 3]
            random.shuffle(posts)
            answers = await asyncio.gather(*(
                http.post(f"http://127.0.0.1:{port}/api/v1/payments/notify/paysim", content=body, headers=headers)
                for port, headers, body in posts))
    finally:
        await other.state.db.dispose()

    assert {r.status_code for r in answers} == {200}
    await _assert_each_confirmed_once(db, bookings)
    await assert_money_invariant(db)


# --- late payment ---------------------------------------------------------------------------

async def test_late_payment_after_the_slot_went_to_someone_else_is_refunded_exactly_once(
        client, db, clock, live_app, sandbox, job_ctx):
    world = await make_world(db, clock, capacity=1)
    acc_a, tok_a, pat_a = await new_patient(db, clock)
    late = await hold(db, clock, acc_a, pat_a, world["slot"])
    no = (await start_payment(client, tok_a, late)).json()["pay_url"].rsplit("/", 1)[1]

    clock.advance(minutes=16)  # A's hold lapsed; B takes the seat
    acc_b, tok_b, pat_b = await new_patient(db, clock)
    other = await hold(db, clock, acc_b, pat_b, world["slot"])
    other_before = await get_booking(db, other)
    await sandbox.switches(duplicate=3)
    assert (await sandbox.pay(no)).status_code == 200  # A pays anyway, three notifications arrive
    [note] = await sandbox.wait_delivered([no])
    await sandbox.redeliver(note["id"])  # and once more, later
    await sandbox.wait_delivered([no])

    payment = await latest_payment(db, late)
    assert (payment.state, payment.settled_as) == ("paid", "refund")
    assert await count_rows(db, Refund) == 1
    await assert_money_invariant(db)  # refund pending counts
    assert await run_jobs(job_ctx, "payment.refund") == [("payment.refund", "done")]
    assert await run_jobs(job_ctx, "payment.refund") == []

    async with db.read() as s:
        refund = await s.scalar(select(Refund))
        told = list(await s.scalars(select(OutboxMessage.payload).where(
            OutboxMessage.topic == "notify.payment_late_refund")))
    assert (refund.state, refund.amount, refund.reason) == ("succeeded", FEE, "late_payment")
    assert [t["booking_state"] for t in told] == ["expired"]
    assert len(await sandbox.refunds(no)) == 1
    assert (await sandbox.query(no))["trade_state"] == "REFUND"
    after = await get_booking(db, other)
    assert (after.state, after.visit_no, after.updated_at) == ("held", 1, other_before.updated_at)
    assert (await get_booking(db, late)).state in ("held", "expired")  # lapsed, never confirmed
    assert await count_rows(db, BookingEvent, BookingEvent.booking_id == late, BookingEvent.to_state == "confirmed") == 0
    await assert_money_invariant(db)


async def test_payment_after_patient_cancelled_the_hold_is_refunded(client, db, clock, live_app, sandbox, job_ctx):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    assert (await client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(token))).status_code == 200

    await sandbox.pay(no)
    await sandbox.wait_delivered([no])
    assert (await get_booking(db, booking_id)).state == "cancelled"
    await run_jobs(job_ctx, "payment.refund")
    assert len(await sandbox.refunds(no)) == 1
    await assert_money_invariant(db)


# --- lost notification ------------------------------------------------------------------------

async def test_lost_notification_reconciliation_confirms_before_the_hold_ends(
        client, db, clock, live_app, sandbox, job_ctx):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    await sandbox.switches(drop_notifications=True)
    await sandbox.pay(no)
    await sandbox.wait_delivered([no], states=("dropped",))

    await payment_jobs.reconcile(job_ctx, {})  # 14 minutes before the deadline: not asked yet
    assert (await get_booking(db, booking_id)).state == "held"
    clock.advance(minutes=13, seconds=30)
    await payment_jobs.reconcile(job_ctx, {})

    assert (await get_booking(db, booking_id)).state == "confirmed"
    payment = await latest_payment(db, booking_id)
    assert (payment.state, payment.settled_as) == ("paid", "booking")
    assert payment.provider_txn_id == (await sandbox.query(no))["transaction_id"]
    await payment_jobs.reconcile(job_ctx, {})  # nothing left to do, nothing done twice
    assert await count_rows(db, BookingEvent, BookingEvent.to_state == "confirmed") == 1
    await assert_money_invariant(db)


async def test_lost_notification_found_after_the_deadline_is_refunded(client, db, clock, live_app, sandbox, job_ctx):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    await sandbox.switches(drop_notifications=True)
    await sandbox.pay(no)
    clock.advance(minutes=20)
    await payment_jobs.reconcile(job_ctx, {})

    assert (await latest_payment(db, booking_id)).settled_as == "refund"
    await run_jobs(job_ctx, "payment.refund")
    assert len(await sandbox.refunds(no)) == 1
    await assert_money_invariant(db)


async def test_unpaid_payment_is_closed_at_the_provider_when_the_hold_ends(
        client, db, clock, live_app, sandbox, job_ctx):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    clock.advance(minutes=15)
    await payment_jobs.reconcile(job_ctx, {})

    assert (await latest_payment(db, booking_id)).state == "closed"
    assert (await sandbox.query(no))["trade_state"] == "CLOSED"
    refused = await sandbox.pay(no)  # the patient comes back to the old page: no money is taken
    assert refused.status_code == 409 and refused.json()["code"] == "ORDER_CLOSED"
    await assert_money_invariant(db)


# --- refunds of paid bookings: patient cancellation and 停诊 ----------------------------------

async def test_cancelling_a_paid_booking_refunds_once_even_through_provider_failures(
        client, db, clock, live_app, sandbox, job_ctx):
    world = await make_world(db, clock)
    booking_id, token, payment = await _paid_and_confirmed(client, db, clock, sandbox, world)
    assert (await client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(token))).status_code == 200
    await assert_money_invariant(db)  # queued in the outbox: refund pending

    await sandbox.switches(fail_refunds=True)
    assert await run_jobs(job_ctx, "payment.refund") == [("payment.refund", "RetryLater")]
    await sandbox.switches(fail_refunds=False)
    assert await run_jobs(job_ctx, "payment.refund") == [("payment.refund", "done")]
    # a worker that crashed after the provider call runs the job again: still one refund
    await payment_jobs.refund_payment(job_ctx, {"booking_id": booking_id, "hospital_id": world["hospital"],
                                                "state": "cancelled", "amount": FEE})

    async with db.read() as s:
        refunds = list(await s.scalars(select(Refund)))
    assert [(r.state, r.reason, r.attempts) for r in refunds] == [("succeeded", "booking_cancelled", 2)]
    assert len(await sandbox.refunds(payment.out_trade_no)) == 1
    await assert_money_invariant(db)


async def test_suspension_refunds_every_paid_booking_once_and_a_later_payment_too(
        client, db, clock, live_app, sandbox, job_ctx):
    world = await make_world(db, clock, capacity=3)
    paid = [await _paid_and_confirmed(client, db, clock, sandbox, world) for _ in range(2)]
    account, token, patient = await new_patient(db, clock)
    held = await hold(db, clock, account, patient, world["slot"])
    held_no = (await start_payment(client, token, held)).json()["pay_url"].rsplit("/", 1)[1]
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=world["hospital"])

    r = await client.post(f"/api/v1/staff/schedules/{world['schedule']}/suspend", json={"reason": "医生临时出诊"},
                          headers=auth(admin))
    assert r.status_code == 200 and len(r.json()["revoked"]) == 3
    await sandbox.pay(held_no)  # the third patient pays on a page opened before the 停诊
    await sandbox.wait_delivered([held_no])
    await assert_money_invariant(db)
    assert sorted(x for _, x in await run_jobs(job_ctx, "payment.refund")) == ["done"] * 3

    for _, _, payment in paid:
        assert len(await sandbox.refunds(payment.out_trade_no)) == 1
    assert len(await sandbox.refunds(held_no)) == 1
    async with db.read() as s:
        reasons = sorted(await s.scalars(select(Refund.reason).where(Refund.state == "succeeded")))
    assert reasons == ["booking_revoked", "booking_revoked", "late_payment"]
    await assert_money_invariant(db)

    # the money view of the hospital shows it
    view = (await client.get(f"/api/v1/staff/bookings/{paid[0][0]}/payments", headers=auth(admin))).json()
    assert (view["paid"], view["refunded"], view["refund_pending"]) == (FEE, FEE, 0)
    assert view["payments"][0]["refund"]["state"] == "succeeded"
