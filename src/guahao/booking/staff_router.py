"""Hospital-side booking routes: 停诊, roster, check-in, completion, search, restrictions."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from guahao.booking import hospital_actions, restrictions, suspensions, views
from guahao.booking.lifecycle import Actor
from guahao.booking.models import Booking
from guahao.booking.schemas import BookingRead, CheckInByCode, LiftRequest, RestrictionRead, RosterEntry, SuspendRequest
from guahao.booking.views import booking_read
from guahao.catalog import service as catalog_service
from guahao.core.deps import ClockDep, CurrentStaff, Db
from guahao.core.localtime import localize

router = APIRouter(prefix="/api/v1/staff", tags=["staff bookings"])
HOSPITAL_ROLES = ("hospital_admin", "scheduler", "front_desk")


@router.post("/schedules/{schedule_id}/suspend")
async def suspend_schedule(request: Request, schedule_id: int, body: SuspendRequest, staff: CurrentStaff, db: Db,
                           clock: ClockDep) -> dict:
    """停诊: revoke every live booking of the schedule; refunds and notices go to the outbox."""
    staff.require("hospital_admin", "scheduler")
    async with db.begin() as session:
        revoked = await suspensions.do_suspend_one(
            session, schedule_id=schedule_id, hospital_id=None if staff.is_operator else staff.hospital_id,
            reason=body.reason, staff_id=staff.staff_id, now=clock.now())
    return {"schedule_id": schedule_id, "status": "suspended", "revoked": [b.id for b in revoked]}


@router.get("/hospitals/{hospital_id}/bookings", response_model=list[BookingRead])
async def search_bookings(hospital_id: int, staff: CurrentStaff, db: Db, clock: ClockDep,
                          date: dt.date | None = None, doctor_id: int | None = None,
                          state: Annotated[str | None, Query(max_length=20)] = None,
                          code: Annotated[str | None, Query(pattern=r"^\d{8}$")] = None,
                          limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[BookingRead]:
    """The hospital's bookings of a visit day, doctor, state or booking code, patients masked
    (any staff role of the hospital)."""
    staff.require(*HOSPITAL_ROLES)
    staff.ensure_hospital(hospital_id)
    query = select(Booking).where(Booking.hospital_id == hospital_id)
    if date:
        query = query.where(Booking.visit_date == date)
    if doctor_id:
        query = query.where(Booking.doctor_id == doctor_id)
    if state:
        query = query.where(Booking.state == state)
    if code:
        query = query.where(Booking.booking_code == code)
    now = clock.now()
    async with db.read() as session:
        rows = await session.scalars(query.order_by(Booking.visit_date, Booking.schedule_id, Booking.visit_no).limit(limit))
        return [await booking_read(session, b, now) for b in rows]


@router.get("/hospitals/{hospital_id}/roster", response_model=list[RosterEntry])
async def roster(hospital_id: int, date: dt.date, staff: CurrentStaff, db: Db, doctor_id: int | None = None,
                 schedule_id: int | None = None) -> list[RosterEntry]:
    """The day's patients by period, then visit number (confirmed, checked in, completed,
    no-show); the staff pages show the same list (`booking.views.roster`)."""
    staff.require(*HOSPITAL_ROLES)
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        entries = await views.roster(session, hospital_id=hospital_id, date=date, doctor_id=doctor_id,
                                     schedule_id=schedule_id)
        zone = await catalog_service.zone_of(session, hospital_id)
    return localize(entries, zone)


@router.post("/hospitals/{hospital_id}/check-in", response_model=BookingRead)
async def check_in_by_code(hospital_id: int, body: CheckInByCode, staff: CurrentStaff, db: Db,
                           clock: ClockDep) -> BookingRead:
    """Check a patient in by booking code at the window (front desk, admin)."""
    staff.require("front_desk", "hospital_admin")
    staff.ensure_hospital(hospital_id)
    now = clock.now()
    async with db.begin() as session:
        booking = await hospital_actions.find_for_hospital(session, hospital_id=hospital_id,
                                                           booking_code=body.booking_code)
        await hospital_actions.do_check_in(session, booking, actor=Actor("staff", staff.staff_id), now=now)
        return await booking_read(session, booking, now)


@router.post("/bookings/{booking_id}/{action}", response_model=BookingRead)
async def booking_action(booking_id: int, action: str, staff: CurrentStaff, db: Db, clock: ClockDep) -> BookingRead:
    """`check-in` (by booking, e.g. found by patient) or `complete`."""
    staff.require("front_desk", "hospital_admin")
    now = clock.now()
    act = {"check-in": hospital_actions.do_check_in, "complete": hospital_actions.do_complete}.get(action)
    if act is None:
        from guahao.core.errors import NotFound

        raise NotFound("page")
    async with db.begin() as session:
        booking = await hospital_actions.find_for_hospital(
            session, hospital_id=None if staff.is_operator else staff.hospital_id, booking_id=booking_id)
        await act(session, booking, actor=Actor("staff", staff.staff_id), now=now)
        return await booking_read(session, booking, now)


@router.get("/hospitals/{hospital_id}/restrictions", response_model=list[RestrictionRead])
async def list_restrictions(hospital_id: int, staff: CurrentStaff, db: Db, clock: ClockDep,
                            active: bool = True) -> list[RestrictionRead]:
    """Who is barred from booking online at this hospital (黑名单), with masked name and ID number."""
    staff.require("hospital_admin", "front_desk")
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        rows = await restrictions.list_for_hospital(session, hospital_id, active_only=active, now=clock.now())
        zone = await catalog_service.zone_of(session, hospital_id)
        reads = await views.restriction_reads(session, rows)
    return localize(reads, zone)


@router.post("/restrictions/{restriction_id}/lift", response_model=RestrictionRead)
async def lift_restriction(restriction_id: int, body: LiftRequest, staff: CurrentStaff, db: Db,
                           clock: ClockDep) -> RestrictionRead:
    """Lift a restriction early with a reason (hospital admin); audited."""
    staff.require("hospital_admin")
    async with db.begin() as session:
        r = await restrictions.do_lift(session, restriction_id=restriction_id, staff_id=staff.staff_id,
                                       hospital_id=None if staff.is_operator else staff.hospital_id,
                                       reason=body.reason, now=clock.now())
        (read,) = await views.restriction_reads(session, [r])
        return localize(read, await catalog_service.zone_of(session, r.hospital_id))
