"""The back office's booking routes: the front desk (search, audited reveal, check-in with
identity confirmation, void) and the scheduler's leave (停诊 over a date range, preview,
resume). Mounted before `staff_router`, whose `/bookings/{id}/{action}` would match first.

Authorisation as everywhere: staff of another hospital get 404, a role without the
permission 403. Window: front_desk and hospital_admin; leave: scheduler and hospital_admin.
"""
from __future__ import annotations

from fastapi import APIRouter, Response, status

from guahao.booking import hospital_actions, reasons, suspensions, window_actions
from guahao.booking.lifecycle import Actor
from guahao.booking.schemas import (
    BookingRead,
    LeavePreview,
    LeaveRequest,
    LeaveResult,
    LeaveSession,
    LeaveSuspend,
    RevealRead,
    RevealRequest,
    VoidRequest,
    WalkInCreate,
    WindowCheckIn,
    WindowSearch,
)
from guahao.booking.views import booking_read
from guahao.catalog import service as catalog_service
from guahao.core.deps import ClockDep, CurrentStaff, Db, StaffPrincipal

router = APIRouter(prefix="/api/v1/staff", tags=["staff window"])
WINDOW = ("front_desk", "hospital_admin")
SCHEDULERS = ("scheduler", "hospital_admin")


def _scope(staff: StaffPrincipal) -> int | None:
    return None if staff.is_operator else staff.hospital_id


@router.post("/hospitals/{hospital_id}/window/search", response_model=list[BookingRead])
async def window_search(hospital_id: int, body: WindowSearch, staff: CurrentStaff, db: Db,
                        clock: ClockDep) -> list[BookingRead]:
    """Find bookings by booking code (as printed or scanned from the QR code), or by the
    patient's ID number or phone, through their keyed hashes. Patients appear masked."""
    staff.ensure_hospital(hospital_id)
    staff.require(*WINDOW)
    now = clock.now()
    async with db.read() as session:
        zone = await catalog_service.zone_of(session, hospital_id)
        found = await window_actions.find_bookings(
            session, hospital_id=hospital_id, today=now.astimezone(zone).date(), code=body.code,
            id_number=body.id_number, phone=body.phone, visit_date=body.visit_date)
        return [await booking_read(session, b, now) for b in found]


@router.get("/bookings/{booking_id}", response_model=BookingRead)
async def read_booking(booking_id: int, response: Response, staff: CurrentStaff, db: Db,
                       clock: ClockDep) -> BookingRead:
    """One booking of the hospital, with the patient's 病情描述 when there is one (lists and
    searches never carry it). Reading a description is audited; the platform operator sees
    the booking without it."""
    staff.require(*WINDOW)
    now = clock.now()
    async with db.begin() as session:  # a write: the audit row of the read
        booking = await hospital_actions.find_for_hospital(session, hospital_id=_scope(staff), booking_id=booking_id)
        read = await booking_read(session, booking, now)
        read.visit_reason = await reasons.do_read_for_staff(session, booking.id, hospital_id=_scope(staff),
                                                            staff_id=staff.staff_id, now=now)
    response.headers["Cache-Control"] = "no-store"
    return read


@router.post("/bookings/{booking_id}/reveal", response_model=RevealRead)
async def reveal(booking_id: int, response: Response, staff: CurrentStaff, db: Db, clock: ClockDep,
                 body: RevealRequest | None = None) -> RevealRead:
    """The full name and ID number of the booking's patient, to compare with the person at
    the window. Audited (who, when, which booking); never cached."""
    staff.require(*WINDOW)
    async with db.begin() as session:
        shown = await window_actions.do_reveal(session, hospital_id=_scope(staff), booking_id=booking_id,
                                               staff_id=staff.staff_id, now=clock.now(),
                                               purpose=(body or RevealRequest()).purpose)
    response.headers["Cache-Control"] = "no-store"
    return RevealRead(booking_id=shown.booking_id, patient_id=shown.patient_id, name=shown.name,
                      id_type=shown.id_type, id_number=shown.id_number)


@router.post("/bookings/{booking_id}/window-check-in", response_model=BookingRead)
async def window_check_in(booking_id: int, body: WindowCheckIn, staff: CurrentStaff, db: Db,
                          clock: ClockDep) -> BookingRead:
    """签到 after the desk read the patient's ID document: the number must match (409
    `identity_mismatch` otherwise, and nothing changes)."""
    staff.require(*WINDOW)
    now = clock.now()
    async with db.begin() as session:
        booking = await window_actions.do_window_check_in(
            session, hospital_id=_scope(staff), booking_id=booking_id, id_number=body.id_number,
            actor=Actor("staff", staff.staff_id), now=now)
        return await booking_read(session, booking, now)


