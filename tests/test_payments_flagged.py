"""Money the provider holds for a payment we flagged never stays there (I5): a genuine
notification with another amount is refunded once however many copies and jobs race; a
payment flagged and left open (as before automatic refunds) is picked up by the check-up job;
operators can list flagged payments and refund or close one, audited. In-memory provider."""
from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import replace

import pytest
from sqlalchemy import select, update

from guahao.core.audit import AuditEntry
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import JobContext
from guahao.payments import service
from guahao.payments.fake import InMemoryPayments
from guahao.payments.invariants import check_money
from guahao.payments.models import Payment, Refund
from tests.builders import auth, make_staff
from tests.payments_support import (
    FEE,
    assert_money_invariant,
    count_rows,
    get_booking,
    hold,
    latest_payment,
    make_world,
    new_patient,
    run_jobs,
    start_payment,
)


@pytest.fixture
def fake(app, clock) -> InMemoryPayments:
    port = InMemoryPayments(clock=clock)
    app.state.providers["payments"] = port
    return port


@pytest.fixture
def ctx(app, settings, clock) -> JobContext:
    return JobContext(db=app.state.db, clock=clock, settings=settings, providers=app.state.providers)


async def _open_payment(client, db, clock, world) -> tuple[int, str, str]:
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    return booking_id, token, no


def _provider_amount(fake: InMemoryPayments, no: str, amount: int) -> None:
    """The provider's ledger disagrees with ours about what this payment is for."""
    fake.orders[no].payment = replace(fake.orders[no].payment, amount=amount)


async def _flag_as_before(db, booking_id: int) -> int:
    """What the code did before: leave the payment open and flagged."""
    async with db.begin() as s:
        payment = await s.scalar(select(Payment).where(Payment.booking_id == booking_id))
        payment.flagged_reason = "amount_mismatch"
        return payment.id


async def _notify(client, headers_body):
    headers, body = headers_body
    return await client.post("/api/v1/payments/notify/paysim", content=body, headers=headers)


async def test_racing_wrong_amount_notifications_open_one_refund_and_refund_once(client, db, clock, fake, ctx):
    world = await make_world(db, clock)
    booking_id, _, no = await _open_payment(client, db, clock, world)
    _provider_amount(fake, no, 2000)  # more than the fee: all of it goes back
    # distinct notifications (each its own id, as a provider's re-sends may be), all at once
    answers = await asyncio.gather(*(_notify(client, fake.pay(no)) for _ in range(10)))
    assert Counter(r.status_code for r in answers) == {200: 10}

    assert (await get_booking(db, booking_id)).state == "held"
    assert await count_rows(db, Refund) == 1
    assert await count_rows(db, OutboxMessage, OutboxMessage.topic == "payment.refund") == 1
    await assert_money_invariant(db)
    assert [r for _, r in await run_jobs(ctx, "payment.refund")] == ["done"]
    assert [(r.amount, r.out_refund_no) for r in fake.refunds.values()] == [(2000, f"{no}R")]
    async with db.read() as s:
        refund = await s.scalar(select(Refund))
    assert (refund.state, refund.amount, refund.reason) == ("succeeded", 2000, "amount_mismatch")
    await assert_money_invariant(db)


async def test_a_payment_left_flagged_and_open_is_refunded_by_the_check_up_job(client, db, clock, fake, ctx):
    world = await make_world(db, clock)
    booking_id, _, no = await _open_payment(client, db, clock, world)
    _provider_amount(fake, no, 1)
    fake.pay(no)  # paid at the provider; the notification was refused by the old code
    await _flag_as_before(db, booking_id)
    async with db.read() as s:
        assert await check_money(s) == [f"payment {(await latest_payment(db, booking_id)).id} is flagged "
                                         "(amount_mismatch) but still open"]
    clock.advance(minutes=16)  # the hold is over: the check-up job asks the provider

    summary = await service.reconcile_open_payments(db, fake, now=clock.now())
    assert summary.refunded == 1
    again = await service.reconcile_open_payments(db, fake, now=clock.now())
    assert again.checked == 0 and again.refunded == 0
    await run_jobs(ctx, "payment.refund")
    assert [r.amount for r in fake.refunds.values()] == [1]
    payment = await latest_payment(db, booking_id)
    assert (payment.state, payment.settled_as, payment.amount) == ("paid", "refund", 1)
    await assert_money_invariant(db)


async def test_operators_list_flagged_payments_and_refund_one_once_with_an_audited_reason(client, db, clock, fake,
                                                                                         ctx):
    world = await make_world(db, clock)
    booking_id, _, no = await _open_payment(client, db, clock, world)
    fake.pay(no)
    payment_id = await _flag_as_before(db, booking_id)
    op_id, op = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=world["hospital"])

    listed = (await client.get("/api/v1/staff/payments/flagged", headers=auth(op))).json()
    assert [(p["id"], p["state"], p["flagged_reason"], p["hospital_id"]) for p in listed["items"]] == [
        (payment_id, "created", "amount_mismatch", world["hospital"])]
    assert (await client.get("/api/v1/staff/payments/flagged", headers=auth(admin))).status_code == 403
    body = {"reason": "provider ledger says paid; patient asked"}
    denied = await client.post(f"/api/v1/staff/payments/{payment_id}/refund", json=body, headers=auth(admin))
    assert denied.status_code == 403
    short = await client.post(f"/api/v1/staff/payments/{payment_id}/refund", json={"reason": ""}, headers=auth(op))
    assert short.status_code == 422

    # two operators (or one double click) at once: one refund
    presses = await asyncio.gather(*(client.post(f"/api/v1/staff/payments/{payment_id}/refund", json=body,
                                                 headers=auth(op)) for _ in range(5)))
    codes = Counter(r.status_code for r in presses)
    assert codes == {200: 1, 409: 4}, [r.json() for r in presses]
    ok = next(r.json() for r in presses if r.status_code == 200)
    assert ok["outcome"] == "mismatch_refund" and ok["payment"]["refund"]["state"] == "pending"
    assert {r.json()["code"] for r in presses if r.status_code == 409} == {"payment_already_resolved"}
    assert (await get_booking(db, booking_id)).state == "held"  # an operator refund never confirms
    await run_jobs(ctx, "payment.refund")
    assert [(r.amount, r.out_refund_no) for r in fake.refunds.values()] == [(FEE, f"{no}R")]
    await assert_money_invariant(db)

    async with db.read() as s:
        entries = list(await s.scalars(select(AuditEntry).where(AuditEntry.action == "payment.operator_refund")))
    assert len(entries) == 1 and entries[0].object_id == str(payment_id)
    assert json.loads(entries[0].detail)["reason"] == body["reason"]
    assert entries[0].staff_id == op_id
    unresolved = (await client.get("/api/v1/staff/payments/flagged", headers=auth(op))).json()
    assert unresolved["items"] == []
    everything = (await client.get("/api/v1/staff/payments/flagged?unresolved=false", headers=auth(op))).json()
    assert [p["refund"]["state"] for p in everything["items"]] == ["succeeded"]


