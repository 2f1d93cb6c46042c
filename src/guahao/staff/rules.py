"""A hospital's booking rules (DESIGN.md section 4): read by scheduling and booking, edited by
hospital admins.

`get_rules` is the one way other features read rules; a hospital without a stored rule row
runs on the model's defaults. `do_update_rules` locks the row (PostgreSQL: FOR UPDATE; SQLite
writers are serialised anyway) so that the audit row's old values are the ones replaced.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog.models import Hospital, HospitalRules
from guahao.core.errors import NotFound
from guahao.staff import audit
from guahao.staff.schemas import HospitalRulesUpdate

RULE_FIELDS: tuple[str, ...] = tuple(HospitalRulesUpdate.model_fields)


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
    updated_at: dt.datetime | None = None  # None: never edited, the defaults apply
    sms_to_patient_phone: bool = True

    @property
    def hold(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.hold_minutes)


def default_values() -> dict[str, Any]:
    """The defaults, read from the model's column defaults so there is one source of truth."""
    columns = HospitalRules.__table__.columns
    return {name: columns[name].default.arg for name in RULE_FIELDS}


def _snapshot(row: HospitalRules) -> Rules:
    return Rules(hospital_id=row.hospital_id, updated_at=row.updated_at,
                 **{name: getattr(row, name) for name in RULE_FIELDS})


async def _hospital_exists(session: AsyncSession, hospital_id: int) -> bool:
    return await session.scalar(select(Hospital.id).where(Hospital.id == hospital_id)) is not None


async def get_rules(session: AsyncSession, hospital_id: int) -> Rules:
    """The rules of a hospital (its defaults if never edited); NotFound for an unknown hospital."""
    row = await session.get(HospitalRules, hospital_id)
    if row is not None:
        return _snapshot(row)
    if not await _hospital_exists(session, hospital_id):
        raise NotFound("hospital")
    return Rules(hospital_id=hospital_id, **default_values())


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
    if not changes:
        return _snapshot(row)
    for name in changes:
        setattr(row, name, new_values[name])
    row.updated_at = now
    await session.flush()
    await audit.do_record(session, now=now, action="hospital_rules.update", object_type="hospital_rules",
                          object_id=hospital_id, hospital_id=hospital_id, staff_id=staff_id, detail=changes)
    return _snapshot(row)
