"""The money invariant I5, checked on our ledger: every paid payment ends as the fee of a
kept booking or as exactly one refund, so that

    paid = confirmed fees + refunded + refund pending.

A refund counts as pending from the moment it is durable: a refund row in state `pending`,
or (for a cancellation or 停诊, whose refund row the job creates) a `payment.refund` outbox
message that has not been processed yet. Tests call `check_money` after every flow; it can
also run against production as an audit. Returns the violations, [] when all is well.
"""
from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import queries as booking_queries
from guahao.outbox import service as outbox
from guahao.payments.models import FEE_KEPT_STATES, Payment, Refund


async def check_money(session: AsyncSession, *, hospital_id: int | None = None) -> list[str]:
    def scoped(query, model):
        return query if hospital_id is None else query.where(model.hospital_id == hospital_id)

    payments = list(await session.scalars(scoped(select(Payment), Payment)))
    refunds = {r.payment_id: r for r in await session.scalars(scoped(select(Refund), Refund))}
    booking_ids = {p.booking_id for p in payments}
    kept = await booking_queries.list_with_fee(session, states=FEE_KEPT_STATES, hospital_id=hospital_id)
    bookings = {b.id: b for b in kept}
    missing = booking_ids - bookings.keys()
    if missing:
        bookings.update({b.id: b for b in await booking_queries.list_by_ids(session, missing)})
    queued = await _queued_fee_refunds(session, hospital_id)

    problems: list[str] = []
    by_id = {p.id: p for p in payments}
    fee_payments: dict[int, list[Payment]] = defaultdict(list)
    paid = fees = refunded = pending = 0
    for p in payments:
        refund = refunds.get(p.id)
        if p.state != "paid":
            if p.state == "created" and p.flagged_reason is not None:
                # the provider told us something about it and we neither kept nor returned it
                problems.append(f"payment {p.id} is flagged ({p.flagged_reason}) but still open")
            if refund is not None:
                problems.append(f"refund {refund.id} of payment {p.id} which is {p.state}, not paid")
            continue
        paid += p.amount
        booking = bookings[p.booking_id]
        if p.settled_as == "booking":
            fee_payments[booking.id].append(p)
        if refund is not None:
            if refund.amount != p.amount:
                problems.append(f"payment {p.id}: paid {p.amount} but refund {refund.id} is {refund.amount}")
            if refund.state == "failed":
                problems.append(f"payment {p.id}: refund {refund.id} failed; the money is neither kept nor returned")
            elif refund.state == "succeeded":
                refunded += refund.amount
            else:
                pending += refund.amount
            if p.settled_as == "booking" and booking.state in FEE_KEPT_STATES:
                problems.append(f"payment {p.id}: refunded although booking {booking.id} is {booking.state}")
            continue
        if p.settled_as == "booking" and booking.state in FEE_KEPT_STATES:
            fees += p.amount
            if p.amount != booking.amount_due:
                problems.append(f"payment {p.id}: paid {p.amount} for booking {booking.id} due {booking.amount_due}")
        elif p.settled_as == "booking" and booking.id in queued:
            pending += p.amount
        elif p.settled_as == "booking":
            problems.append(f"payment {p.id}: booking {booking.id} is {booking.state} but no refund is pending")
        elif p.settled_as == "refund":
            problems.append(f"payment {p.id}: came too late for booking {booking.id} and was not refunded")
        else:
            problems.append(f"payment {p.id}: paid but settled neither as a fee nor as a refund")

    for booking in kept:
        n = len(fee_payments.get(booking.id, []))
        if n != 1:
            problems.append(f"booking {booking.id} is {booking.state} with fee {booking.amount_due} "
                            f"but {n} payments paid for it")
    per_booking = defaultdict(int)
    for refund in refunds.values():
        if refund.payment_id not in by_id:
            problems.append(f"refund {refund.id} has no payment")
        per_booking[refund.booking_id] += 1
    paid_per_booking = defaultdict(int)
    for p in payments:
        paid_per_booking[p.booking_id] += p.state == "paid"
    for booking_id, n in per_booking.items():
        if n > paid_per_booking[booking_id]:
            problems.append(f"booking {booking_id} refunded {n} times for {paid_per_booking[booking_id]} payments")
    if not problems and paid != fees + refunded + pending:
        problems.append(f"paid {paid} != confirmed fees {fees} + refunded {refunded} + refund pending {pending}")
    return problems


async def _queued_fee_refunds(session: AsyncSession, hospital_id: int | None) -> set[int]:
    """Bookings whose fee refund is queued in the outbox but not opened by the job yet."""
    payloads = await outbox.unfinished_payloads(session, topic="payment.refund", hospital_id=hospital_id)
    return {int(p["booking_id"]) for p in payloads if not p.get("payment_id")}