async def test_operators_close_an_unpaid_flagged_payment_but_never_one_the_provider_holds(client, db, clock, fake):
    world = await make_world(db, clock)
    booking_id, _, no = await _open_payment(client, db, clock, world)
    payment_id = await _flag_as_before(db, booking_id)
    _, op = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    body = {"reason": "test order, never paid"}

    nothing = await client.post(f"/api/v1/staff/payments/{payment_id}/refund", json=body, headers=auth(op))
    assert (nothing.status_code, nothing.json()["code"]) == (409, "payment_not_paid_at_provider")
    closed = await client.post(f"/api/v1/staff/payments/{payment_id}/close", json=body, headers=auth(op))
    assert closed.status_code == 200 and closed.json()["payment"]["state"] == "closed"
    assert fake.orders[no].payment.trade_state == "CLOSED"  # it cannot be paid afterwards
    assert await count_rows(db, AuditEntry, AuditEntry.action == "payment.operator_close") == 1

    other_world_booking, _, other_no = await _open_payment(client, db, clock, world)
    fake.pay(other_no)
    other_id = await _flag_as_before(db, other_world_booking)
    held = await client.post(f"/api/v1/staff/payments/{other_id}/close", json=body, headers=auth(op))
    assert (held.status_code, held.json()["code"]) == (409, "payment_paid_at_provider")
    assert (await latest_payment(db, other_world_booking)).state == "created"
    assert (await client.post("/api/v1/staff/payments/999999/close", json=body, headers=auth(op))).status_code == 404
    async with db.read() as s:
        assert len(await check_money(s)) == 1  # that one's money is still at the provider ...
    refunded = await client.post(f"/api/v1/staff/payments/{other_id}/refund", json=body, headers=auth(op))
    assert refunded.status_code == 200  # ... until it is refunded
    await assert_money_invariant(db)


async def test_an_operator_requeues_a_refund_the_provider_refused(client, db, clock, fake, ctx):
    world = await make_world(db, clock)
    booking_id, _, no = await _open_payment(client, db, clock, world)
    _provider_amount(fake, no, 1)
    assert (await _notify(client, fake.pay(no))).status_code == 200
    fake.orders[no].payment = replace(fake.orders[no].payment, trade_state="NOTPAY")  # provider refuses the refund
    assert [r for _, r in await run_jobs(ctx, "payment.refund")] == ["PermanentFailure"]
    async with db.read() as s:
        assert (await s.scalar(select(Refund.state))) == "failed"
    async with db.read() as s:
        assert await check_money(s)  # the money is neither kept nor returned: I5 reports it
    async with db.begin() as s:  # the job is dead-lettered by the runner; mark it so here
        await s.execute(update(OutboxMessage).where(OutboxMessage.topic == "payment.refund").values(state="dead"))

    fake.orders[no].payment = replace(fake.orders[no].payment, trade_state="SUCCESS")
    _, op = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    payment_id = (await latest_payment(db, booking_id)).id
    r = await client.post(f"/api/v1/staff/payments/{payment_id}/refund", json={"reason": "provider fixed"},
                          headers=auth(op))
    assert r.status_code == 200 and r.json()["outcome"] == "refund_requeued"
    await assert_money_invariant(db)
    assert [x for _, x in await run_jobs(ctx, "payment.refund")] == ["done"]
    assert [(x.amount, x.out_refund_no) for x in fake.refunds.values()] == [(1, f"{no}R")]
    await assert_money_invariant(db)



async def test_a_confirmation_refused_for_any_reason_refunds_the_payment(client, db, clock, fake, ctx, monkeypatch):
    """e.g. the schedule was suspended (停诊) while the patient paid: do_confirm refuses, and
    the money must go back rather than the notification failing (and being retried forever)."""
    from guahao.booking import actions as booking_actions
    from guahao.booking import errors as booking_errors

    async def refuse(*args, **kwargs):
        raise booking_errors.ScheduleSuspended()

    world = await make_world(db, clock)
    booking_id, _, no = await _open_payment(client, db, clock, world)
    monkeypatch.setattr(booking_actions, "do_confirm", refuse)
    assert (await _notify(client, fake.pay(no))).status_code == 200
    payment = await latest_payment(db, booking_id)
    assert (payment.state, payment.settled_as) == ("paid", "refund")
    await assert_money_invariant(db)
    await run_jobs(ctx, "payment.refund")
    assert [r.amount for r in fake.refunds.values()] == [FEE]
    await assert_money_invariant(db)
