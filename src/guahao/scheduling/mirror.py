"""Schedules mirrored from a hospital's HIS (synced mode): one HIS clinic session becomes one
schedule (`his_session_id`), each of its time bands one platform slot (`his_band_id`) whose
capacity is the HIS platform pool's. The HIS feature reads the HIS and calls
`do_mirror_session`; scheduling knows nothing of the HIS protocol.

Capacity follows the HIS seat by seat, never renumbering a seat someone holds:
- more: new seat rows numbered after the schedule's last visit number;
- fewer: free seats are removed, highest numbers first; a cut below what is sold or held
  removes every free seat and keeps the rest (the pool becomes max(new, sold): nothing is
  oversold and nobody is cancelled silently). The outcome names the bookings beyond the
  new capacity (latest numbers first) so that the caller flags them for the hospital.

Concurrency: the schedule row is taken exclusively first (the first lock of the order), so
no hold, confirmation or cancellation runs on it while its seats are counted and changed.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.scheduling import domain, seats
from guahao.scheduling import service as scheduling_service
from guahao.scheduling.models import Schedule, Slot, SlotPosition

HALF_TO_PERIOD = {"am": "morning", "pm": "afternoon"}


class MirrorRefused(Exception):
    """The HIS session cannot be mirrored (it clashes with a schedule of ours, say); nothing
    was written for it."""


@dataclass(frozen=True)
class MirrorBand:
    his_band_id: str
    start: dt.time
    end: dt.time
    capacity: int  # the HIS platform pool's capacity


@dataclass(frozen=True)
class MirrorSession:
    his_session_id: str
    date: dt.date
    period: str
    department_id: int
    doctor_id: int | None
    registration_level: str
    title: str | None
    bands: tuple[MirrorBand, ...]


@dataclass
class MirrorOutcome:
    schedule_id: int | None
    created: bool = False
    grown: int = 0
    cut: int = 0
    # bookings beyond the HIS's new capacity (it cut below what we sold): flag, never cancel
    over_capacity: list[int] = field(default_factory=list)


async def find_mirrored(session: AsyncSession, hospital_id: int, his_session_id: str, *,
                        lock: bool = False) -> Schedule | None:
    stmt = select(Schedule).where(Schedule.hospital_id == hospital_id, Schedule.his_session_id == his_session_id)
    if lock:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt.execution_options(populate_existing=True))


async def mirrored_sessions(session: AsyncSession, hospital_id: int, first: dt.date,
                            last: dt.date) -> dict[str, int]:
    """{his_session_id: schedule id} of a hospital's mirrored schedules dated first..last."""
    rows = await session.execute(select(Schedule.his_session_id, Schedule.id).where(
        Schedule.hospital_id == hospital_id, Schedule.his_session_id.is_not(None), Schedule.date.between(first, last)))
    return {sid: schedule_id for sid, schedule_id in rows}


async def _create(session: AsyncSession, hospital_id: int, s: MirrorSession, now: dt.datetime) -> int:
    rules = await hospital_rules.get_rules(session, hospital_id)
    clash = select(Schedule.id).where(Schedule.date == s.date, Schedule.period == s.period)
    clash = (clash.where(Schedule.doctor_id == s.doctor_id) if s.doctor_id is not None
             else clash.where(Schedule.department_id == s.department_id, Schedule.doctor_id.is_(None)))
    if await session.scalar(clash) is not None:
        raise MirrorRefused("a schedule of ours already holds this doctor's date and period")
    fee, consult = await catalog_service.fees_for(session, hospital_id, s.registration_level, s.title)
    bands = sorted(s.bands, key=lambda b: b.start)
    starts, _ = domain.band_bounds(s.date, domain.Band(bands[0].start, bands[0].end), rules.tz)
    _, ends = domain.band_bounds(s.date, domain.Band(bands[-1].start, bands[-1].end), rules.tz)
    schedule = Schedule(hospital_id=hospital_id, department_id=s.department_id, doctor_id=s.doctor_id, date=s.date,
                        period=s.period, starts_at=starts, ends_at=ends, registration_level=s.registration_level,
                        registration_fee=fee, consultation_fee=consult, status="published",
                        release_at=domain.release_instant(s.date, rules), his_session_id=s.his_session_id,
                        created_at=now, updated_at=now)
    session.add(schedule)
    await session.flush()
    rows, next_no = [], 1
    for band in bands:
        a, b = domain.band_bounds(s.date, domain.Band(band.start, band.end), rules.tz)
        for pool, capacity in (("platform", band.capacity), ("onsite", 0)):  # the HIS sells its own window
            rows.append({"schedule_id": schedule.id, "hospital_id": hospital_id, "pool": pool, "starts_at": a,
                         "ends_at": b, "capacity": capacity, "first_visit_no": next_no,
                         "his_band_id": band.his_band_id})
            next_no += capacity
    await scheduling_service.write_slots(session, rows)
    return schedule.id


