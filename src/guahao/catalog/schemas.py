"""Request and response shapes of the catalog (XCreate / XUpdate / XRead / XPage)."""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

from guahao.catalog.models import ENTRANCES, GRANULARITIES, HIS_MODES, LEVELS, RECORD_REQUIREMENTS
from guahao.core import fees

Title = Literal["chief", "associate_chief", "attending", "resident"]
FeeTitle = Literal["none", "chief", "associate_chief", "attending", "resident"]
RegistrationLevel = Literal["general", "expert", "special"]
HisMode = Literal[HIS_MODES]  # type: ignore[valid-type]
Level = Literal[LEVELS]  # type: ignore[valid-type]
Entrance = Literal[ENTRANCES]  # type: ignore[valid-type]
Sex = Literal["M", "F"]
MAX_FEE = 10_000_000  # 100,000 yuan: far above any real fee, far below a 32-bit overflow


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Patch(_Input):
    """A partial update: unset fields stay; None is accepted only where the column is nullable."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self):
        bad = [f for f in self.model_fields_set if getattr(self, f) is None and f not in self.nullable]
        if bad:
            raise ValueError(f"may not be null: {', '.join(sorted(bad))}")
        return self

    def changes(self) -> dict:
        return self.model_dump(exclude_unset=True)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown time zone") from exc
    return value


Zone = Annotated[str, AfterValidator(_check_zone)]


# --- hospitals ------------------------------------------------------------------------------

class HospitalCreate(_Input):
    name: str = Field(min_length=1, max_length=100)
    short_name: str | None = Field(default=None, max_length=50)
    level: Level
    city: str = Field(min_length=1, max_length=50)
    district: str = Field(min_length=1, max_length=50)
    address: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=1, max_length=40)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    introduction: str = Field(default="", max_length=20000)
    timezone: Zone = "Asia/Shanghai"
    his_mode: HisMode = "local"
    entrance: Entrance = Field("department", description="department: the department tree first; "
                               "registration_level: 普通号 / 专家号 first")


class HospitalUpdate(_Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"short_name"})
    # fields a hospital admin may change on their own hospital; the rest are the operator's
    ADMIN_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"short_name", "district", "address", "phone", "latitude", "longitude", "introduction", "entrance"})

    name: str | None = Field(default=None, min_length=1, max_length=100)
    short_name: str | None = Field(default=None, max_length=50)
    level: Level | None = None
    city: str | None = Field(default=None, min_length=1, max_length=50)
    district: str | None = Field(default=None, min_length=1, max_length=50)
    address: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, min_length=1, max_length=40)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    introduction: str | None = Field(default=None, max_length=20000)
    timezone: Zone | None = None
    his_mode: HisMode | None = None
    entrance: Entrance | None = None
    active: bool | None = None


class HospitalRead(BaseModel):
    id: int
    name: str
    short_name: str | None
    level: str
    level_label: str
    city: str
    district: str
    address: str
    phone: str
    latitude: float
    longitude: float
    entrance: str = Field("department", description="department | registration_level (普通号 / 专家号 first)")
    distance_km: float | None = None


class HospitalPage(BaseModel):
    items: list[HospitalRead]
    total: int
    limit: int
    offset: int


class RulesSummary(BaseModel):
    hold_minutes: int
    release_days_ahead: int
    release_time: str  # "08:00" in the hospital's zone
    close_minutes_before_start: int
    cancel_minutes_before_visit_day: int
    cancel_deadline: str  # the same rule in words, in the caller's language
    slot_granularity: str
    record_requirement: str
    verification_required: bool


class HospitalDetail(HospitalRead):
    introduction: str
    timezone: str
    rules: RulesSummary | None


class HospitalStaffRead(HospitalRead):
    introduction: str
    timezone: str
    his_mode: str
    active: bool
    created_at: dt.datetime


# --- departments ----------------------------------------------------------------------------

class DepartmentCreate(_Input):
    name: str = Field(min_length=1, max_length=100)
    parent_id: int | None = None
    introduction: str = Field(default="", max_length=20000)
    location: str = Field(default="", max_length=200)
    sort_order: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    min_age: int | None = Field(default=None, ge=0, le=150)
    max_age: int | None = Field(default=None, ge=0, le=150)
    allowed_sex: Sex | None = None
    his_code: str | None = Field(default=None, max_length=64, description="its code in the hospital's HIS")

    @model_validator(mode="after")
    def _ages(self):
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError("min_age must not exceed max_age")
        return self


class DepartmentUpdate(_Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"parent_id", "min_age", "max_age", "allowed_sex"})

    name: str | None = Field(default=None, min_length=1, max_length=100)
    parent_id: int | None = None
    introduction: str | None = Field(default=None, max_length=20000)
    location: str | None = Field(default=None, max_length=200)
    sort_order: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    min_age: int | None = Field(default=None, ge=0, le=150)
    max_age: int | None = Field(default=None, ge=0, le=150)
    allowed_sex: Sex | None = None


class DepartmentNode(BaseModel):
    id: int
    name: str
    parent_id: int | None
    sort_order: int
    location: str
    children: list[DepartmentNode] = []


class DepartmentRestrictions(BaseModel):
    min_age: int | None
    max_age: int | None
    allowed_sex: str | None
    allowed_sex_label: str | None


class DepartmentRead(BaseModel):
    id: int
    hospital_id: int
    hospital_name: str
    parent_id: int | None
    parent_name: str | None
    name: str
    introduction: str
    location: str
    sort_order: int
    restrictions: DepartmentRestrictions
    children: list[DepartmentNode]


# --- doctors and fees -----------------------------------------------------------------------

class DoctorCreate(_Input):
    department_id: int
    name: str = Field(min_length=1, max_length=50)
    title: Title
    registration_level: RegistrationLevel = "general"
    specialty: str = Field(default="", max_length=400)
    introduction: str = Field(default="", max_length=20000)
    active: bool = True
    his_code: str | None = Field(default=None, max_length=64, description="their code in the hospital's HIS")


class DoctorUpdate(_Patch):
    department_id: int | None = None
    name: str | None = Field(default=None, min_length=1, max_length=50)
    title: Title | None = None
    registration_level: RegistrationLevel | None = None
    specialty: str | None = Field(default=None, max_length=400)
    introduction: str | None = Field(default=None, max_length=20000)
    active: bool | None = None


class Fees(BaseModel):
    registration_fee: int = Field(description=fees.REGISTRATION_FEE)
    consultation_fee: int = Field(description=fees.CONSULTATION_FEE)
    total: int = Field(description=fees.TOTAL_FEE)


class DoctorRead(BaseModel):
    id: int
    name: str
    title: str
    title_label: str
    registration_level: str
    registration_level_label: str
    specialty: str
    department_id: int
    department_name: str
    hospital_id: int
    hospital_name: str
    fees: Fees | None  # None: the hospital has not priced this level and title


class DoctorDetail(DoctorRead):
    introduction: str
    active: bool


class FeeRuleIn(_Input):
    registration_level: RegistrationLevel
    title: FeeTitle
    registration_fee: int = Field(ge=0, le=MAX_FEE, description=fees.REGISTRATION_FEE)
    consultation_fee: int = Field(ge=0, le=MAX_FEE, description=fees.CONSULTATION_FEE)


class FeeRuleRead(BaseModel):
    registration_level: str
    title: str
    title_label: str
    registration_fee: int = Field(description=fees.REGISTRATION_FEE)
    consultation_fee: int = Field(description=fees.CONSULTATION_FEE)
    total: int = Field(description=fees.TOTAL_FEE)


# --- search ---------------------------------------------------------------------------------

class SearchHospital(BaseModel):
    id: int
    name: str
    level: str
    level_label: str
    city: str
    district: str


class SearchDepartment(BaseModel):
    id: int
    name: str
    hospital_id: int
    hospital_name: str
    parent_id: int | None
    parent_name: str | None


class SearchDoctor(BaseModel):
    id: int
    name: str
    title: str
    title_label: str
    registration_level: str
    registration_level_label: str
    department_id: int
    department_name: str
    hospital_id: int
    hospital_name: str


class SearchResult(BaseModel):
    query: str
    hospitals: list[SearchHospital]
    departments: list[SearchDepartment]
    doctors: list[SearchDoctor]


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _parse_hhmm(value: Any) -> dt.time:
    if isinstance(value, dt.time) and value.tzinfo is None and not value.second and not value.microsecond:
        return value
    if isinstance(value, str) and (match := _HHMM.match(value)):
        return dt.time(int(match[1]), int(match[2]))
    raise ValueError("expected a time of day as HH:MM, e.g. 08:00")


def _hhmm_schema(schema: dict[str, Any]) -> None:
    # not JSON Schema's `format: time` (RFC 3339, "08:00:00Z"): that and the pattern together
    # match nothing, and generated clients would send the wrong shape
    schema.pop("format", None)
    schema.update(type="string", pattern=_HHMM.pattern, examples=["08:00"])


# a wall-clock time in the hospital's zone, written "HH:MM" both ways
ClockTime = Annotated[dt.time, BeforeValidator(_parse_hhmm),
                      PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str, when_used="json"),
                      Field(json_schema_extra=_hhmm_schema)]


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
    strike_cancellations: Literal["all", "paid_only", "none"] = Field(
        default="all", description="which patient cancellations count toward the restriction: all (held or "
                                   "paid), paid_only, none (no-shows always count)")
    sms_to_patient_phone: bool = Field(default=True, description="booking SMS also go to the patient's own "
                                                                 "phone when it differs from the account's")
    use_his_visit_no: bool = Field(default=False, description="HIS hospitals: the booking and its SMS show the "
                                                               "visit number the HIS gave instead of ours")
    release_mode: Literal["fifo", "draw"] = Field(
        default="fifo", description="放号: fifo (first come, first served) or draw (摇号: entries during a window "
                                    "after the release instant, then a verifiable draw); departments and "
                                    "schedules may override it")
    draw_window_seconds: int = Field(default=30, ge=10, le=60, description="draw: seconds entries are taken "
                                                                            "from the release instant")
    draw_prequeue_minutes: int = Field(default=0, ge=0, le=60, description="draw: minutes entries are taken "
                                                                            "before the release instant (0 = none)")


class HospitalRulesRead(HospitalRulesUpdate):
    model_config = ConfigDict(from_attributes=True, strict=False)

    hospital_id: int
    updated_at: dt.datetime | None = Field(description="null while the hospital runs on the defaults")


# --- clinic hours and the rules in plain words (back office) -------------------------------

class ClinicPeriod(BaseModel):
    opens: ClockTime
    closes: ClockTime


class ClinicHours(BaseModel):
    """A hospital's clinic hours per period, hospital time; an all-day clinic runs from the
    morning's opening to the afternoon's closing."""

    morning: ClinicPeriod
    afternoon: ClinicPeriod
    evening: ClinicPeriod


class RulesText(BaseModel):
    """The rules as patients read them, one sentence a line, per language."""

    zh_cn: list[str] = Field(serialization_alias="zh-CN")
    en: list[str]