@router.post("/bookings/{booking_id}/void", response_model=BookingRead)
async def void_booking(booking_id: int, body: VoidRequest, staff: CurrentStaff, db: Db,
                       clock: ClockDep) -> BookingRead:
    """The hospital cancels one booking (on the visit day too): refund and SMS follow, as for
    停诊; no strike for the patient; audited with the reason."""
    staff.require(*WINDOW)
    now = clock.now()
    async with db.begin() as session:
        booking = await window_actions.do_void(session, hospital_id=_scope(staff), booking_id=booking_id,
                                               reason=body.reason, staff_id=staff.staff_id, now=now)
        return await booking_read(session, booking, now)


@router.post("/schedules/{schedule_id}/walk-ins", status_code=status.HTTP_201_CREATED, response_model=BookingRead)
async def register_walk_in(schedule_id: int, body: WalkInCreate, staff: CurrentStaff, db: Db,
                           clock: ClockDep) -> BookingRead:
    """现场挂号 into the session's on-site pool (hospitals in local mode): confirmed and
    checked in at once, with its visit number; the answer shows the patient masked."""
    staff.require(*WINDOW)
    now = clock.now()
    person = window_actions.WalkIn(name=body.name, id_type=body.id_type, id_number=body.id_number, phone=body.phone,
                                   birth_date=body.birth_date, sex=body.sex)
    async with db.begin() as session:
        booking = await window_actions.do_register_walk_in(session, hospital_id=_scope(staff),
                                                           schedule_id=schedule_id, person=person,
                                                           staff_id=staff.staff_id, now=now)
        return await booking_read(session, booking, now)


# --- leave: 停诊 over a date range ------------------------------------------------------------

@router.post("/hospitals/{hospital_id}/leave/preview", response_model=LeavePreview)
async def leave_preview(hospital_id: int, body: LeaveRequest, staff: CurrentStaff, db: Db,
                        clock: ClockDep) -> LeavePreview:
    """What suspending the doctor's sessions of these dates would do now: the sessions, the
    bookings revoked, refunds and the messages that would go out. Changes nothing."""
    staff.ensure_hospital(hospital_id)
    staff.require(*SCHEDULERS)
    async with db.read() as session:
        impact = await suspensions.preview_leave(session, hospital_id=hospital_id, doctor_id=body.doctor_id,
                                                 first=body.from_date, last=body.to_date, periods=body.periods,
                                                 now=clock.now())
    return LeavePreview(
        sessions=[LeaveSession(schedule_id=s.schedule_id, date=s.date, period=s.period, status=s.status,
                               bookings=s.bookings, refunds=s.paid, refund_total=s.refund_total)
                  for s in impact.sessions],
        bookings=impact.bookings, refunds=impact.refunds, refund_total=impact.refund_total,
        notices=dict(impact.notices))


@router.post("/hospitals/{hospital_id}/leave", response_model=LeaveResult)
async def leave_suspend(hospital_id: int, body: LeaveSuspend, staff: CurrentStaff, db: Db,
                        clock: ClockDep) -> LeaveResult:
    """停诊 for every session of the doctor in the date range, in one transaction (audited
    per session); refunds and notices go to the outbox."""
    staff.ensure_hospital(hospital_id)
    staff.require(*SCHEDULERS)
    async with db.begin() as session:
        done = await suspensions.do_suspend_leave(
            session, hospital_id=hospital_id, doctor_id=body.doctor_id, first=body.from_date, last=body.to_date,
            periods=body.periods, reason=body.reason, staff_id=staff.staff_id, now=clock.now())
    return LeaveResult(suspended=sorted(done), revoked={str(k): [b.id for b in v] for k, v in done.items()})


@router.post("/schedules/{schedule_id}/resume")
async def resume_schedule(schedule_id: int, staff: CurrentStaff, db: Db, clock: ClockDep) -> dict:
    """Lift a 停诊: the session is bookable again (409 `schedule_not_suspended` if it is not
    suspended). Bookings it revoked stay revoked (refunded and told); the seats they freed go
    to the 候补 queue first, in queue order, and to open booking only when nobody waits."""
    staff.require(*SCHEDULERS)
    async with db.begin() as session:
        revoked = await suspensions.do_resume(session, schedule_id=schedule_id, hospital_id=_scope(staff),
                                              staff_id=staff.staff_id, now=clock.now())
    return {"schedule_id": schedule_id, "status": "published", "revoked": revoked}
