"""Waitlist API shapes (XCreate / XRead / XPage)."""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class WaitlistEntryCreate(BaseModel):
    schedule_id: int = Field(gt=0, le=2**63 - 1)
    patient_id: int = Field(gt=0, le=2**63 - 1)


class WaitlistEntryRead(BaseModel):
    id: int
    schedule_id: int
    hospital_id: int
    hospital_name: str
    department_name: str
    doctor_name: str | None
    visit_date: dt.date
    period: str
    starts_at: dt.datetime
    patient_id: int
    patient_name: str = Field(description="masked (张*)")
    state: str = Field(description="waiting | offered | fulfilled | lapsed | left | skipped | closed")
    fhir_status: str | None = Field(description="the entry's own FHIR Appointment status: waitlist while waiting, "
                                                "cancelled once it ended without an offer; null once offered "
                                                "(the offer's hold booking is the appointment from then on)")
    position: int = Field(description="the entry's place in the queue (its order key)")
    ahead: int | None = Field(description="前面还有 N 人: waiting entries ahead of this one (null once not waiting)")
    offer_booking_id: int | None = Field(description="the hold offered to this entry: pay it like any hold")
    offer_expires_at: dt.datetime | None
    reason: str | None = Field(description="why it was skipped or closed (a problem code, or cutoff)")
    cutoff_at: dt.datetime = Field(description="the queue closes then (hospital rule, default 23:00 the day before)")
    suspended: bool = Field(description="停诊: the queue is paused; entries keep their places")
    joined_at: dt.datetime


# how an entry ended without an offer (one that had an offer is its booking)
ENDED_WITHOUT_OFFER = ("left", "closed", "skipped")


def fhir_status(*, state: str, offer_booking_id: int | None, cutoff_at: dt.datetime, now: dt.datetime) -> str | None:
    """The FHIR status of a 候补 entry as its own Appointment (guahao.fhir.mapping serves it),
    or None when it is not one: an entry that was offered a seat *is* its offer's hold booking
    from then on (pending, then booked, or cancelled as bookings are). Waiting → `waitlist`;
    waiting past its cutoff (closed, or not yet swept), left, closed or skipped → `cancelled`."""
    if offer_booking_id is not None:
        return None
    if state == "waiting":
        return "cancelled" if cutoff_at <= now else "waitlist"
    return "cancelled" if state in ENDED_WITHOUT_OFFER else None


class WaitlistPage(BaseModel):
    items: list[WaitlistEntryRead]
    total: int


class WaitlistRulesRead(BaseModel):
    enabled: bool
    max_entries_per_person: int = Field(description="live entries per person at the hospital (K)")
    offer_minutes: int = Field(description="the pay window of an offer")
    cutoff_minutes_before_visit_day: int = Field(description="the queue closes this long before the visit day "
                                                             "begins (60: 23:00 the day before)")
    lapse_counts_as_strike: bool = Field(description="an unpaid offer counts toward the restriction")
    quiet_from: dt.time = Field(description="an offer made in the quiet hours runs from their end")
    quiet_until: dt.time


class WaitlistRulesUpdate(BaseModel):
    """Only the fields sent change."""

    enabled: bool | None = None
    max_entries_per_person: int | None = Field(default=None, ge=1, le=10)
    offer_minutes: int | None = Field(default=None, ge=5, le=1440)
    cutoff_minutes_before_visit_day: int | None = Field(default=None, ge=-720, le=2880)
    lapse_counts_as_strike: bool | None = None
    quiet_from: dt.time | None = None
    quiet_until: dt.time | None = None


class QueueRow(BaseModel):
    """One entry as staff see it in the back office (names masked)."""

    id: int
    position: int
    state: str
    patient_name: str
    offer_booking_id: int | None
    offers: int
    reason: str | None
    joined_at: dt.datetime
    updated_at: dt.datetime
