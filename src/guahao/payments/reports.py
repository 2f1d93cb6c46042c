"""Money views: a booking's payments and refunds, totals per day and hospital, and the daily
reconciliation of our ledger against the provider's bill.

Days are China Standard Time (UTC+8, the zone of every provider bill we reconcile with). A
payment's day is the provider's payment time (`paid_at`) and a refund's day the provider's
refund time, so both ledgers put every line on the same day.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import queries as booking_queries
from guahao.payments import errors
from guahao.payments.models import Payment, Refund
from guahao.payments.port import BillEntry, ProviderError, ProviderRefused
from guahao.payments.schemas import (
    BookingMoney,
    DailyTotal,
    Difference,
    LedgerSide,
    MoneyTotals,
    PaymentRead,
    ReconciliationReport,
    RefundRead,
)
from guahao.payments.wire import CST

TIMEZONE_NAME = "Asia/Shanghai"


def day_bounds(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(first, dt.time(0), tzinfo=CST)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=CST)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def local_day(at: dt.datetime) -> dt.date:
    return at.astimezone(CST).date()


def refund_read(refund: Refund | None) -> RefundRead | None:
    if refund is None:
        return None
    return RefundRead(id=refund.id, out_refund_no=refund.out_refund_no, amount=refund.amount, state=refund.state,
                      reason=refund.reason, attempts=refund.attempts, created_at=refund.created_at,
                      succeeded_at=refund.succeeded_at)


def payment_read(payment: Payment, refund: Refund | None) -> PaymentRead:
    return PaymentRead(id=payment.id, booking_id=payment.booking_id, out_trade_no=payment.out_trade_no,
                       amount=payment.amount, state=payment.state,
                       pay_url=payment.pay_url if payment.state == "created" else None, provider=payment.provider,
                       method=payment.method, provider_txn_id=payment.provider_txn_id, paid_at=payment.paid_at,
                       settled_as=payment.settled_as, flagged_reason=payment.flagged_reason,
                       created_at=payment.created_at, refund=refund_read(refund))


async def payments_of(session: AsyncSession, booking_id: int) -> list[PaymentRead]:
    payments = list(await session.scalars(select(Payment).where(Payment.booking_id == booking_id)
                                          .order_by(Payment.id)))
    refunds = {r.payment_id: r for r in await session.scalars(select(Refund).where(Refund.booking_id == booking_id))}
    return [payment_read(p, refunds.get(p.id)) for p in payments]


async def booking_money(session: AsyncSession, booking: booking_queries.BookingFacts) -> BookingMoney:
    payments = await payments_of(session, booking.id)
    paid = sum(p.amount for p in payments if p.state == "paid")
    refunds = [p.refund for p in payments if p.refund is not None]
    return BookingMoney(booking_id=booking.id, hospital_id=booking.hospital_id, booking_state=booking.state,
                        amount_due=booking.amount_due, paid=paid,
                        refunded=sum(r.amount for r in refunds if r.state == "succeeded"),
                        refund_pending=sum(r.amount for r in refunds if r.state == "pending"), payments=payments)


async def totals(session: AsyncSession, *, first: dt.date, last: dt.date, hospital_id: int | None) -> MoneyTotals:
    """Per day and hospital: paid (by payment time), refunded (by refund time) and refunds
    still pending (by the day they were opened)."""
    start, end = day_bounds(first, last)
    rows: dict[tuple[dt.date, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def scoped(query, model):
        return query if hospital_id is None else query.where(model.hospital_id == hospital_id)

    for hid, at, amount in await session.execute(scoped(
            select(Payment.hospital_id, Payment.paid_at, Payment.amount)
            .where(Payment.state == "paid", Payment.paid_at >= start, Payment.paid_at < end), Payment)):
        row = rows[(local_day(at), hid)]
        row["paid"] += amount
        row["payments"] += 1
    for hid, at, amount in await session.execute(scoped(
            select(Refund.hospital_id, Refund.succeeded_at, Refund.amount)
            .where(Refund.state == "succeeded", Refund.succeeded_at >= start, Refund.succeeded_at < end), Refund)):
        row = rows[(local_day(at), hid)]
        row["refunded"] += amount
        row["refunds"] += 1
    for hid, at, amount in await session.execute(scoped(
            select(Refund.hospital_id, Refund.created_at, Refund.amount)
            .where(Refund.state == "pending", Refund.created_at >= start, Refund.created_at < end), Refund)):
        rows[(local_day(at), hid)]["refund_pending"] += amount
    out = [DailyTotal(date=day, hospital_id=hid, paid=r["paid"], payments=r["payments"], refunded=r["refunded"],
                      refunds=r["refunds"], refund_pending=r["refund_pending"])
           for (day, hid), r in sorted(rows.items())]
    return MoneyTotals(date_from=first, date_to=last, timezone=TIMEZONE_NAME, rows=out,
                       paid=sum(r.paid for r in out), refunded=sum(r.refunded for r in out),
                       refund_pending=sum(r.refund_pending for r in out))


async def reconciliation(session: AsyncSession, *, day: dt.date, provider: str,
                         bill: list[BillEntry]) -> ReconciliationReport:
    """Our ledger of `day` against the provider's bill: every line on one side only, and
    every line whose amounts disagree."""
    start, end = day_bounds(day, day)
    ours_paid = {p.out_trade_no: p for p in await session.scalars(
        select(Payment).where(Payment.provider == provider, Payment.state == "paid",
                              Payment.paid_at >= start, Payment.paid_at < end))}
    refund_trade_no: dict[str, str] = {}
    ours_refunds: dict[str, Refund] = {}
    for refund, trade_no in await session.execute(
            select(Refund, Payment.out_trade_no).join(Payment, Payment.id == Refund.payment_id)
            .where(Payment.provider == provider, Refund.state == "succeeded",
                   Refund.succeeded_at >= start, Refund.succeeded_at < end)):
        ours_refunds[refund.out_refund_no], refund_trade_no[refund.out_refund_no] = refund, trade_no
    their_paid = {e.out_trade_no: e for e in bill if e.kind == "payment"}
    their_refunds = {e.out_refund_no: e for e in bill if e.kind == "refund"}

    # our rows for what only the provider has, to say why they differ
    named = set(their_paid) - set(ours_paid) | {e.out_trade_no for e in their_refunds.values()}
    known = {p.out_trade_no: p for p in await session.scalars(select(Payment).where(
        Payment.provider == provider, Payment.out_trade_no.in_(named)))} if named else {}
    refund_rows = {r.out_refund_no: r for r in await session.scalars(select(Refund).where(
        Refund.out_refund_no.in_(set(their_refunds) - set(ours_refunds))))} if their_refunds else {}

    diffs: list[Difference] = []

    def add(kind: str, no: str, payment: Payment | None, **extra) -> None:
        diffs.append(Difference(kind=kind, out_trade_no=no, payment_id=payment.id if payment else None,
                                booking_id=payment.booking_id if payment else None,
                                hospital_id=payment.hospital_id if payment else None, **extra))

    for no, entry in their_paid.items():
        mine = ours_paid.get(no)
        if mine is None:
            other = known.get(no)
            kind = ("unknown_to_us" if other is None else "paid_on_another_day" if other.state == "paid"
                    else f"not_settled_here_{other.state}")
            add(kind, no, other, provider=entry.amount, ours=other.amount if other else None)
        elif mine.amount != entry.amount:
            add("amount_mismatch", no, mine, ours=mine.amount, provider=entry.amount)
    for no, mine in ours_paid.items():
        if no not in their_paid:
            add("missing_at_provider", no, mine, ours=mine.amount)
    for rno, entry in their_refunds.items():
        mine = ours_refunds.get(rno)
        payment = known.get(entry.out_trade_no)
        if mine is None:
            row = refund_rows.get(rno)
            kind = "refund_unknown_to_us" if row is None else f"refund_{row.state}_here"
            add(kind, entry.out_trade_no, payment, out_refund_no=rno, provider=entry.amount,
                ours=row.amount if row else None)
        elif mine.amount != entry.amount:
            add("refund_amount_mismatch", entry.out_trade_no, payment, out_refund_no=rno, ours=mine.amount,
                provider=entry.amount)
    for rno, mine in ours_refunds.items():
        if rno not in their_refunds:
            diffs.append(Difference(kind="refund_missing_at_provider", out_trade_no=refund_trade_no[rno],
                                    out_refund_no=rno,
                                    ours=mine.amount, payment_id=mine.payment_id, booking_id=mine.booking_id,
                                    hospital_id=mine.hospital_id))
    return ReconciliationReport(
        date=day, provider=provider,
        ours=LedgerSide(payments=len(ours_paid), paid=sum(p.amount for p in ours_paid.values()),
                        refunds=len(ours_refunds), refunded=sum(r.amount for r in ours_refunds.values())),
        theirs=LedgerSide(payments=len(their_paid), paid=sum(e.amount for e in their_paid.values()),
                          refunds=len(their_refunds), refunded=sum(e.amount for e in their_refunds.values())),
        differences=diffs, balanced=not diffs)


async def pending_refunds(session: AsyncSession) -> int:
    """Refunds opened and not yet finished (for /metrics: money that is owed back)."""
    return await session.scalar(select(func.count()).select_from(Refund).where(Refund.state == "pending")) or 0


async def reconcile_day(db, port, day: dt.date):
    """The day's ledger against the provider's bill (对账), for the API and the operator's page.
    The bill is fetched before the read transaction: no network inside it."""
    if port is None:
        raise errors.PaymentsUnavailable()
    try:
        bill = await port.bill(day)
    except (ProviderError, ProviderRefused) as exc:
        raise errors.PaymentsUnavailable() from exc
    async with db.read() as session:
        return await reconciliation(session, day=day, provider=port.name, bill=bill)
