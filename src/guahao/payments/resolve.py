"""Operators' hand on flagged payments: list them, refund or close one, with a reason that
goes to the audit log.

Wrong amounts are refunded automatically now (actions.do_settle_as_refund); this is for what
automation cannot decide: a flagged payment still open (flagged before the automatic refund
existed, or the provider answers queries oddly), or a refund the provider refused. Like every
payment flow, the provider is asked before the transaction and the transaction re-checks
state under its conditional UPDATE, so two operators pressing at once act once.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core import audit
from guahao.core.db import Database
from guahao.core.errors import NotFound
from guahao.outbox import service as outbox
from guahao.payments import actions, errors
from guahao.payments.models import Payment, Refund
from guahao.payments.port import PaymentPort, ProviderError, ProviderPayment, ProviderRefused


async def list_flagged(session: AsyncSession, *, unresolved: bool, limit: int,
                       before_id: int | None = None) -> list[tuple[Payment, Refund | None]]:
    """Flagged payments, newest first; `unresolved`: only those still open or whose refund
    failed (the ones an operator must act on)."""
    query = (select(Payment, Refund).outerjoin(Refund, Refund.payment_id == Payment.id)
             .where(Payment.flagged_reason.is_not(None)).order_by(Payment.id.desc()).limit(limit))
    if unresolved:
        query = query.where(or_(Payment.state == "created", Refund.state == "failed"))
    if before_id is not None:
        query = query.where(Payment.id < before_id)
    return [(p, r) for p, r in (await session.execute(query)).all()]


async def _flagged(db: Database, payment_id: int) -> Payment:
    async with db.read() as session:
        payment = await session.get(Payment, payment_id)
    if payment is None or payment.flagged_reason is None:
        raise NotFound("payment")
    return payment


async def _ask(port: PaymentPort | None, out_trade_no: str) -> ProviderPayment | None:
    if port is None:
        raise errors.PaymentsUnavailable()
    try:
        return await port.query(out_trade_no)
    except (ProviderError, ProviderRefused) as exc:
        raise errors.PaymentsUnavailable() from exc


async def operator_refund(db: Database, port: PaymentPort | None, *, payment_id: int, staff_id: int, reason: str,
                          now: dt.datetime) -> str:
    """Refund a flagged payment: an open one the provider reports paid (refunded in full, as
    it holds it), or a paid one whose refund failed (queued again). Returns the outcome."""
    payment = await _flagged(db, payment_id)
    if payment.state == "paid":
        async with db.begin() as session:
            outcome = await do_requeue_failed_refund(session, payment, now=now)
            await _audit(session, payment, "payment.operator_refund", staff_id, reason, outcome, now)
        return outcome
    reported = await _ask(port, payment.out_trade_no)
    if reported is None or not reported.paid:
        raise errors.NotPaidAtProvider()
    async with db.begin() as session:
        fresh = await session.get_one(Payment, payment_id, populate_existing=True)
        outcome = await actions.do_settle_as_refund(session, fresh, reported, reason="operator", flag=None, now=now)
        if outcome == "already_settled":
            raise errors.PaymentAlreadyResolved()
        await _audit(session, payment, "payment.operator_refund", staff_id, reason, outcome, now,
                     provider_amount=reported.amount)
    return outcome


async def operator_close(db: Database, port: PaymentPort | None, *, payment_id: int, staff_id: int, reason: str,
                         now: dt.datetime) -> str:
    """Close a flagged open payment that the provider reports unpaid (closed there first, so
    it cannot be paid afterwards). A payment the provider holds money for is refunded, never
    closed."""
    payment = await _flagged(db, payment_id)
    if payment.state != "created":
        raise errors.PaymentAlreadyResolved()
    reported = await _ask(port, payment.out_trade_no)
    if reported is not None and reported.paid:
        raise errors.PaidAtProvider()
    if reported is not None and reported.trade_state == "NOTPAY":
        try:
            await port.close(payment.out_trade_no)
        except ProviderRefused as exc:
            if exc.code == "ORDERPAID":
                raise errors.PaidAtProvider() from exc
            raise errors.PaymentsUnavailable() from exc
        except ProviderError as exc:
            raise errors.PaymentsUnavailable() from exc
    async with db.begin() as session:
        if not await actions.do_mark_unpaid(session, payment_id, "CLOSED", now):
            raise errors.PaymentAlreadyResolved()
        await _audit(session, payment, "payment.operator_close", staff_id, reason, "closed", now)
    return "closed"


async def do_requeue_failed_refund(session: AsyncSession, payment: Payment, *, now: dt.datetime) -> str:
    """Put a refund the provider refused back to pending and queue its job again (the same
    refund number, so the provider still refunds at most once)."""
    refund = await session.scalar(select(Refund).where(Refund.payment_id == payment.id))
    if refund is None or refund.state != "failed":
        raise errors.PaymentAlreadyResolved()
    result = await session.execute(update(Refund).where(Refund.id == refund.id, Refund.state == "failed")
                                   .values(state="pending", last_error=None, updated_at=now)
                                   .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise errors.PaymentAlreadyResolved()
    await outbox.enqueue(session, topic="payment.refund",
                         dedupe_key=f"payment.refund:payment:{payment.id}:operator:{refund.attempts}",
                         payload={"booking_id": payment.booking_id, "hospital_id": payment.hospital_id,
                                  "payment_id": payment.id, "amount": refund.amount, "reason": refund.reason},
                         now=now, hospital_id=payment.hospital_id)
    return "refund_requeued"


async def _audit(session: AsyncSession, payment: Payment, action: str, staff_id: int, reason: str, outcome: str,
                 now: dt.datetime, **extra: object) -> None:
    await audit.do_record(session, now=now, action=action, object_type="payment", object_id=payment.id,
                                hospital_id=payment.hospital_id, staff_id=staff_id,
                                detail={"reason": reason, "outcome": outcome, "flag": payment.flagged_reason,
                                        "state_before": payment.state, "amount": payment.amount, **extra})
