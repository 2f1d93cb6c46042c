"""The front desk (窗口): find a booking, reveal who it is for, check in with identity
confirmation, cancel (void) one booking for the hospital.

Personal data: search takes an ID number or phone and goes through the keyed lookup hashes
(patients service), never a scan of decrypted rows. The full name and ID number of a
booking's patient leave the server only through `do_reveal`, which writes an audit row in
the same transaction.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import errors, lifecycle, notices, staff_errors
from guahao.booking.actions import _is_i3_violation, _new_booking_code, lock_person, settle_lapsed_holds
from guahao.booking.context import load_slot_context
from guahao.booking.hospital_actions import do_check_in, find_for_hospital
from guahao.booking.lifecycle import Actor
from guahao.booking.models import ACTIVE_STATES, Booking
from guahao.core import audit
from guahao.core.errors import InvalidRequest, NotFound
from guahao.patients import lookup as patient_lookup
from guahao.patients import service as patients_service
from guahao.scheduling import seats
from guahao.scheduling import service as scheduling_service

SEARCH_LIMIT = 50


@dataclass(frozen=True)
class WalkIn:
    """Who registers at the window: as read from their document (and a phone for the slip)."""

    name: str
    id_type: str
    id_number: str
    phone: str
    birth_date: dt.date | None = None
    sex: str | None = None


@dataclass(frozen=True)
class Revealed:
    booking_id: int
    patient_id: int
    name: str
    id_type: str
    id_number: str


async def find_bookings(session: AsyncSession, *, hospital_id: int, today: dt.date, code: str | None = None,
                        id_number: str | None = None, phone: str | None = None,
                        visit_date: dt.date | None = None) -> list[Booking]:
    """Bookings of the hospital by booking code, or by the patient's ID number or phone
    (through their lookup hashes), newest visit first. Exactly one criterion."""
    given = [c for c in (code, id_number, phone) if c]
    if len(given) != 1:
        raise InvalidRequest(field="code|id_number|phone")
    query = select(Booking).where(Booking.hospital_id == hospital_id)
    if code:
        query = query.where(Booking.booking_code == code.strip())
    elif id_number:
        persons = await patient_lookup.person_ids_by_id_number(session, id_number, today=today)
        if not persons:
            return []
        query = query.where(Booking.person_id.in_(persons))
    else:
        patients = await patient_lookup.patient_ids_by_phone(session, phone or "")
        if not patients:
            return []
        query = query.where(Booking.patient_id.in_(patients))
    if visit_date is not None:
        query = query.where(Booking.visit_date == visit_date)
    query = query.order_by(Booking.visit_date.desc(), Booking.schedule_id, Booking.visit_no).limit(SEARCH_LIMIT)
    return list(await session.scalars(query))


async def do_reveal(session: AsyncSession, *, hospital_id: int | None, booking_id: int, staff_id: int,
                    now: dt.datetime, purpose: str) -> Revealed:
    """The full name and ID of the booking's patient, for the desk to compare with the person
    in front of it; the reveal is written to the audit log (who, when, which booking, why)."""
    booking = await find_for_hospital(session, hospital_id=hospital_id, booking_id=booking_id)
    patient = await patients_service.get_one(session, booking.patient_id)
    await audit.do_record(session, now=now, action="booking.reveal", object_type="booking", object_id=booking.id,
                          hospital_id=booking.hospital_id, staff_id=staff_id,
                          detail={"patient_id": patient.id, "purpose": purpose})
    return Revealed(booking_id=booking.id, patient_id=patient.id, name=patient.name, id_type=patient.id_type,
                    id_number=patient.id_number)


async def do_window_check_in(session: AsyncSession, *, hospital_id: int | None, booking_id: int, id_number: str,
                             actor: Actor, now: dt.datetime) -> Booking:
    """签到 at the window after checking the patient's identity document: the number the desk
    reads from the card must be the booking patient's. A mismatch refuses and checks in
    nothing (the attempt is audited, a mismatch may be an impostor)."""
    booking = await find_for_hospital(session, hospital_id=hospital_id, booking_id=booking_id)
    patient = await patients_service.get_one(session, booking.patient_id)
    if not patient_lookup.same_identity(patient, id_number, today=patients_service.local_today(now)):
        raise staff_errors.IdentityMismatch()
    await do_check_in(session, booking, actor=actor, now=now)
    await audit.do_record(session, now=now, action="booking.check_in_identity", object_type="booking",
                          object_id=booking.id, hospital_id=booking.hospital_id, staff_id=actor.id,
                          detail={"patient_id": patient.id})
    return booking


async def do_void(session: AsyncSession, *, hospital_id: int | None, booking_id: int, reason: str, staff_id: int,
                  now: dt.datetime) -> Booking:
    """The hospital cancels one held or confirmed booking at the window (the visit day
    included, unlike a patient's online cancellation). Not a strike against the patient:
    the hospital decided. A paid booking is refunded and the patient told, through the same
    outbox messages as 停诊 (booking.notices).

    Locks: schedule shared (so a concurrent 停诊 or confirmation is either done or waits),
    the seat, then the booking re-read; a hold that lapsed meanwhile is recorded as expired."""
    found = await find_for_hospital(session, hospital_id=hospital_id, booking_id=booking_id)
    ctx = await load_slot_context(session, found.slot_id, lock_schedule=True)
    await seats.lock_seats_of(session, [found.id])
    booking = await session.get_one(Booking, found.id, populate_existing=True)
    await settle_lapsed_holds(session, [booking], now)
    if booking.state not in ACTIVE_STATES:
        raise errors.TransitionRefused(state=booking.state, event="cancel")
    was_paid = booking.state == "confirmed"
    await lifecycle.apply(session, booking, "cancel", actor=Actor("staff", staff_id), now=now,
                          reason=f"hospital: {reason}"[:400])
    await seats.release(session, [booking.id])
    await notices.after_transition(session, booking, now=now, his_mode=ctx.his_mode if ctx else "local",
                                   was_paid=was_paid)
    await audit.do_record(session, now=now, action="booking.void", object_type="booking", object_id=booking.id,
                          hospital_id=booking.hospital_id, staff_id=staff_id,
                          detail={"reason": reason[:200], "was_paid": was_paid, "refund": booking.amount_due
                                  if was_paid else 0})
    return booking


async def do_register_walk_in(session: AsyncSession, *, hospital_id: int | None, schedule_id: int, person: WalkIn,
                              staff_id: int, now: dt.datetime) -> Booking:
    """现场挂号: a walk-in takes a seat of the session's on-site pool, on the session's day,
    at a hospital that runs its pools itself (local mode; an HIS sells its own on-site pool).
    The person is at the window and pays there, so the booking is confirmed and checked in
    at once; it has no account (and no SMS: the patient gets the slip). Per-person rules
    hold: the person row is the one online bookings use (one per department per day).

    Locks as a hold: schedule shared, person, then the seat (claim) and the new booking."""
    schedule = await scheduling_service.get_schedule_or_raise(session, schedule_id, hospital_id=hospital_id)
    onsite = await scheduling_service.list_slots(session, schedule.id, pool="onsite")
    if not onsite:
        raise staff_errors.OnsiteFull()
    ctx = await load_slot_context(session, onsite[0].id, lock_schedule=True)
    if ctx is None:
        raise NotFound("schedule")
    if ctx.his_mode != "local":
        raise staff_errors.WalkInNotLocal()
    if ctx.schedule_status == "suspended":
        raise errors.ScheduleSuspended()
    if ctx.schedule_status != "published":
        raise errors.ScheduleNotPublished()
    if now.astimezone(ctx.zone).date() != ctx.visit_date or now >= schedule.ends_at:
        raise staff_errors.WalkInClosed()
    patient = await patients_service.do_window_patient(
        session, name=person.name, id_type=person.id_type, id_number=person.id_number, phone=person.phone,
        birth_date=person.birth_date, sex=person.sex, now=now)
    await lock_person(session, patient.person_id, hospital_id=ctx.hospital_id, now=now)
    amount = ctx.registration_fee + ctx.consultation_fee
    booking = Booking(
        hospital_id=ctx.hospital_id, department_id=ctx.department_id, doctor_id=ctx.doctor_id,
        schedule_id=ctx.schedule_id, slot_id=onsite[0].id, account_id=None, patient_id=patient.id,
        person_id=patient.person_id, visit_date=ctx.visit_date, visit_no=None,
        dedupe_day=ctx.visit_date if ctx.rules.one_per_department_per_day else None,
        cancel_deadline=ctx.cancel_deadline, strike_cancellations="none",
        booking_code=await _new_booking_code(session, ctx.hospital_id), state="confirmed",
        registration_fee=ctx.registration_fee, consultation_fee=ctx.consultation_fee, amount_due=amount,
        hold_expires_at=None, state_reason="walk_in", created_at=now, updated_at=now)
    session.add(booking)
    try:
        await session.flush()
    except IntegrityError as exc:
        if _is_i3_violation(exc):
            raise errors.DuplicateBooking() from exc
        raise
    actor = Actor("staff", staff_id)
    lifecycle.record_creation(session, booking, actor=actor, now=now)
    # the current band first, then later ones; a band that is over only when nothing else is free
    ordered = sorted(onsite, key=lambda s: (s.ends_at <= now, s.starts_at))
    for slot in ordered:
        claimed = await seats.claim(session, slot_id=slot.id, booking_id=booking.id, hold_until=None, now=now)
        if claimed is not None:
            booking.slot_id, booking.visit_no = slot.id, claimed[0]
            break
    else:
        raise staff_errors.OnsiteFull()
    await session.flush()
    await lifecycle.apply(session, booking, "check_in", actor=actor, now=now, reason="walk_in")
    await audit.do_record(session, now=now, action="booking.walk_in", object_type="booking", object_id=booking.id,
                          hospital_id=booking.hospital_id, staff_id=staff_id,
                          detail={"schedule_id": schedule.id, "patient_id": patient.id, "visit_no": booking.visit_no})
    return booking
