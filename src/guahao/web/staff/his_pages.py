"""The HIS drift report as a page, for the platform operator and the hospital's admin: the
differences between our bookings and the HIS's orders, the write-back queue's lag, and the
bookings flagged for the hospital (capacity cuts, refused write-backs). It calls the same
`his.drift.check_hospital` as the JSON route (his/drift_router.py) and changes nothing."""
from __future__ import annotations

from fastapi import APIRouter

from guahao.catalog import service as catalog_service
from guahao.his import drift
from guahao.web.staff.base import ADMINS, NAV, NavItem, StaffPageDep, _, render

router = APIRouter(prefix="/staff/hospitals/{hospital_id}", include_in_schema=False)

NAV.append(NavItem("/staff/hospitals/{hospital_id}/his-drift", _("HIS drift"), ADMINS))
KIND_LABELS = {
    "missing_at_his": _("Booked here, not at the HIS"),
    "cancelled_at_window": _("Cancelled at the hospital's window"),
    "state_mismatch": _("States differ"),
    "unknown_to_us": _("At the HIS, unknown here"),
}


@router.get("/his-drift")
async def his_drift(page: StaffPageDep, hospital_id: int):
    page.need(*ADMINS, hospital_id=hospital_id)
    state = page.request.app.state
    async with state.db.read() as session:
        hospital = await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        zone = await catalog_service.zone_of(session, hospital_id)
    report = checked_at = None
    if hospital.his_mode != "local":
        report = await drift.check_hospital(state.db, hospital_id, now=state.clock.now(), strict=False)
        checked_at = report.checked_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    return render(page, "staff/his_drift.html", hospital_id=hospital_id, his_mode=hospital.his_mode,
                  report=report, checked_at=checked_at, kinds=KIND_LABELS)
