"""Booking API shapes. Personal data appears only masked."""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from guahao.core import fees


class BookingCreate(BaseModel):
    slot_id: int = Field(gt=0)
    patient_id: int = Field(gt=0)


class BookingCancel(BaseModel):
    reason: str | None = Field(default=None, max_length=200)


class PatientBrief(BaseModel):
    id: int
    name: str  # masked
    id_type: str
    id_number: str  # masked


class BookingRead(BaseModel):
    id: int
    state: str
    fhir_status: str
    hospital_id: int
    hospital_name: str
    department_id: int
    department_name: str
    location: str
    doctor_id: int | None
    doctor_name: str | None
    schedule_id: int
    slot_id: int
    visit_date: dt.date
    period: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    visit_no: int | None
    booking_code: str
    registration_fee: int = Field(description=fees.REGISTRATION_FEE)
    consultation_fee: int = Field(description=fees.CONSULTATION_FEE)
    amount_due: int = Field(description=fees.TOTAL_FEE)
    hold_expires_at: dt.datetime | None
    cancel_deadline: dt.datetime
    state_reason: str | None
    patient: PatientBrief
    allowed_actions: list[str]
    created_at: dt.datetime
    his_patient_id: str | None = Field(default=None, description="the patient's id at the hospital's HIS (建档)")
    record_notice: str | None = Field(default=None, description="what the patient must do at the hospital before "
                                                                "the visit (register: 建档), in the caller's language")


class BookingPage(BaseModel):
    items: list[BookingRead]
    total: int


class CancelPreview(BaseModel):
    """What cancelling this booking now would mean, shown before the patient confirms."""

    booking_id: int
    can_cancel: bool
    cancel_deadline: dt.datetime = Field(description="kept from the rules the booking was made under")
    counts_as_strike: bool = Field(description="whether this cancellation counts toward the restriction "
                                               "(the hospital's strike_cancellations rule)")
    strikes_used: int = Field(description="cancellations and no-shows counted in the current window")
    strikes_allowed: int = Field(description="the hospital's threshold; reaching it restricts online booking")
    window_days: int
    restriction_if_cancelled: bool
    restriction_days: int


class BookingEventRead(BaseModel):
    from_state: str | None
    to_state: str
    actor_type: str
    reason: str | None
    at: dt.datetime


class SuspendRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=400)


class CheckInByCode(BaseModel):
    booking_code: str = Field(pattern=r"^\d{8}$")


class LiftRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=400)


class RestrictionRead(BaseModel):
    id: int
    person_id: int
    hospital_id: int
    starts_at: dt.datetime
    until: dt.datetime
    strikes: int
    reason: str
    lifted_at: dt.datetime | None
    lift_reason: str | None


class RosterEntry(BaseModel):
    booking_id: int
    visit_no: int | None
    booking_code: str
    state: str
    patient_name: str  # masked
    starts_at: dt.datetime
