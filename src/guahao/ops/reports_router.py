"""The back office's reports: bookings per day / department / doctor / state, the no-show
rate, cancellations and money (paid, refunded, refund pending), as JSON or CSV.

Here, above booking and payments, because a report combines both (each computes its part).
Hospital admins see their hospital; the operator any. A CSV export is audited (I9: exports
are), although no row carries personal data.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from guahao.booking import reports as booking_reports
from guahao.core import audit
from guahao.core.deps import ClockDep, CurrentStaff, Db, StaffPrincipal
from guahao.payments import reports as payment_reports

router = APIRouter(prefix="/api/v1/staff/hospitals/{hospital_id}/reports", tags=["staff reports"])
From = Annotated[dt.date | None, Query(alias="from")]
To = Annotated[dt.date | None, Query(alias="to")]


class BookingRow(BaseModel):
    key: str
    label: str
    total: int
    states: dict[str, int]


class BookingReport(BaseModel):
    group: str
    date_from: dt.date
    date_to: dt.date
    rows: list[BookingRow]


class ReportSummary(BaseModel):
    date_from: dt.date
    date_to: dt.date
    bookings: int
    states: dict[str, int]
    no_show_rate: float | None
    cancelled_by_patient: int
    cancelled_by_hospital: int
    revoked: int
    paid: int
    refunded: int
    refund_pending: int


def _range(staff: StaffPrincipal, hospital_id: int, first: dt.date | None, last: dt.date | None,
           today: dt.date) -> tuple[dt.date, dt.date]:
    staff.ensure_hospital(hospital_id)
    staff.require("hospital_admin")
    return booking_reports.report_range(first, last, today)


def _csv(header: list[str], rows: list[list], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    # a BOM so that spreadsheet programs open the Chinese labels as UTF-8
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


async def _audit_export(db, staff: StaffPrincipal, hospital_id: int, what: str, first: dt.date, last: dt.date,
                        now: dt.datetime) -> None:
    async with db.begin() as session:
        await audit.do_record(session, now=now, action="report.export", object_type="hospital", object_id=hospital_id,
                              hospital_id=hospital_id, staff_id=staff.staff_id,
                              detail={"report": what, "from": first.isoformat(), "to": last.isoformat()})


@router.get("/bookings", response_model=BookingReport)
async def bookings_report(hospital_id: int, staff: CurrentStaff, db: Db, clock: ClockDep, date_from: From = None,
                          date_to: To = None, group: Literal["day", "department", "doctor", "state"] = "day",
                          format: Literal["json", "csv"] = "json"):
    """Bookings by visit date, department, doctor or state, with counts per state."""
    now = clock.now()
    first, last = _range(staff, hospital_id, date_from, date_to, payment_reports.local_day(now))
    async with db.read() as session:
        rows = await booking_reports.bookings_by(session, hospital_id=hospital_id, first=first, last=last, group=group)
    if format == "csv":
        await _audit_export(db, staff, hospital_id, f"bookings_by_{group}", first, last, now)
        states = list(booking_reports.STATES)
        return _csv([group, "label", "total", *states],
                    [[r.key, r.label, r.total, *[r.states.get(s, 0) for s in states]] for r in rows],
                    f"bookings-{group}-{first}-{last}.csv")
    return BookingReport(group=group, date_from=first, date_to=last,
                         rows=[BookingRow(key=r.key, label=r.label, total=r.total, states=r.states) for r in rows])


@router.get("/summary", response_model=ReportSummary)
async def summary_report(hospital_id: int, staff: CurrentStaff, db: Db, clock: ClockDep, date_from: From = None,
                         date_to: To = None) -> ReportSummary:
    """Bookings, no-show rate and cancellations by visit date; money by payment / refund day."""
    first, last = _range(staff, hospital_id, date_from, date_to, payment_reports.local_day(clock.now()))
    async with db.read() as session:
        s = await booking_reports.summary(session, hospital_id=hospital_id, first=first, last=last)
        money = await payment_reports.totals(session, first=first, last=last, hospital_id=hospital_id)
    return ReportSummary(date_from=first, date_to=last, bookings=s.bookings, states=s.states,
                         no_show_rate=s.no_show_rate, cancelled_by_patient=s.cancelled_by_patient,
                         cancelled_by_hospital=s.cancelled_by_hospital, revoked=s.revoked, paid=money.paid,
                         refunded=money.refunded, refund_pending=money.refund_pending)


@router.get("/money.csv")
async def money_csv(hospital_id: int, staff: CurrentStaff, db: Db, clock: ClockDep, date_from: From = None,
                    date_to: To = None) -> Response:
    """Per day: paid, payments, refunded, refunds, refund pending (fen), as CSV."""
    now = clock.now()
    first, last = _range(staff, hospital_id, date_from, date_to, payment_reports.local_day(now))
    async with db.read() as session:
        money = await payment_reports.totals(session, first=first, last=last, hospital_id=hospital_id)
    await _audit_export(db, staff, hospital_id, "money", first, last, now)
    return _csv(["date", "paid", "payments", "refunded", "refunds", "refund_pending"],
                [[r.date.isoformat(), r.paid, r.payments, r.refunded, r.refunds, r.refund_pending] for r in money.rows],
                f"money-{first}-{last}.csv")
