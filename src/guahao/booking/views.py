"""Read models: a booking as the patient or the front desk sees it, times in the hospital's zone."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import records_step
from guahao.booking.context import SlotContext, load_slot_context
from guahao.booking.lifecycle import FHIR_STATUS
from guahao.booking.models import Booking
from guahao.booking.schemas import BookingRead, PatientBrief, RestrictionRead, RosterEntry
from guahao.core.crypto import mask_id_number, mask_name
from guahao.core.localtime import localize
from guahao.patients import lookup as patient_lookup
from guahao.patients import service as patients_service
from guahao.scheduling import service as scheduling_service

ROSTER_STATES = ("confirmed", "checked_in", "completed", "no_show")


def allowed_actions(booking: Booking, cancel_deadline: dt.datetime, now: dt.datetime) -> list[str]:
    if booking.state == "held" and booking.hold_expires_at is not None and booking.hold_expires_at > now:
        # a realtime attempt still waiting for the HIS cannot be paid yet
        return ["cancel"] if booking.his_state == "pending" else ["pay", "cancel"]
    if booking.state == "confirmed" and now < cancel_deadline:
        return ["cancel"]
    return []


def effective_state(booking: Booking, now: dt.datetime) -> str:
    """A hold past its deadline is expired whether or not the sweeper has recorded it."""
    if booking.state == "held" and booking.hold_expires_at is not None and booking.hold_expires_at <= now:
        return "expired"
    return booking.state


def shown_visit_no(booking, use_his_visit_no: bool, state: str) -> int | None:
    """The visit number the patient is shown: ours, or under the hospital rule
    `use_his_visit_no` the HIS's (None until the write-back has recorded it)."""
    if state == "expired":
        return None
    return booking.his_visit_no if use_his_visit_no else booking.visit_no


async def booking_read(session: AsyncSession, booking: Booking, now: dt.datetime, *,
                       ctx: SlotContext | None = None, patient: Any = None, locale: str = "zh-CN") -> BookingRead:
    """`ctx` and `patient` may be passed by a caller that already loaded them (the hold);
    `locale` is the language of the texts in it (the 建档 notice)."""
    ctx = ctx or await load_slot_context(session, booking.slot_id)
    patient = patient or await patients_service.get_one(session, booking.patient_id)
    state = effective_state(booking, now)
    return localize(BookingRead(
        id=booking.id, state=state, fhir_status=FHIR_STATUS[state], hospital_id=booking.hospital_id,
        hospital_name=ctx.hospital_name, department_id=booking.department_id, department_name=ctx.department_name,
        location=ctx.department_location, doctor_id=booking.doctor_id, doctor_name=ctx.doctor_name,
        schedule_id=booking.schedule_id, slot_id=booking.slot_id, visit_date=booking.visit_date, period=ctx.period,
        starts_at=ctx.slot_starts_at, ends_at=ctx.slot_ends_at, visit_no=shown_visit_no(booking, ctx.rules.use_his_visit_no, state),
        booking_code=booking.booking_code, registration_fee=booking.registration_fee,
        consultation_fee=booking.consultation_fee, amount_due=booking.amount_due,
        hold_expires_at=booking.hold_expires_at, cancel_deadline=ctx.deadline_of(booking),
        state_reason=booking.state_reason,
        patient=PatientBrief(id=patient.id, name=mask_name(patient.name), id_type=patient.id_type,
                             id_number=mask_id_number(patient.id_number)),
        allowed_actions=allowed_actions(booking, ctx.deadline_of(booking), now), created_at=booking.created_at,
        his_patient_id=booking.his_patient_id, visit_no_from_his=ctx.rules.use_his_visit_no,
        record_notice=records_step.record_notice(ctx.rules.record_requirement, booking.his_patient_id, locale),
    ), ctx.zone)


async def roster(session: AsyncSession, *, hospital_id: int, date: dt.date, doctor_id: int | None = None,
                 schedule_id: int | None = None) -> list[RosterEntry]:
    """The day's patients by period, then visit number (times in UTC; the caller localizes).
    Slot and period times come from scheduling and names from patients, each in one query for
    the whole day, rather than one SELECT joining their tables. Names are masked."""
    query = select(Booking).where(Booking.hospital_id == hospital_id, Booking.visit_date == date,
                                  Booking.state.in_(ROSTER_STATES))
    if doctor_id:
        query = query.where(Booking.doctor_id == doctor_id)
    if schedule_id:
        query = query.where(Booking.schedule_id == schedule_id)
    bookings = list(await session.scalars(query))
    times = await scheduling_service.visit_times(session, (b.slot_id for b in bookings))
    names = await patients_service.names_by_id(session, (b.patient_id for b in bookings))
    # a booking of these states always has its visit number; None would sort last, as in PostgreSQL
    bookings.sort(key=lambda b: (times[b.slot_id][1], b.schedule_id, b.visit_no is None, b.visit_no or 0))
    return [RosterEntry(booking_id=b.id, visit_no=b.visit_no, booking_code=b.booking_code, state=b.state,
                        patient_name=mask_name(names[b.patient_id]), starts_at=times[b.slot_id][0],
                        schedule_id=b.schedule_id) for b in bookings]


async def restriction_reads(session: AsyncSession, rows) -> list[RestrictionRead]:
    """Restrictions with their person's masked name and ID number (never the plaintext)."""
    people = await patient_lookup.masked_identity_of_persons(session, (r.person_id for r in rows))
    return [RestrictionRead.model_validate(r, from_attributes=True).model_copy(
        update={"person_name": people.get(r.person_id, ("", ""))[0],
                "person_id_number": people.get(r.person_id, ("", ""))[1]}) for r in rows]
