"""The payment flow across transactions and the provider: start a payment, take a
notification, reconcile open payments, refund. The provider is always called between two
short transactions, never under a row lock (DESIGN 5, STYLE 7)."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from guahao.booking import actions as booking_actions
from guahao.booking import queries as booking_queries
from guahao.catalog import service as catalog_service
from guahao.config import Settings
from guahao.core import fees, metrics
from guahao.core.db import Database
from guahao.payments import actions, errors, rejections
from guahao.payments import provider as provider_config
from guahao.payments.models import Payment, PaymentNotification
from guahao.payments.port import Notification, NotificationRejected, PaymentPort, ProviderError, ProviderRefused

log = structlog.get_logger("guahao.payments")

# the reconciliation job asks the provider about open payments this close to their deadline
RECONCILE_LEAD = dt.timedelta(minutes=2)
# provider queries in flight at once (each payment is its own short transaction afterwards)
RECONCILE_CONCURRENCY = 8


@dataclass(frozen=True)
class StartedPayment:
    payment: Payment
    hold_expires_at: dt.datetime
    created: bool


async def start_payment(db: Database, port: PaymentPort | None, settings: Settings, *, account_id: int,
                        booking_id: int, now: dt.datetime, method: str | None = None) -> StartedPayment:
    """Open (or resume) the payment of a held booking: our row first, committed; then the
    provider; then the pay URL. A crash or provider failure between the steps leaves an open
    payment without a URL, which the next request resumes (the provider call is idempotent
    on out_trade_no)."""
    if port is None:
        async with db.read() as session:  # someone else's booking stays a 404, whatever else is wrong
            await booking_actions.get_for_account(session, account_id, booking_id)
        raise errors.PaymentsUnavailable()
    async with db.begin() as session:
        payment, created = await actions.do_open_payment(session, account_id=account_id, booking_id=booking_id,
                                                         provider=port.name, now=now, method=method)
        booking = await booking_queries.get_or_raise(session, booking_id)
        hospital = await catalog_service.get_hospital_or_raise(session, booking.hospital_id, include_inactive=True)
        department = await catalog_service.get_department_or_raise(session, booking.department_id)
        description = f"{hospital.name} {department.name} {fees.parts(booking.registration_fee, booking.consultation_fee)}"
    if payment.pay_url is None:
        try:
            pay_url = await port.create_payment(
                out_trade_no=payment.out_trade_no, amount=payment.amount, description=description,
                notify_url=provider_config.notify_url(settings, port.name),
                return_url=provider_config.return_url(settings, booking_id))
        except (ProviderError, ProviderRefused) as exc:
            log.warning("payment_create_failed", payment_id=payment.id, error=str(exc)[:200])
            raise errors.PaymentsUnavailable() from exc
        async with db.begin() as session:
            await actions.do_attach_pay_url(session, payment.id, pay_url, now)
        payment.pay_url = pay_url
    return StartedPayment(payment, booking.hold_expires_at, created)


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class SingleFlight:
    """Copies of one verified notification arriving at one process at once wait for the first
    copy's outcome instead of each queueing on the database's unique index behind it (on
    PostgreSQL every waiting copy would hold a pooled connection). Only an optimisation: across
    processes the unique index decides, and a copy whose leader failed runs on its own."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[str]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[str]]) -> str:
        leader = self._running.get(key)
        if leader is not None:
            try:
                return await asyncio.shield(leader)
            except Exception:
                return await work()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            outcome = await work()
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: followers re-run; nobody else needs it
            raise
        else:
            future.set_result(outcome)
            return outcome
        finally:
            del self._running[key]


async def take_notification(db: Database, port: PaymentPort, headers: Mapping[str, str], body: bytes, *,
                            now: dt.datetime, flights: SingleFlight | None = None,
                            before_rejecting: Callable[[], Awaitable[None]] | None = None) -> str:
    """Verify first, then record and act in one transaction; returns the outcome. The caller
    answers 2xx only after this returned, i.e. after the commit (I7). `before_rejecting` runs
    for a notification that failed verification before any database work (the router's rate
    limit: it raises to refuse)."""
    digest = body_hash(body)
    try:
        notification = port.verify_and_parse(headers, body)
    except NotificationRejected as exc:
        rejections.REJECTED.labels(port.name, exc.reason).inc()
        if before_rejecting is not None:
            await before_rejecting()
        # no body, no personal data: the reason and a fingerprint of what was sent
        log.warning("payment_notification_rejected", provider=port.name, reason=exc.reason,
                    body_sha256=digest[:16], size=len(body))
        async with db.begin() as session:
            await rejections.do_count_rejected(session, provider=port.name, reason=exc.reason, body_sha256=digest,
                                               now=now)
        if exc.reason == "malformed":
            raise errors.NotificationMalformed() from None
        raise errors.NotificationRejected() from None  # the reason stays in our log, not in the answer
    if flights is None:
        return await _record_and_act(db, port, notification, digest, now)
    return await flights.run(f"{port.name}:{notification.id}:{digest}",
                             lambda: _record_and_act(db, port, notification, digest, now))


async def _record_and_act(db: Database, port: PaymentPort, notification: Notification, digest: str, now: dt.datetime) -> str:
    try:
        async with db.begin() as session:
            return await actions.do_handle_notification(session, provider=port.name, notification=notification,
                                                        body_sha256=digest, now=now)
    except IntegrityError:
        # a concurrent copy of the same notification committed first: its outcome is ours
        async with db.read() as session:
            outcome = await session.scalar(select(PaymentNotification.outcome).where(
                PaymentNotification.provider == port.name, PaymentNotification.notification_id == notification.id,
                PaymentNotification.verified.is_(True)))
        if outcome is None:
            raise
        return outcome


