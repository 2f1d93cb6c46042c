"""Read models: a booking as the patient or the front desk sees it, times in the hospital's zone."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import records_step
from guahao.booking.context import SlotContext, load_slot_context
from guahao.booking.lifecycle import FHIR_STATUS
from guahao.booking.models import Booking
from guahao.booking.schemas import BookingRead, PatientBrief
from guahao.core.crypto import mask_id_number, mask_name
from guahao.core.localtime import localize
from guahao.patients import service as patients_service


def allowed_actions(booking: Booking, cancel_deadline: dt.datetime, now: dt.datetime) -> list[str]:
    if booking.state == "held" and booking.hold_expires_at is not None and booking.hold_expires_at > now:
        return ["pay", "cancel"]
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
