"""The platform operator's maintenance switch (docs/OPERATIONS.md)."""
from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from guahao.core.deps import ClockDep, CurrentStaff, Db
from guahao.staff import maintenance
from guahao.staff import service as staff_service

router = APIRouter(prefix="/api/v1/staff", tags=["staff"])


class MaintenanceUpdate(BaseModel):
    active: bool
    until: dt.datetime | None = Field(default=None, description="expected end, shown to patients")
    note: str | None = Field(default=None, max_length=200, description="shown to patients as written")


class MaintenanceRead(MaintenanceUpdate):
    source: str | None = Field(default=None, description="operator | file (a deploy's switch file wins)")
    set_at: dt.datetime | None = None


async def _read(request: Request, db, now: dt.datetime) -> MaintenanceRead:
    switch: maintenance.Switch = request.app.state.maintenance
    switch.forget()  # this process answers with the current value, not the cached one
    state = await switch.current(now, 0.0)
    async with db.read() as session:
        row = await maintenance.read(session)
    return MaintenanceRead(active=state is not None, until=state.until if state else None,
                           note=state.note if state else None, source=state.source if state else None,
                           set_at=row.set_at if row else None)


@router.get("/maintenance", response_model=MaintenanceRead)
async def read_maintenance(request: Request, staff: CurrentStaff, db: Db, clock: ClockDep) -> MaintenanceRead:
    """Whether maintenance mode is on, its expected end and note (platform operator)."""
    staff.require(staff_service.OPERATOR)
    return await _read(request, db, clock.now())


@router.put("/maintenance", response_model=MaintenanceRead)
async def set_maintenance(request: Request, body: MaintenanceUpdate, staff: CurrentStaff, db: Db,
                          clock: ClockDep) -> MaintenanceRead:
    """Turn maintenance mode on or off (audited). Every process follows within a few seconds
    (staff/maintenance.py CACHE_SECONDS)."""
    staff.require(staff_service.OPERATOR)
    now = clock.now()
    async with db.begin() as session:
        await maintenance.do_set(session, active=body.active, until=body.until, note=body.note,
                                 staff_id=staff.staff_id, now=now)
    return await _read(request, db, now)
