"""A hospital's booking rules (DESIGN.md section 4): the one rules type of the platform.

Catalog owns them with the hospital they belong to; staff edit them through the staff API. Every feature (booking, scheduling, notifications, catalog views) reads
them as the frozen `Rules` snapshot through `get_rules` (or `rules_from_row` for the hold's
joined SELECT); the ORM row `HospitalRules` is only their storage. A hospital without a
stored rule row runs on the model's defaults. `do_update_rules` locks the row (PostgreSQL:
FOR UPDATE; SQLite writers are serialised anyway) so that the audit row's old values are the ones replaced.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog.errors import InvalidClinicHours
from guahao.catalog.models import Hospital, HospitalRules
from guahao.catalog.schemas import HospitalRulesUpdate
from guahao.core import audit
from guahao.core.errors import NotFound

RULE_FIELDS: tuple[str, ...] = tuple(HospitalRulesUpdate.model_fields)
# The platform's clinic hours (wall clock, the hospital's zone); a hospital may set its own
# per period (`do_update_clinic_hours`). An all-day clinic runs from the morning's opening
# to the afternoon's closing.
DEFAULT_CLINIC_HOURS: dict[str, tuple[dt.time, dt.time]] = {
    "morning": (dt.time(8, 0), dt.time(12, 0)),
    "afternoon": (dt.time(13, 30), dt.time(17, 30)),
    "evening": (dt.time(18, 0), dt.time(21, 0)),
}
CLINIC_PERIODS = tuple(DEFAULT_CLINIC_HOURS)


def period_windows(hours: dict[str, tuple[dt.time, dt.time]]) -> dict[str, tuple[dt.time, dt.time]]:
    """Every period's (opens, closes), the all-day clinic included, from the three periods' hours."""
    return {**hours, "all_day": (hours["morning"][0], hours["afternoon"][1])}


@dataclasses.dataclass(frozen=True)
class Rules:
    """An immutable snapshot of one hospital's rules, safe to pass to pure domain code."""

    hospital_id: int
    hold_minutes: int
    release_days_ahead: int
    release_time: dt.time
    close_minutes_before_start: int
    slot_granularity: str
    one_per_department_per_day: bool
    max_live_bookings_per_person: int
    cancel_minutes_before_visit_day: int
    restriction_threshold: int
    restriction_window_days: int
    restriction_days: int
    record_requirement: str
    verification_required: bool
    reminder_time: dt.time
    strike_cancellations: str  # all | paid_only | none: which patient cancellations are strikes
    sms_to_patient_phone: bool
    timezone: str = "Asia/Shanghai"
    updated_at: dt.datetime | None = None  # None: never edited, the defaults apply
    sms_to_patient_phone: bool = True
    use_his_visit_no: bool = False  # show the HIS's visit number (就诊序号) instead of ours
    # ((period, opens, closes), ...) the hospital set for itself; the others keep the defaults
    clinic_hours: tuple[tuple[str, dt.time, dt.time], ...] = ()
    release_mode: str = "fifo"  # fifo | draw (摇号, guahao.draw); departments and schedules may override
    draw_window_seconds: int = 30
    draw_prequeue_minutes: int = 0

    @property
    def hours(self) -> dict[str, tuple[dt.time, dt.time]]:
        """The hospital's clinic hours of morning, afternoon and evening."""
        return {**DEFAULT_CLINIC_HOURS, **{period: (opens, closes) for period, opens, closes in self.clinic_hours}}

    @property
    def period_windows(self) -> dict[str, tuple[dt.time, dt.time]]:
        """Wall-clock (opens, closes) of every period at this hospital, the all-day clinic too."""
        return period_windows(self.hours)

    @property
    def hold(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.hold_minutes)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def cancellation_strikes(self, *, was_paid: bool, kept: str | None = None) -> bool:
        """Whether a patient's cancellation of a booking counts toward the restriction; `kept`
        is the policy the booking was made under (it wins over today's rule)."""
        policy = kept or self.strike_cancellations
        return policy == "all" or (policy == "paid_only" and was_paid)

    def cancel_deadline(self, visit_date: dt.date) -> dt.datetime:
        """The online cancellation deadline (UTC) of a visit on `visit_date`, under these rules."""
        midnight = dt.datetime.combine(visit_date, dt.time(0, 0), tzinfo=self.tz)
        return (midnight - dt.timedelta(minutes=self.cancel_minutes_before_visit_day)).astimezone(dt.UTC)


def default_values() -> dict[str, Any]:
    """The defaults, read from the model's column defaults so there is one source of truth."""
    columns = HospitalRules.__table__.columns
    return {name: columns[name].default.arg for name in RULE_FIELDS}


def _stored_hours(row: HospitalRules) -> tuple[tuple[str, dt.time, dt.time], ...]:
    pairs = ((p, getattr(row, f"{p}_opens"), getattr(row, f"{p}_closes")) for p in CLINIC_PERIODS)
    return tuple((p, opens, closes) for p, opens, closes in pairs if opens is not None and closes is not None)


def _snapshot(row: HospitalRules, timezone: str | None = None) -> Rules:
    return Rules(hospital_id=row.hospital_id, updated_at=row.updated_at, timezone=timezone or "Asia/Shanghai",
                 clinic_hours=_stored_hours(row), **{name: getattr(row, name) for name in RULE_FIELDS})


