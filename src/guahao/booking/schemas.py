"""Booking API shapes. Personal data appears only masked."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from guahao.core import fees


class BookingCreate(BaseModel):
    slot_id: int = Field(gt=0)
    patient_id: int = Field(gt=0)
    visit_reason: str | None = Field(default=None, max_length=300,
                                     description="病情描述 (optional): health information, kept encrypted and shown "
                                                 "only to you and to the hospital for this booking")
    health_consent: bool = Field(default=False, description="your separate consent to send the visit reason (PIPL "
                                                            "sensitive personal information); needed once per account")


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
    visit_no_from_his: bool = Field(default=False, description="visit_no is the HIS's 就诊序号 (hospital rule "
                                                                "use_his_visit_no); null until the HIS has confirmed")
    record_notice: str | None = Field(default=None, description="what the patient must do at the hospital before "
                                                                "the visit (register: 建档), in the caller's language")
    visit_reason: str | None = Field(default=None, description="病情描述, only on the read of this one booking (never "
                                                               "in lists or in the hold's answer)")


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
    person_name: str = Field(default="", description="masked (张*)")
    person_id_number: str = Field(default="", description="masked (1****************X)")
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
    schedule_id: int


# --- the back office: window, leave (停诊 ranges) ------------------------------------------

class WindowSearch(BaseModel):
    """Exactly one of code, id_number, phone (sent in a body so they never sit in a URL or an access log)."""

    code: str | None = Field(default=None, pattern=r"^\d{8}$")
    id_number: str | None = Field(default=None, min_length=5, max_length=32)
    phone: str | None = Field(default=None, min_length=5, max_length=20)
    visit_date: dt.date | None = None


class RevealRequest(BaseModel):
    purpose: str = Field(default="check_in", max_length=100)


class RevealRead(BaseModel):
    """Unmasked, once, for the window; every reveal is in the audit log."""

    booking_id: int
    patient_id: int
    name: str
    id_type: str
    id_number: str


class WindowCheckIn(BaseModel):
    id_number: str = Field(min_length=5, max_length=32, description="as read from the patient's document")


class VoidRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


class LeaveRequest(BaseModel):
    doctor_id: int = Field(gt=0)
    from_date: dt.date
    to_date: dt.date
    periods: list[Literal["morning", "afternoon", "evening", "all_day"]] | None = Field(
        default=None, description="only these periods; all when omitted")


class LeaveSuspend(LeaveRequest):
    reason: str = Field(min_length=1, max_length=400)


class LeaveSession(BaseModel):
    schedule_id: int
    date: dt.date
    period: str
    status: str
    bookings: int = Field(description="held (running) and confirmed bookings that would be revoked")
    refunds: int
    refund_total: int = Field(description=fees.TOTAL_FEE)


class LeavePreview(BaseModel):
    sessions: list[LeaveSession]
    bookings: int
    refunds: int
    refund_total: int
    notices: dict[str, int] = Field(description="outbox messages per topic (SMS to patients, refunds, HIS)")


class LeaveResult(BaseModel):
    suspended: list[int]
    revoked: dict[str, list[int]] = Field(description="revoked booking ids per schedule id")


class WalkInCreate(BaseModel):
    """A walk-in at the window, as read from their ID document."""

    name: str = Field(min_length=1, max_length=100)
    id_type: Literal["resident_id", "passport", "hk_macau_permit", "taiwan_permit"] = "resident_id"
    id_number: str = Field(min_length=5, max_length=64)
    phone: str = Field(min_length=5, max_length=32, description="mainland China mobile number")
    birth_date: dt.date | None = Field(default=None, description="required unless id_type is resident_id")
    sex: Literal["M", "F"] | None = None
