"""Staff routes: a department's or a schedule's release mode (the hospital's is a booking
rule, `PUT /api/v1/staff/hospitals/{id}/rules`)."""
from __future__ import annotations

from fastapi import APIRouter

from guahao.catalog import rules as hospital_rules
from guahao.core.deps import ClockDep, CurrentStaff, Db
from guahao.draw import service
from guahao.draw.schemas import ReleaseModes, ReleaseModeUpdate
from guahao.staff import service as staff_service

router = APIRouter(prefix="/api/v1/staff/hospitals/{hospital_id}/release-modes", tags=["staff"])


async def _read(session, hospital_id: int, changed: int = 0) -> ReleaseModes:
    rules = await hospital_rules.get_rules(session, hospital_id)
    departments, schedules = await service.list_settings(session, hospital_id)
    return ReleaseModes(hospital_mode=rules.release_mode, draw_window_seconds=rules.draw_window_seconds,
                        draw_prequeue_minutes=rules.draw_prequeue_minutes, departments=departments,
                        schedules=schedules, changed_schedules=changed)


@router.get("", response_model=ReleaseModes)
async def read_release_modes(hospital_id: int, staff: CurrentStaff, db: Db) -> ReleaseModes:
    """The hospital's release mode rule and its departments' and schedules' own settings."""
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        return await _read(session, hospital_id)


@router.put("/departments/{department_id}", response_model=ReleaseModes)
async def set_department_mode(hospital_id: int, department_id: int, body: ReleaseModeUpdate, staff: CurrentStaff,
                              db: Db, clock: ClockDep) -> ReleaseModes:
    """Release a department's numbers by draw or first come (`inherit`: the hospital rule).
    Applies to its schedules whose draw or release has not begun."""
    staff.ensure_hospital(hospital_id)
    staff.require(staff_service.HOSPITAL_ADMIN)
    async with db.begin() as session:
        changed = await service.do_set_mode(session, hospital_id, mode=body.mode, now=clock.now(),
                                            staff_id=staff.staff_id, department_id=department_id)
        return await _read(session, hospital_id, changed)


@router.put("/schedules/{schedule_id}", response_model=ReleaseModes)
async def set_schedule_mode(hospital_id: int, schedule_id: int, body: ReleaseModeUpdate, staff: CurrentStaff,
                            db: Db, clock: ClockDep) -> ReleaseModes:
    """One schedule's release mode (`inherit`: its department's, else the hospital rule);
    refused once its draw or release has begun (`release_mode_frozen`)."""
    staff.ensure_hospital(hospital_id)
    staff.require(staff_service.HOSPITAL_ADMIN, staff_service.SCHEDULER)
    async with db.begin() as session:
        changed = await service.do_set_mode(session, hospital_id, mode=body.mode, now=clock.now(),
                                            staff_id=staff.staff_id, schedule_id=schedule_id)
        return await _read(session, hospital_id, changed)
