"""What a hold needs to know about a slot, read in one round trip.

The hold is the hottest path of the platform, so instead of asking catalog and scheduling
for slot, schedule, department, doctor and rules one by one, it reads them in one joined
SELECT. Only reads happen here; every write goes through the owning feature. The rules come
out as the one rules type, `catalog.rules.Rules` (defaults when the hospital has no row).

`lock_schedule=True` reads the schedule row under a share lock (PostgreSQL `FOR SHARE OF
schedules`; SQLite writers are serial anyway). It is the first lock of the order schedule →
person → seats → booking → payment: holds, confirmations and cancellations take it shared,
so they run side by side, while 停诊 takes it exclusively and so never interleaves with them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog.models import Department, Doctor, Hospital, HospitalRules
from guahao.catalog.rules import Rules, rules_from_row
from guahao.scheduling.models import Schedule, Slot


@dataclass(frozen=True)
class SlotContext:
    slot_id: int
    pool: str
    slot_starts_at: dt.datetime
    slot_ends_at: dt.datetime
    his_band_id: str | None  # the HIS time band the slot mirrors (realtime holds lock it there)
    last_visit_no: int  # the slot's seats are visit numbers first_visit_no .. last_visit_no
    schedule_id: int
    schedule_status: str
    visit_date: dt.date
    period: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    release_at: dt.datetime
    release_mode: str  # fifo | draw (holds refused: guahao.draw allocates) | drawn
    registration_fee: int
    consultation_fee: int
    hospital_id: int
    hospital_name: str
    timezone: str
    his_mode: str
    department_id: int
    department_name: str
    department_location: str
    min_age: int | None
    max_age: int | None
    allowed_sex: str | None
    doctor_id: int | None
    doctor_name: str | None
    rules: Rules
    waitlist_waiting: bool = False  # someone waits on the schedule's 候补 queue (read under the share lock)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def closes_at(self) -> dt.datetime:
        return self.starts_at - dt.timedelta(minutes=self.rules.close_minutes_before_start)

    @property
    def cancel_deadline(self) -> dt.datetime:
        """The deadline under the hospital's current rules; a booking keeps the one it was made
        under (`Booking.cancel_deadline`), see `deadline_of`."""
        return self.rules.cancel_deadline(self.visit_date)

    def deadline_of(self, booking) -> dt.datetime:
        return booking.cancel_deadline or self.cancel_deadline

    def local(self, instant: dt.datetime) -> str:
        return instant.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")

    def iso(self, instant: dt.datetime) -> str:
        """For times in refusals: the hospital's wall clock with its offset, like every answer."""
        return instant.astimezone(self.zone).isoformat()


async def load_slot_context(session: AsyncSession, slot_id: int, *, lock_schedule: bool = False) -> SlotContext | None:
    query = (
        select(Slot, Schedule, Hospital.name, Hospital.timezone, Hospital.his_mode, Department, Doctor.name, HospitalRules)
        .join(Schedule, Schedule.id == Slot.schedule_id)
        .join(Hospital, Hospital.id == Schedule.hospital_id)
        .outerjoin(HospitalRules, HospitalRules.hospital_id == Hospital.id)  # no row: the defaults
        .join(Department, Department.id == Schedule.department_id)
        .outerjoin(Doctor, Doctor.id == Schedule.doctor_id)
        .where(Slot.id == slot_id)
    )
    if lock_schedule:
        query = query.with_for_update(read=True, of=Schedule).execution_options(populate_existing=True)
    row = (await session.execute(query)).first()
    if row is None:
        return None
    slot, schedule, hospital_name, tz, his_mode, department, doctor_name, rules_row = row
    return SlotContext(
        slot_id=slot.id, pool=slot.pool, slot_starts_at=slot.starts_at, slot_ends_at=slot.ends_at,
        his_band_id=slot.his_band_id, last_visit_no=slot.first_visit_no + slot.capacity - 1,
        schedule_id=schedule.id, schedule_status=schedule.status, visit_date=schedule.date, period=schedule.period,
        starts_at=schedule.starts_at, ends_at=schedule.ends_at, release_at=schedule.release_at,
        release_mode=schedule.release_mode,
        registration_fee=schedule.registration_fee, consultation_fee=schedule.consultation_fee,
        hospital_id=schedule.hospital_id, hospital_name=hospital_name, timezone=tz, his_mode=his_mode,
        department_id=department.id, department_name=department.name, department_location=department.location,
        min_age=department.min_age, max_age=department.max_age, allowed_sex=department.allowed_sex,
        doctor_id=schedule.doctor_id, doctor_name=doctor_name,
        rules=rules_from_row(rules_row, schedule.hospital_id, tz), waitlist_waiting=bool(schedule.waitlist_waiting),
    )