def default_rules(hospital_id: int = 0, timezone: str = "Asia/Shanghai") -> Rules:
    """The rules of a hospital that never edited them."""
    return Rules(hospital_id=hospital_id, timezone=timezone, **default_values())


def rules_from_row(row: HospitalRules | None, hospital_id: int, timezone: str | None) -> Rules:
    """The snapshot of a row read by the caller's own query (None: the hospital's defaults)."""
    if row is None:
        return default_rules(hospital_id, timezone or "Asia/Shanghai")
    return _snapshot(row, timezone)


async def _hospital_exists(session: AsyncSession, hospital_id: int) -> bool:
    return await session.scalar(select(Hospital.id).where(Hospital.id == hospital_id)) is not None


async def get_rules(session: AsyncSession, hospital_id: int) -> Rules:
    """The rules of a hospital (its defaults if never edited); NotFound for an unknown hospital."""
    found = (await session.execute(
        select(Hospital.timezone, HospitalRules).outerjoin(HospitalRules, HospitalRules.hospital_id == Hospital.id)
        .where(Hospital.id == hospital_id))).first()
    if found is None:
        raise NotFound("hospital")
    return rules_from_row(found[1], hospital_id, found[0])


async def list_rules(session: AsyncSession) -> list[Rules]:
    """Every hospital's rules (defaults where never edited), for scans across hospitals."""
    rows = await session.execute(
        select(Hospital.id, Hospital.timezone, HospitalRules)
        .outerjoin(HospitalRules, HospitalRules.hospital_id == Hospital.id).order_by(Hospital.id))
    return [rules_from_row(row, hospital_id, tz) for hospital_id, tz, row in rows]


def _audit_value(value: Any) -> Any:
    return value.strftime("%H:%M") if isinstance(value, dt.time) else value


async def do_update_rules(session: AsyncSession, hospital_id: int, update: HospitalRulesUpdate, *,
                          now: dt.datetime, staff_id: int | None) -> Rules:
    """Replace a hospital's rules; one audit row with the old and new value of each changed field."""
    row = await session.scalar(
        select(HospitalRules).where(HospitalRules.hospital_id == hospital_id).with_for_update()
    )
    if row is None:
        if not await _hospital_exists(session, hospital_id):
            raise NotFound("hospital")
        row = HospitalRules(hospital_id=hospital_id, updated_at=now, **default_values())
        session.add(row)
    new_values = update.model_dump()
    changes = {
        name: [_audit_value(getattr(row, name)), _audit_value(value)]
        for name, value in new_values.items() if getattr(row, name) != value
    }
    timezone = await session.scalar(select(Hospital.timezone).where(Hospital.id == hospital_id))
    if not changes:
        return _snapshot(row, timezone)
    for name in changes:
        setattr(row, name, new_values[name])
    row.updated_at = now
    await session.flush()
    await audit.do_record(session, now=now, action="hospital_rules.update", object_type="hospital_rules",
                          object_id=hospital_id, hospital_id=hospital_id, staff_id=staff_id, detail=changes)
    return _snapshot(row, timezone)


async def _rules_row_for_update(session: AsyncSession, hospital_id: int, now: dt.datetime) -> HospitalRules:
    row = await session.scalar(
        select(HospitalRules).where(HospitalRules.hospital_id == hospital_id).with_for_update()
    )
    if row is None:
        if not await _hospital_exists(session, hospital_id):
            raise NotFound("hospital")
        row = HospitalRules(hospital_id=hospital_id, updated_at=now, **default_values())
        session.add(row)
    return row


def check_clinic_hours(hours: dict[str, tuple[dt.time, dt.time]]) -> None:
    """Each period opens before it closes, and the periods follow each other without overlap
    (morning, then afternoon, then evening)."""
    previous_close: dt.time | None = None
    for period in CLINIC_PERIODS:
        opens, closes = hours[period]
        if opens >= closes:
            raise InvalidClinicHours(period=period)
        if previous_close is not None and opens < previous_close:
            raise InvalidClinicHours(period=period)
        previous_close = closes


async def do_update_clinic_hours(session: AsyncSession, hospital_id: int,
                                 hours: dict[str, tuple[dt.time, dt.time]], *, now: dt.datetime,
                                 staff_id: int | None) -> Rules:
    """Set the hospital's clinic hours of every period (audited with old and new values).

    Schedules generated from now on use them; schedules already generated keep their times
    (their bookings were made for those times)."""
    check_clinic_hours(hours)
    row = await _rules_row_for_update(session, hospital_id, now)
    old = period_windows({**DEFAULT_CLINIC_HOURS, **{p: (o, c) for p, o, c in _stored_hours(row)}})
    changes = {}
    for period in CLINIC_PERIODS:
        opens, closes = hours[period]
        if old[period] != (opens, closes):
            changes[period] = [[_audit_value(t) for t in old[period]], [_audit_value(opens), _audit_value(closes)]]
        setattr(row, f"{period}_opens", opens)
        setattr(row, f"{period}_closes", closes)
    timezone = await session.scalar(select(Hospital.timezone).where(Hospital.id == hospital_id))
    if changes:
        row.updated_at = now
        await session.flush()
        await audit.do_record(session, now=now, action="clinic_hours.update", object_type="hospital_rules",
                              object_id=hospital_id, hospital_id=hospital_id, staff_id=staff_id, detail=changes)
    return _snapshot(row, timezone)
