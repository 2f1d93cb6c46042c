"""Payment state changes. Each runs inside the caller's single transaction and never commits;
no network I/O happens here (the provider is called between transactions, in `service`).

Concurrency story of a payment that succeeds. Any number of deliveries of the provider's
notification, and the reconciliation job, may race to settle the same payment. Each does, in
one transaction: record the verified notification (unique by the provider's id, so a copy
of the same notification fails or sees the first one), then `UPDATE payments SET state =
'paid' WHERE id = :id AND state <> 'paid'`. Exactly one transaction matches a row there (on
PostgreSQL the others wait for its row lock and then match nothing; on SQLite writers are
serial), and only that one confirms the booking or, when the hold is gone, opens the refund.
Lock order: payment row (taken first, before the notification row is inserted), then the
booking's seat and booking rows (inside do_confirm), then refund and outbox rows; nothing
else locks a payment before a seat.
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import actions as booking_actions
from guahao.booking import errors as booking_errors
from guahao.booking import queries as booking_queries
from guahao.core.errors import GuahaoError, NotFound
from guahao.outbox import service as outbox
from guahao.payments import errors
from guahao.payments.models import FEE_KEPT_STATES, Payment, PaymentNotification, Refund
from guahao.payments.port import Notification, ProviderPayment, ProviderRefund

log = structlog.get_logger("guahao.payments")

STATE_LABELS = {"confirmed": "已预约", "checked_in": "已签到", "completed": "已就诊", "cancelled": "已取消",
                "expired": "已超时", "revoked": "已停诊撤销", "no_show": "已爽约"}


def new_out_trade_no(now: dt.datetime) -> str:
    # random, not the row id: ids restart in a fresh database, the provider's ledger does not
    return f"GH{now:%y%m%d}{secrets.token_hex(8).upper()}"


def out_refund_no(out_trade_no: str) -> str:
    """Fixed per payment: every retry of a refund asks for the same single refund."""
    return f"{out_trade_no}R"


async def do_open_payment(session: AsyncSession, *, account_id: int, booking_id: int, provider: str,
                          now: dt.datetime, method: str | None = None) -> tuple[Payment, bool]:
    """The booking's open payment, or a new one: (payment, created). Only a live hold of the
    account's own booking can be paid, and the amount is always the booking's."""
    # the booking row lock serialises two payment requests for one booking (the partial
    # unique index uq_payments_booking_open is the backstop)
    booking = await booking_actions.lock_for_new_payment(session, booking_id)
    if booking is None or booking.account_id != account_id:
        raise NotFound("booking")
    payments = list(await session.scalars(select(Payment).where(Payment.booking_id == booking.id)
                                          .order_by(Payment.id)))
    # a payment given back (late, or another amount) does not stop the patient paying again
    if booking.state == "held" and any(p.state == "paid" and p.settled_as != "refund" for p in payments):
        raise errors.AlreadyPaid()
    if booking.state == "expired" or (booking.state == "held" and booking.hold_expires_at <= now):
        raise booking_errors.HoldExpired()
    if booking.state in FEE_KEPT_STATES and any(p.settled_as == "booking" for p in payments):
        raise errors.AlreadyPaid()
    if booking.state != "held":
        raise errors.NotPayable(state=STATE_LABELS.get(booking.state, booking.state))
    for payment in payments:
        if payment.state == "created":
            if method is not None and payment.method != method:  # the patient chose again
                payment.method = method
                await session.flush()
            return payment, False
    payment = Payment(hospital_id=booking.hospital_id, booking_id=booking.id, account_id=account_id,
                      provider=provider, method=method, out_trade_no=new_out_trade_no(now),
                      amount=booking.amount_due,
                      state="created", created_at=now, updated_at=now)
    session.add(payment)
    await session.flush()
    return payment, True


async def do_attach_pay_url(session: AsyncSession, payment_id: int, pay_url: str, now: dt.datetime) -> None:
    await session.execute(update(Payment).where(Payment.id == payment_id, Payment.pay_url.is_(None))
                          .values(pay_url=pay_url, updated_at=now))


async def do_handle_notification(session: AsyncSession, *, provider: str, notification: Notification,
                                 body_sha256: str, now: dt.datetime) -> str:
    """Record a verified notification and act on it; returns its outcome. A notification
    already recorded returns the first outcome and does nothing (duplicates are no-ops)."""
    reported = notification.payment
    # Locks in the documented order: the booking's (schedule shared, seat) and then the payment
    # row, before anything is written. The payment row must be locked before our notification
    # row is inserted: the insert takes a key-share lock on the payment through its foreign
    # key, and the payment UPDATE below (a unique column, provider_txn_id) conflicts with it,
    # so two notifications that each inserted first and then updated would deadlock.
    booking_id = await session.scalar(select(Payment.booking_id).where(
        Payment.out_trade_no == reported.out_trade_no, Payment.provider == provider))
    if booking_id is not None:
        await booking_actions.lock_for_payment(session, booking_id)
    payment = await session.scalar(select(Payment).where(Payment.out_trade_no == reported.out_trade_no,
                                                         Payment.provider == provider).with_for_update())
    first = await session.scalar(select(PaymentNotification).where(
        PaymentNotification.provider == provider, PaymentNotification.notification_id == notification.id,
        PaymentNotification.verified.is_(True)))
    if first is not None:
        return first.outcome
    record = PaymentNotification(hospital_id=payment.hospital_id if payment else None, provider=provider,
                                 notification_id=notification.id, payment_id=payment.id if payment else None,
                                 body_sha256=body_sha256, verified=True, outcome="processing", received_at=now)
    session.add(record)
    await session.flush()  # a concurrent copy of this notification fails here (IntegrityError)
    if payment is None:
        outcome = "unknown_payment"
    elif notification.event_type == "TRANSACTION.SUCCESS" and reported.paid:
        outcome = await settle_paid(session, payment, reported, now=now)
    elif reported.trade_state in ("PAYERROR", "CLOSED"):
        outcome = "failed" if await do_mark_unpaid(session, payment.id, reported.trade_state, now) else "ignored"
    else:
        outcome = "ignored"
    record.outcome = outcome
    if outcome in ("amount_mismatch", "mismatch_refund", "unknown_payment"):
        log.warning("payment_notification_refused", outcome=outcome, notification_id=notification.id,
                    payment_id=payment.id if payment else None)
    return outcome


async def settle_paid(session: AsyncSession, payment: Payment, reported: ProviderPayment, *,
                      now: dt.datetime) -> str:
    """The provider says `payment` is paid: confirm its booking if the hold is still running,
    else open its refund. Returns confirmed | late_refund | mismatch_refund | already_settled |
    amount_mismatch."""
    await booking_actions.lock_for_payment(session, payment.booking_id)  # before the payment's row
    if reported.amount != payment.amount:
        return await do_settle_as_refund(session, payment, reported, reason="amount_mismatch",
                                         flag="amount_mismatch", now=now)
    result = await session.execute(
        update(Payment).where(Payment.id == payment.id, Payment.state != "paid")
        .values(state="paid", provider_txn_id=reported.txn_id, paid_at=reported.paid_at or now, updated_at=now)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        return "already_settled"
    booking = await booking_queries.get_or_raise(session, payment.booking_id, fresh=True)
    if booking.state == "held" and booking.hold_expires_at is not None and booking.hold_expires_at > now:
        try:
            # a savepoint: a refused confirmation must leave no partial change behind, and on
            # PostgreSQL the outer transaction must stay usable for the refund below
            async with session.begin_nested():
                await booking_actions.do_confirm(session, booking.id, now=now)
        except GuahaoError:
            # any refusal (the hold ended, the booking moved on, the schedule was suspended
            # meanwhile): the money cannot pay for this visit, so it goes back below
            booking = await booking_queries.get_or_raise(session, booking.id, fresh=True)
        else:
            await _settle(session, payment.id, "booking", now)
            return "confirmed"
    await _settle(session, payment.id, "refund", now)
    await _open_refund(session, payment, booking, amount=payment.amount, reason="late_payment", now=now)
    return "late_refund"


async def do_settle_as_refund(session: AsyncSession, payment: Payment, reported: ProviderPayment, *, reason: str,
                              flag: str | None, now: dt.datetime) -> str:
    """The provider holds money for `payment` that must not pay for the visit (another amount
    than ours, or an operator decided so): record it as paid with the amount the provider
    holds, never confirm the booking, and open exactly one refund of that amount.

    A correctly signed notification (or the provider's own answer to a query) proves the
    money arrived; leaving the payment open would keep it at the provider forever (I5). The
    conditional UPDATE is the exactly-once gate, as in `settle_paid`: duplicates of the
    notification, the reconciliation job and an operator all race on it and one wins."""
    if reported.amount <= 0:  # nothing arrived, so nothing to give back: close it, keep the flag
        await session.execute(update(Payment).where(Payment.id == payment.id, Payment.state == "created")
                              .values(state="closed", flagged_reason=flag, updated_at=now)
                              .execution_options(synchronize_session=False))
        return "amount_mismatch"
    values = {"state": "paid", "amount": reported.amount, "provider_txn_id": reported.txn_id,
              "paid_at": reported.paid_at or now, "settled_as": "refund", "settled_at": now, "updated_at": now}
    if flag is not None:
        values["flagged_reason"] = flag
    result = await session.execute(update(Payment).where(Payment.id == payment.id, Payment.state != "paid")
                                   .values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:
        return "already_settled"
    booking = await booking_queries.get_or_raise(session, payment.booking_id)
    await _open_refund(session, payment, booking, amount=reported.amount, reason=reason, now=now)
    log.warning("payment_settled_as_refund", payment_id=payment.id, booking_id=booking.id, reason=reason,
                ours=payment.amount, provider=reported.amount)
    return "mismatch_refund"


async def _settle(session: AsyncSession, payment_id: int, settled_as: str, now: dt.datetime) -> None:
    await session.execute(update(Payment).where(Payment.id == payment_id)
                          .values(settled_as=settled_as, settled_at=now, updated_at=now)
                          .execution_options(synchronize_session=False))


async def _open_refund(session: AsyncSession, payment: Payment, booking: booking_queries.BookingFacts, *, amount: int, reason: str,
                       now: dt.datetime) -> None:
    """Give back a payment that did not pay for the visit (it came after the hold ended, or
    with another amount), and tell the patient when it came late. The refund row is the
    'refund pending' of I5 from this commit on; the `payment.refund` job carries it out."""
    effective = "expired" if booking.state == "held" and reason == "late_payment" else booking.state
    session.add(Refund(hospital_id=payment.hospital_id, payment_id=payment.id, booking_id=booking.id,
                       out_refund_no=out_refund_no(payment.out_trade_no), amount=amount, state="pending",
                       reason=reason, attempts=0, created_at=now, updated_at=now))
    payload = {"booking_id": booking.id, "hospital_id": booking.hospital_id, "payment_id": payment.id,
               "amount": amount, "reason": reason, "booking_state": effective}
    await outbox.enqueue(session, topic="payment.refund", dedupe_key=f"payment.refund:payment:{payment.id}",
                         payload=payload, now=now, hospital_id=booking.hospital_id)
    if reason == "late_payment":  # its message says the payment came too late; other refunds are quiet
        await outbox.enqueue(session, topic="notify.payment_late_refund",
                             dedupe_key=f"notify.payment_late_refund:{payment.id}", payload=payload, now=now,
                             hospital_id=booking.hospital_id)
        log.info("payment_late_refund_opened", payment_id=payment.id, booking_id=booking.id, booking_state=effective)


async def do_mark_unpaid(session: AsyncSession, payment_id: int, trade_state: str, now: dt.datetime) -> bool:
    """An open payment the provider failed (PAYERROR) or closed: a new one may be opened."""
    state = "failed" if trade_state == "PAYERROR" else "closed"
    result = await session.execute(update(Payment).where(Payment.id == payment_id, Payment.state == "created")
                                   .values(state=state, updated_at=now))
    return result.rowcount == 1


# --- refunds --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RefundOrder:
    refund_id: int
    out_trade_no: str
    out_refund_no: str
    amount: int
    state: str


async def do_open_refund(session: AsyncSession, *, booking_id: int, payment_id: int | None, reason: str,
                         now: dt.datetime) -> RefundOrder | None:
    """The refund of `payment_id`, or of the payment that paid for the booking's visit (a
    cancellation or 停诊); created on first call, the same one on every later call. None when
    nothing was paid."""
    query = select(Payment).where(Payment.booking_id == booking_id, Payment.state == "paid")
    query = query.where(Payment.id == payment_id) if payment_id else query.where(Payment.settled_as == "booking")
    payment = await session.scalar(query)
    if payment is None:
        return None
    refund = await session.scalar(select(Refund).where(Refund.payment_id == payment.id))
    if refund is None:
        try:
            async with session.begin_nested():
                refund = Refund(hospital_id=payment.hospital_id, payment_id=payment.id, booking_id=booking_id,
                                out_refund_no=out_refund_no(payment.out_trade_no), amount=payment.amount,
                                state="pending", reason=reason, attempts=0, created_at=now, updated_at=now)
                session.add(refund)
        except IntegrityError:  # a concurrent run of the same job opened it first
            refund = await session.scalar(select(Refund).where(Refund.payment_id == payment.id))
    return RefundOrder(refund.id, payment.out_trade_no, refund.out_refund_no, refund.amount, refund.state)


async def do_finish_refund(session: AsyncSession, refund_id: int, result: ProviderRefund, now: dt.datetime) -> bool:
    outcome = await session.execute(
        update(Refund).where(Refund.id == refund_id, Refund.state == "pending")
        .values(state="succeeded", provider_refund_id=result.refund_id, succeeded_at=result.succeeded_at or now,
                attempts=Refund.attempts + 1, last_error=None, updated_at=now))
    return outcome.rowcount == 1


async def do_note_refund_attempt(session: AsyncSession, refund_id: int, error: str, now: dt.datetime, *,
                                 give_up: bool = False) -> None:
    values = {"attempts": Refund.attempts + 1, "last_error": error[:300], "updated_at": now}
    if give_up:
        values["state"] = "failed"
    await session.execute(update(Refund).where(Refund.id == refund_id, Refund.state == "pending").values(**values))
