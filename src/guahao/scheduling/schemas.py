"""Request and response shapes of the scheduling feature."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from guahao.core import fees

Period = Literal["morning", "afternoon", "evening", "all_day"]
Level = Literal["general", "expert", "special"]
Status = Literal["draft", "published", "suspended"]
State = Literal["suspended", "not_yet_released", "closed", "full", "bookable"]
BandList = list[list[str]]


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    department_id: int | None = None  # defaults to the doctor's department
    doctor_id: int | None = None  # null = the department's general clinic
    weekday: int = Field(ge=0, le=6)  # 0 = Monday
    period: Period
    registration_level: Level | None = None  # defaults to the doctor's level, or general
    platform_capacity: int = Field(ge=0, le=9999)
    onsite_capacity: int = Field(default=0, ge=0, le=9999)
    bands: BandList = Field(default_factory=list)
    active: bool = True


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weekday: int | None = Field(default=None, ge=0, le=6)
    period: Period | None = None
    registration_level: Level | None = None
    platform_capacity: int | None = Field(default=None, ge=0, le=9999)
    onsite_capacity: int | None = Field(default=None, ge=0, le=9999)
    bands: BandList | None = None
    active: bool | None = None


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    hospital_id: int
    department_id: int
    doctor_id: int | None
    weekday: int
    period: Period
    registration_level: Level
    platform_capacity: int
    onsite_capacity: int
    bands: BandList
    active: bool


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_date: dt.date
    to_date: dt.date
    publish: bool = False


class GenerateResult(BaseModel):
    created: int
    skipped: int
    schedule_ids: list[int]


class SlotRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    pool: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    capacity: int
    first_visit_no: int


class ScheduleRead(BaseModel):
    id: int
    hospital_id: int
    department_id: int
    doctor_id: int | None
    template_id: int | None
    date: dt.date
    period: Period
    starts_at: dt.datetime
    ends_at: dt.datetime
    registration_level: Level
    registration_fee: int = Field(description=fees.REGISTRATION_FEE)
    consultation_fee: int = Field(description=fees.CONSULTATION_FEE)
    total_fee: int = Field(description=fees.TOTAL_FEE)
    status: Status
    suspended_reason: str | None
    release_at: dt.datetime
    closes_at: dt.datetime
    platform_capacity: int
    onsite_capacity: int


class ScheduleDetail(ScheduleRead):
    slots: list[SlotRead]


class ScheduleUpdate(BaseModel):
    """Capacities per pool and/or bands; the schedule's slots are rebuilt from them."""

    model_config = ConfigDict(extra="forbid")

    platform_capacity: int | None = Field(default=None, ge=0, le=9999)
    onsite_capacity: int | None = Field(default=None, ge=0, le=9999)
    bands: BandList | None = None


# --- public availability -----------------------------------------------------------------

class DoctorBrief(BaseModel):
    id: int
    name: str
    title: str


class AvailableSlot(BaseModel):
    slot_id: int
    starts_at: dt.datetime  # in the hospital's zone (+08:00)
    ends_at: dt.datetime
    capacity: int
    remaining: int
    state: State
    release_at: dt.datetime | None = None  # only while not_yet_released


class AvailableSchedule(BaseModel):
    schedule_id: int
    department_id: int
    doctor: DoctorBrief | None  # null = the department's general clinic
    registration_level: Level
    registration_fee: int = Field(description=fees.REGISTRATION_FEE)
    consultation_fee: int = Field(description=fees.CONSULTATION_FEE)
    total_fee: int = Field(description=fees.TOTAL_FEE)
    state: State
    release_at: dt.datetime | None = None  # only while not_yet_released
    closes_at: dt.datetime
    remaining: int
    release_mode: Literal["fifo", "draw", "drawn"] = Field(
        default="fifo", description="draw: numbers are released by draw (摇号); enter it at "
                                    "/api/v1/schedules/{id}/draw, holds are refused until it is done")
    slots: list[AvailableSlot]


class AvailablePeriod(BaseModel):
    period: Period
    schedules: list[AvailableSchedule]


class AvailableDay(BaseModel):
    date: dt.date
    weekday: int
    periods: list[AvailablePeriod]


class Availability(BaseModel):
    hospital_id: int
    timezone: str
    from_date: dt.date
    to_date: dt.date
    days: list[AvailableDay]
    # where the remaining counts come from: "local" (our seats), "his" (the hospital's HIS,
    # realtime mode, as of `as_of`, cached a few seconds), or "his_unavailable" (realtime, the
    # HIS could not say: the counts are our own seats, not what the HIS has left, and a hold is
    # refused with his_unavailable until the HIS is back)
    source: Literal["local", "his", "his_unavailable"] = "local"
    as_of: dt.datetime | None = None
    # slot id -> HIS band id of a realtime hospital's slots (for `availability.with_his`)
    _his_bands: dict[int, str] = PrivateAttr(default_factory=dict)
