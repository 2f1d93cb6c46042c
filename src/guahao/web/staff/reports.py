"""Reports (bookings per day / department / doctor / state, no-show rate, cancellations,
money, with links to the API's audited CSV exports) and the restriction list (黑名单) with
lift and reason. The numbers come from booking.reports and payments.reports, the functions
the JSON report routes call; a restriction is lifted by booking.restrictions.do_lift.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from guahao.booking import reports as booking_reports
from guahao.booking import restrictions, views
from guahao.booking.schemas import LiftRequest
from guahao.catalog import service as catalog_service
from guahao.core.errors import GuahaoError
from guahao.core.localtime import localize
from guahao.payments import reports as payment_reports
from guahao.web.staff.base import ADMINS, RESTRICTION_READERS, StaffPageDep, form_of, parse, redirect, render

router = APIRouter(prefix="/staff/hospitals/{hospital_id}", include_in_schema=False)
From = Annotated[dt.date | None, Query(alias="from")]
To = Annotated[dt.date | None, Query(alias="to")]
STATES = ("held", "confirmed", "checked_in", "completed", "cancelled", "expired", "revoked", "no_show")


@router.get("/reports")
async def reports(page: StaffPageDep, hospital_id: int, date_from: From = None, date_to: To = None,
                  group: Literal["day", "department", "doctor", "state"] = "day"):
    page.need(*ADMINS, hospital_id=hospital_id)
    state = page.request.app.state
    first, last = booking_reports.report_range(date_from, date_to, payment_reports.local_day(state.clock.now()))
    async with state.db.read() as session:
        rows = await booking_reports.bookings_by(session, hospital_id=hospital_id, first=first, last=last,
                                                 group=group)
        summary = await booking_reports.summary(session, hospital_id=hospital_id, first=first, last=last)
        money = await payment_reports.totals(session, first=first, last=last, hospital_id=hospital_id)
    api = f"/api/v1/staff/hospitals/{hospital_id}/reports"
    span = f"from={first.isoformat()}&to={last.isoformat()}"
    return render(page, "staff/reports.html", hospital_id=hospital_id, first=first, last=last, group=group,
                  rows=rows, summary=summary, money=money, states=STATES,
                  csv_bookings=f"{api}/bookings?{span}&group={group}&format=csv", csv_money=f"{api}/money.csv?{span}")


@router.get("/restrictions")
async def restriction_list(page: StaffPageDep, hospital_id: int, active: bool = True, done: str | None = None):
    """Who is barred from online booking, with the person's masked name and ID number."""
    staff = page.need(*RESTRICTION_READERS, hospital_id=hospital_id)
    return await _restrictions_page(page, hospital_id, active=active, may_lift=staff.role in ADMINS or
                                    staff.is_operator,
                                    notice=page._("The restriction was lifted.") if done == "lifted" else None)


async def _restrictions_page(page, hospital_id: int, *, active: bool, may_lift: bool, status: int = 200, **values):
    state = page.request.app.state
    async with state.db.read() as session:
        rows = await restrictions.list_for_hospital(session, hospital_id, active_only=active, now=state.clock.now())
        reads = await views.restriction_reads(session, rows)
        zone = await catalog_service.zone_of(session, hospital_id)
    return render(page, "staff/restrictions.html", status=status, hospital_id=hospital_id, active=active,
                  items=localize(reads, zone), may_lift=may_lift, **values)


@router.post("/restrictions/{restriction_id}/lift")
async def lift(page: StaffPageDep, hospital_id: int, restriction_id: int):
    """Lift with a reason (audited by the action)."""
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(LiftRequest, {"reason": form.get("reason", "").strip()})
        async with state.db.begin() as session:
            await restrictions.do_lift(session, restriction_id=restriction_id, staff_id=staff.staff_id,
                                       hospital_id=hospital_id, reason=body.reason, now=state.clock.now())
    except GuahaoError as exc:
        if exc.status == 404:
            raise
        return await _restrictions_page(page, hospital_id, active=True, may_lift=True, status=exc.status,
                                        error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/restrictions?done=lifted")
