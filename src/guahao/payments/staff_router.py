"""Money views for staff and operators (included by payments.router)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from guahao.booking import queries as booking_queries
from guahao.catalog import service as catalog_service
from guahao.core.deps import ClockDep, CurrentStaff, Db
from guahao.core.errors import Forbidden, NotFound
from guahao.core.localtime import localize
from guahao.payments import errors, reports, resolve
from guahao.payments.models import Payment, Refund
from guahao.payments.schemas import (
    BookingMoney,
    FlaggedPage,
    FlaggedPaymentRead,
    MoneyTotals,
    PaymentResolve,
    PaymentResolved,
    ReconciliationReport,
)

router = APIRouter(prefix="/api/v1/staff", tags=["staff payments"])
HOSPITAL_ROLES = ("hospital_admin", "scheduler", "front_desk")
MAX_RANGE_DAYS = 92


@router.get("/bookings/{booking_id}/payments", response_model=BookingMoney)
async def booking_payments(booking_id: int, staff: CurrentStaff, db: Db) -> BookingMoney:
    """A booking's payments and refunds, for staff of its hospital."""
    staff.require(*HOSPITAL_ROLES)
    async with db.read() as session:
        booking = await booking_queries.get(session, booking_id)
        if booking is None or (not staff.is_operator and booking.hospital_id != staff.hospital_id):
            raise NotFound("booking")
        return localize(await reports.booking_money(session, booking),
                        await catalog_service.zone_of(session, booking.hospital_id))


@router.get("/payments/totals", response_model=MoneyTotals)
async def money_totals(staff: CurrentStaff, db: Db, clock: ClockDep,
                       date_from: Annotated[dt.date | None, Query(alias="from")] = None,
                       date_to: Annotated[dt.date | None, Query(alias="to")] = None,
                       hospital_id: int | None = None) -> MoneyTotals:
    """Per day (China time) and hospital: paid, refunded, refund pending; the last 7 days
    unless `from` / `to` say otherwise. Operators see every hospital; a hospital admin their own."""
    staff.require("hospital_admin")
    date_to = date_to or reports.local_day(clock.now())
    date_from = date_from or date_to - dt.timedelta(days=6)
    if hospital_id is not None:
        staff.ensure_hospital(hospital_id)
    elif not staff.is_operator:
        hospital_id = staff.hospital_id
    if date_to < date_from or (date_to - date_from).days >= MAX_RANGE_DAYS:
        raise errors.ReportRangeTooLong(days=MAX_RANGE_DAYS)
    async with db.read() as session:
        return await reports.totals(session, first=date_from, last=date_to, hospital_id=hospital_id)


@router.get("/payments/reconciliation", response_model=ReconciliationReport)
async def reconciliation(request: Request, staff: CurrentStaff, db: Db, date: dt.date) -> ReconciliationReport:
    """The day's ledger against the provider's bill (对账), with every difference. Operators."""
    staff.require("platform_operator")
    return await reports.reconcile_day(db, request.app.state.providers.get("payments"), date)


def _operator_only(staff) -> None:
    # `require` lets operators through every role; these routes are for operators alone
    if not staff.is_operator:
        raise Forbidden()


@router.get("/payments/flagged", response_model=FlaggedPage)
async def flagged_payments(staff: CurrentStaff, db: Db, unresolved: bool = True,
                           limit: Annotated[int, Query(ge=1, le=200)] = 50,
                           before_id: int | None = None) -> FlaggedPage:
    """Payments the provider reported something odd about (e.g. another amount), newest
    first; by default only those still needing an operator. Operators."""
    _operator_only(staff)
    async with db.read() as session:
        rows = await resolve.list_flagged(session, unresolved=unresolved, limit=limit, before_id=before_id)
    items = [FlaggedPaymentRead(hospital_id=p.hospital_id, **reports.payment_read(p, r).model_dump()) for p, r in rows]
    return FlaggedPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)


async def _resolved(db, payment_id: int, outcome: str) -> PaymentResolved:
    async with db.read() as session:
        payment = await session.get_one(Payment, payment_id)
        refund = await session.scalar(select(Refund).where(Refund.payment_id == payment_id))
        return PaymentResolved(payment_id=payment_id, outcome=outcome, payment=reports.payment_read(payment, refund))


@router.post("/payments/{payment_id}/refund", response_model=PaymentResolved)
async def refund_flagged(request: Request, payment_id: int, body: PaymentResolve, staff: CurrentStaff, db: Db,
                         clock: ClockDep) -> PaymentResolved:
    """Refund a flagged payment (audited, with the operator's reason): one the provider holds
    money for, or one whose refund failed. Operators."""
    _operator_only(staff)
    outcome = await resolve.operator_refund(db, request.app.state.providers.get("payments"), payment_id=payment_id,
                                            staff_id=staff.staff_id, reason=body.reason, now=clock.now())
    return await _resolved(db, payment_id, outcome)


@router.post("/payments/{payment_id}/close", response_model=PaymentResolved)
async def close_flagged(request: Request, payment_id: int, body: PaymentResolve, staff: CurrentStaff, db: Db,
                        clock: ClockDep) -> PaymentResolved:
    """Close a flagged open payment the provider reports unpaid (audited, with the
    operator's reason). Operators."""
    _operator_only(staff)
    outcome = await resolve.operator_close(db, request.app.state.providers.get("payments"), payment_id=payment_id,
                                           staff_id=staff.staff_id, reason=body.reason, now=clock.now())
    return await _resolved(db, payment_id, outcome)