@dataclass
class ReconcileSummary:
    checked: int = 0
    confirmed: int = 0
    refunded: int = 0
    closed: int = 0
    failed: int = 0
    unreachable: int = 0


async def reconcile_open_payments(db: Database, port: PaymentPort, *, now: dt.datetime, limit: int = 200,
                                  lead: dt.timedelta = RECONCILE_LEAD) -> ReconcileSummary:
    """Ask the provider about open payments whose hold ends soon or has ended, so that a
    payment whose notification never came still confirms its booking before the hold is
    over, and one that came too late is refunded. Unpaid ones whose hold is over are closed
    at the provider, so the patient cannot pay for a seat that is gone."""
    summary = ReconcileSummary()
    # one statement: the LIMIT applies to the payments whose booking's hold is over or ending
    hold_over = booking_queries.holds_over_by(now + lead)
    async with db.read() as session:
        rows = (await session.execute(
            select(Payment.id, Payment.out_trade_no, hold_over.c.state, hold_over.c.hold_expires_at)
            .join(hold_over, hold_over.c.id == Payment.booking_id)
            # flagged ones too: a flag must never keep money at the provider (I5)
            .where(Payment.state == "created", Payment.provider == port.name)
            .order_by(Payment.id).limit(limit))).all()
    gate = asyncio.Semaphore(RECONCILE_CONCURRENCY)

    async def one(payment_id: int, out_trade_no: str, booking_state: str, deadline: dt.datetime | None) -> None:
        hold_over = booking_state != "held" or deadline is None or deadline <= now
        async with gate:
            try:
                await _reconcile_one(db, port, payment_id, out_trade_no, hold_over=hold_over, now=now,
                                     summary=summary)
            except ProviderError as exc:
                summary.unreachable += 1
                log.warning("payment_reconcile_unreachable", payment_id=payment_id, error=str(exc)[:200])

    summary.checked = len(rows)
    await asyncio.gather(*(one(*row) for row in rows))
    return summary


async def _reconcile_one(db: Database, port: PaymentPort, payment_id: int, out_trade_no: str, *, hold_over: bool,
                         now: dt.datetime, summary: ReconcileSummary) -> None:
    reported = await port.query(out_trade_no)
    if reported is not None and not reported.paid and reported.trade_state == "NOTPAY" and hold_over:
        try:
            await port.close(out_trade_no)
        except ProviderRefused as exc:
            if exc.code != "ORDERPAID":
                raise ProviderError(f"close refused: {exc.code}") from exc
        reported = await port.query(out_trade_no)  # paid in between, or closed now
    if reported is not None and reported.trade_state == "NOTPAY":
        return  # not paid yet, and the hold is still running: ask again next time
    async with db.begin() as session:
        payment = await session.get_one(Payment, payment_id)
        if reported is None:
            # the provider never heard of it (we crashed before creating it there)
            if hold_over and await actions.do_mark_unpaid(session, payment_id, "CLOSED", now):
                summary.closed += 1
            return
        if reported.paid:
            outcome = await actions.settle_paid(session, payment, reported, now=now)
            summary.confirmed += outcome == "confirmed"
            summary.refunded += outcome in ("late_refund", "mismatch_refund")
            if outcome != "already_settled":
                log.info("payment_reconciled", payment_id=payment_id, outcome=outcome)
        elif (reported.trade_state in ("PAYERROR", "CLOSED")
              and await actions.do_mark_unpaid(session, payment_id, reported.trade_state, now)):
            summary.closed += reported.trade_state == "CLOSED"
            summary.failed += reported.trade_state == "PAYERROR"


async def refund(db: Database, port: PaymentPort | None, *, booking_id: int, payment_id: int | None,
                 reason: str, now: dt.datetime) -> str:
    """Open (once) and carry out the refund of a booking's fee or of one payment. Returns
    succeeded | nothing_paid | already_done; raises ProviderError (retry) or ProviderRefused."""
    async with db.begin() as session:
        order = await actions.do_open_refund(session, booking_id=booking_id, payment_id=payment_id, reason=reason,
                                             now=now)
    if order is None:
        return "nothing_paid"
    if order.state != "pending":
        return "already_done"
    if port is None:
        raise ProviderError("no payment provider configured")
    try:
        result = await port.refund(out_trade_no=order.out_trade_no, out_refund_no=order.out_refund_no,
                                   amount=order.amount)
    except ProviderRefused as exc:
        async with db.begin() as session:
            await actions.do_note_refund_attempt(session, order.refund_id, f"refused: {exc.code}", now, give_up=True)
        metrics.REFUNDS.labels("refused").inc()
        log.error("refund_refused", refund_id=order.refund_id, code=exc.code)
        raise
    except ProviderError as exc:
        async with db.begin() as session:
            await actions.do_note_refund_attempt(session, order.refund_id, str(exc), now)
        metrics.REFUNDS.labels("failed").inc()
        raise
    if result.status != "SUCCESS":
        raise ProviderError(f"refund {order.out_refund_no} still {result.status}")
    async with db.begin() as session:
        await actions.do_finish_refund(session, order.refund_id, result, now)
    metrics.REFUNDS.labels("succeeded").inc()
    return "succeeded"
