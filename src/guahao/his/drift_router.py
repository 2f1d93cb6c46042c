"""The drift listing for the operator and the hospital's own admin: every difference between
our bookings and the HIS's orders right now, the write-back queue's lag, and the bookings
flagged for the hospital (capacity cuts, refused write-backs). Read-only: nothing here
changes either side."""
from __future__ import annotations

from fastapi import APIRouter

from guahao.catalog import service as catalog_service
from guahao.core.deps import ClockDep, CurrentStaff, Db
from guahao.his import drift
from guahao.staff import service as staff_service

router = APIRouter(prefix="/api/v1/staff/hospitals", tags=["HIS: drift"])


@router.get("/{hospital_id}/his-drift")
async def get_his_drift(hospital_id: int, staff: CurrentStaff, db: Db, clock: ClockDep) -> dict:
    """Our bookings against the HIS's orders (platform operator; that hospital's admin). With
    the HIS unreachable the answer still comes, with `his_error` set and no comparison: the
    write-back queue's lag and the flagged bookings matter most exactly then."""
    staff.ensure_hospital(hospital_id)
    staff.require(staff_service.HOSPITAL_ADMIN)
    async with db.read() as session:
        await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
    report = await drift.check_hospital(db, hospital_id, now=clock.now(), strict=False)
    return drift.as_dict(report) | {"counts": report.counts()}