async def _last_visit_no(session: AsyncSession, schedule_id: int) -> int:
    return await session.scalar(select(func.max(SlotPosition.visit_no))
                                .where(SlotPosition.schedule_id == schedule_id)) or 0


async def _resize(session: AsyncSession, schedule: Schedule, slot: Slot, target: int, now: dt.datetime,
                  out: MirrorOutcome) -> None:
    if target > slot.capacity:
        last = await _last_visit_no(session, schedule.id)
        extra = target - slot.capacity
        await session.execute(SlotPosition.__table__.insert(), [
            {"hospital_id": schedule.hospital_id, "schedule_id": schedule.id, "slot_id": slot.id,
             "visit_no": last + i} for i in range(1, extra + 1)])
        slot.capacity, out.grown = target, out.grown + extra
        return
    free = list(await session.scalars(select(SlotPosition.id).where(
        SlotPosition.slot_id == slot.id, SlotPosition.booking_id.is_(None))
        .order_by(SlotPosition.visit_no.desc()).limit(slot.capacity - target)))
    if free:
        await session.execute(delete(SlotPosition).where(SlotPosition.id.in_(free)))
        slot.capacity, out.cut = slot.capacity - len(free), out.cut + len(free)
    if slot.capacity > target:  # the rest is sold or held: keep it, name who is beyond the cut
        taken = list(await session.scalars(
            select(SlotPosition.booking_id).where(SlotPosition.slot_id == slot.id, seats.taken(now))
            .order_by(SlotPosition.visit_no.desc())))
        out.over_capacity += [b for b in taken[:max(0, len(taken) - target)] if b is not None]


async def do_mirror_session(session: AsyncSession, hospital_id: int, s: MirrorSession, *,
                            now: dt.datetime) -> MirrorOutcome:
    """Create or update the schedule mirroring one open HIS session (see the module notes)."""
    if not s.bands:
        raise MirrorRefused("a session without time bands")
    schedule = await find_mirrored(session, hospital_id, s.his_session_id, lock=True)
    if schedule is None:
        return MirrorOutcome(schedule_id=await _create(session, hospital_id, s, now), created=True)
    out = MirrorOutcome(schedule_id=schedule.id)
    slots = {slot.his_band_id: slot for slot in await scheduling_service.list_slots(session, schedule.id,
                                                                                     pool="platform")}
    rules = await hospital_rules.get_rules(session, hospital_id)
    for band in s.bands:
        slot = slots.get(band.his_band_id)
        if slot is None:  # a band the HIS added later: numbered after everything there is
            a, b = domain.band_bounds(s.date, domain.Band(band.start, band.end), rules.tz)
            first = await _last_visit_no(session, schedule.id) + 1
            await scheduling_service.write_slots(session, [
                {"schedule_id": schedule.id, "hospital_id": hospital_id, "pool": "platform", "starts_at": a,
                 "ends_at": b, "capacity": band.capacity, "first_visit_no": first, "his_band_id": band.his_band_id}])
            out.grown += band.capacity
        elif slot.capacity != band.capacity:
            await _resize(session, schedule, slot, band.capacity, now, out)
    if out.grown or out.cut:
        schedule.updated_at = now
    await session.flush()
    return out
