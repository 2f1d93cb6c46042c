"""Request and response bodies of the staff API: login, staff users, hospital rules, audit."""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from guahao.catalog.models import GRANULARITIES, RECORD_REQUIREMENTS
from guahao.staff.models import ROLES

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _parse_hhmm(value: Any) -> dt.time:
    if isinstance(value, dt.time) and value.tzinfo is None and not value.second and not value.microsecond:
        return value
    if isinstance(value, str) and (match := _HHMM.match(value)):
        return dt.time(int(match[1]), int(match[2]))
    raise ValueError("expected a time of day as HH:MM, e.g. 08:00")


# a wall-clock time in the hospital's zone, written "HH:MM" both ways
ClockTime = Annotated[dt.time, BeforeValidator(_parse_hhmm),
                      PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str, when_used="json"),
                      Field(json_schema_extra={"type": "string", "pattern": _HHMM.pattern, "examples": ["08:00"]})]
Role = Literal[ROLES]  # type: ignore[valid-type]


# --- auth and staff users -------------------------------------------------------------------

class StaffLogin(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class StaffUserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    hospital_id: int | None
    active: bool
    created_at: dt.datetime


class StaffLoginRead(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: dt.datetime
    staff: StaffUserRead


class StaffUserCreate(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
    password: str = Field(min_length=10, max_length=256)
    role: Role
    hospital_id: int | None = Field(default=None, description="required for every role but platform_operator; "
                                                              "a hospital admin's own hospital by default")
    display_name: str = Field(default="", max_length=64)


# --- hospital rules (DESIGN.md section 4) ---------------------------------------------------

class HospitalRulesUpdate(BaseModel):
    """The whole rule set of a hospital (PUT replaces it). Ranges match the table's CHECKs."""

    model_config = ConfigDict(strict=True)

    hold_minutes: int = Field(ge=5, le=30, description="how long a hold waits for payment")
    release_days_ahead: int = Field(ge=1, le=90)
    release_time: ClockTime = Field(description="time of day slots open, hospital time, HH:MM")
    close_minutes_before_start: int = Field(ge=0, le=1440, description="0 = booking closes at the period start")
    slot_granularity: Literal[GRANULARITIES]  # type: ignore[valid-type]
    one_per_department_per_day: bool
    max_live_bookings_per_person: int = Field(ge=1, le=20)
    cancel_minutes_before_visit_day: int = Field(ge=0, le=10080,
                                                 description="0 = until 24:00 of the day before the visit")
    restriction_threshold: int = Field(ge=1, le=100, description="cancellations or no-shows that restrict")
    restriction_window_days: int = Field(ge=1, le=365)
    restriction_days: int = Field(ge=1, le=365)
    record_requirement: Literal[RECORD_REQUIREMENTS]  # type: ignore[valid-type]
    verification_required: bool
    reminder_time: ClockTime = Field(description="time of day of the visit reminder, the day before, HH:MM")
    sms_to_patient_phone: bool = Field(default=True, description="booking SMS also go to the patient's own "
                                                                 "number when it differs from the account's")


class HospitalRulesRead(HospitalRulesUpdate):
    model_config = ConfigDict(from_attributes=True, strict=False)

    hospital_id: int
    updated_at: dt.datetime | None = Field(description="null while the hospital runs on the defaults")


# --- audit ----------------------------------------------------------------------------------

class AuditRead(BaseModel):
    id: int
    at: dt.datetime
    staff_id: int | None
    account_id: int | None
    hospital_id: int | None
    action: str
    object_type: str
    object_id: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditRead]
    next_cursor: int | None = Field(description="pass as `before_id` for the next page; null on the last page")
