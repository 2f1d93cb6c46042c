"""Dated schedules and their slots: generation from templates, edits, publication, lookups.

Every `do_*` function runs inside the caller's unit of work (`async with db.begin()`) and
never commits. The booking feature uses `get_schedule_or_raise`, `get_slot_or_raise`,
`list_slots`, `closes_at` and `domain.slot_state`.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.core import audit
from guahao.core.errors import NotFound
from guahao.scheduling import capacity, domain, seats
from guahao.scheduling.errors import (
    BandsNotUsed,
    FeeNotConfigured,
    ScheduleHasBookings,
    ScheduleNotDraft,
    ScheduleNotEditable,
    ScheduleRangeInvalid,
)
from guahao.scheduling.models import Schedule, ScheduleTemplate, Slot

MAX_GENERATE_DAYS = 60


@dataclass(frozen=True)
class GenerateOutcome:
    created: int
    skipped: int
    schedule_ids: list[int]


# --- lookups ----------------------------------------------------------------------------

def closes_at(schedule: Schedule, rules: hospital_rules.Rules) -> dt.datetime:
    """Booking closes at the period start minus the hospital's current close_minutes_before_start."""
    return domain.closing_instant(schedule.starts_at, rules.close_minutes_before_start)


async def get_schedule_or_raise(session: AsyncSession, schedule_id: int, *, hospital_id: int | None = None,
                                for_update: bool = False) -> Schedule:
    """A schedule, or NotFound("schedule") when missing or (with hospital_id) of another hospital.

    for_update takes the schedule's row lock on PostgreSQL (SQLite writers are already serial).
    """
    stmt = select(Schedule).where(Schedule.id == schedule_id)
    if for_update:
        stmt = stmt.with_for_update()
    schedule = (await session.execute(stmt)).scalar_one_or_none()
    if schedule is None or (hospital_id is not None and schedule.hospital_id != hospital_id):
        raise NotFound("schedule")
    return schedule


async def lock_schedule(session: AsyncSession, schedule_id: int, *, exclusive: bool = True) -> Schedule | None:
    """The schedule row under its lock, the first of the order schedule → person → seats →
    booking → payment (DESIGN.md section 5), re-read so the caller sees the committed state.

    Holds, confirmations and cancellations take it shared (through booking's joined read);
    停诊 takes it exclusively here, so it never interleaves with them. PostgreSQL only:
    SQLite writers are serial anyway."""
    stmt = select(Schedule).where(Schedule.id == schedule_id)
    stmt = stmt.with_for_update() if exclusive else stmt.with_for_update(read=True)
    return await session.scalar(stmt.execution_options(populate_existing=True))


async def lock_open_schedules(session: AsyncSession, hospital_id: int, *, now: dt.datetime) -> None:
    """Take every not-yet-ended schedule of a hospital exclusively, in id order (the first
    lock of the order): a hospital-wide change (its HIS mode switching) waits for the holds,
    confirmations and cancellations in flight, which share these rows. PostgreSQL only."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite writers are serial anyway
    await session.execute(select(Schedule.id).where(Schedule.hospital_id == hospital_id, Schedule.ends_at > now)
                          .order_by(Schedule.id).with_for_update())


async def mark_suspended(session: AsyncSession, schedule_id: int, *, reason: str, now: dt.datetime) -> None:
    """停诊's change to the schedule itself; the caller holds the schedule's exclusive lock and
    owns the transaction (revoking the bookings is booking's part)."""
    await session.execute(
        update(Schedule).where(Schedule.id == schedule_id)
        .values(status="suspended", suspended_reason=reason, updated_at=now)
    )


async def set_release_mode(session: AsyncSession, schedule_id: int, mode: str, *, now: dt.datetime) -> None:
    """How the schedule's seats are released (models.RELEASE_MODES); guahao.draw decides it.
    The caller holds the schedule's lock or knows its release has not begun."""
    await session.execute(update(Schedule).where(Schedule.id == schedule_id)
                          .values(release_mode=mode, updated_at=now))


async def schedules_released_after(session: AsyncSession, hospital_id: int, after: dt.datetime) -> list[Schedule]:
    """The hospital's schedules (not suspended) whose release instant is after `after`: those
    whose release mode may still change."""
    return list(await session.scalars(
        select(Schedule).where(Schedule.hospital_id == hospital_id, Schedule.release_at > after,
                               Schedule.status != "suspended", Schedule.release_mode != "drawn")
        .order_by(Schedule.id)))


def ended_schedule_ids(now: dt.datetime):
    """Ids of schedules whose period is over at `now`, as a subquery for the caller's
    `IN (...)` (no-show marking filters its bookings by it in one statement)."""
    return select(Schedule.id).where(Schedule.ends_at <= now)


async def visit_times(session: AsyncSession, slot_ids: Iterable[int]) -> dict[int, tuple[dt.datetime, dt.datetime]]:
    """{slot_id: (slot start, its schedule's start)} for rosters ordered by period, then seat."""
    ids = set(slot_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Slot.id, Slot.starts_at, Schedule.starts_at).join(Schedule, Schedule.id == Slot.schedule_id)
        .where(Slot.id.in_(ids)))
    return {slot_id: (slot_start, schedule_start) for slot_id, slot_start, schedule_start in rows}


async def get_slot_or_raise(session: AsyncSession, slot_id: int, *, hospital_id: int | None = None,
                            for_update: bool = False) -> Slot:
    stmt = select(Slot).where(Slot.id == slot_id)
    if for_update:
        stmt = stmt.with_for_update()
    slot = (await session.execute(stmt)).scalar_one_or_none()
    if slot is None or (hospital_id is not None and slot.hospital_id != hospital_id):
        raise NotFound("slot")
    return slot


async def list_slots(session: AsyncSession, schedule_id: int, *, pool: str | None = None) -> list[Slot]:
    """A schedule's slots in time order, platform before onsite inside a band."""
    stmt = select(Slot).where(Slot.schedule_id == schedule_id)
    if pool is not None:
        stmt = stmt.where(Slot.pool == pool)
    return list((await session.scalars(stmt.order_by(Slot.starts_at, Slot.first_visit_no))).all())


async def pool_totals(session: AsyncSession, schedule_ids: list[int]) -> dict[int, dict[str, int]]:
    """Capacity per pool of each schedule: {schedule_id: {"platform": n, "onsite": m}}."""
    totals: dict[int, dict[str, int]] = defaultdict(lambda: {"platform": 0, "onsite": 0})
    if not schedule_ids:
        return totals
    rows = await session.execute(
        select(Slot.schedule_id, Slot.pool, func.sum(Slot.capacity))
        .where(Slot.schedule_id.in_(schedule_ids)).group_by(Slot.schedule_id, Slot.pool))
    for schedule_id, pool, total in rows:
        totals[schedule_id][pool] = int(total or 0)
    return totals


async def list_schedules(session: AsyncSession, hospital_id: int, from_date: dt.date, to_date: dt.date, *,
                         department_id: int | None = None, doctor_id: int | None = None,
                         status: str | None = None) -> list[Schedule]:
    stmt = select(Schedule).where(Schedule.hospital_id == hospital_id, Schedule.date >= from_date,
                                  Schedule.date <= to_date)
    if department_id is not None:
        stmt = stmt.where(Schedule.department_id == department_id)
    if doctor_id is not None:
        stmt = stmt.where(Schedule.doctor_id == doctor_id)
    if status is not None:
        stmt = stmt.where(Schedule.status == status)
    return list((await session.scalars(stmt.order_by(Schedule.date, Schedule.starts_at, Schedule.id))).all())


async def live_counts(session: AsyncSession, slot_ids: list[int], now: dt.datetime) -> dict[int, int]:
    """Seats in use per slot right now (confirmed, checked in, and holds not yet lapsed)."""
    taken = await seats.taken_counts(session, slot_ids, now)
    return {slot_id: taken.get(slot_id, 0) for slot_id in slot_ids}


class ScheduleBookings(Protocol):
    """The one question scheduling asks of booking, which sits above it in the layers: any
    booking at all, in any state, pins a schedule's slots (bookings reference them). Booking
    answers it (`guahao.booking.queries`); `providers.py` wires the two."""

    async def schedule_has_bookings(self, session: AsyncSession, schedule_id: int) -> bool: ...


# --- writing slots ----------------------------------------------------------------------

def _slot_rows(schedule_id: int, hospital_id: int, day: dt.date, plans: list[domain.SlotPlan],
               tz: dt.tzinfo) -> list[dict]:
    rows = []
    for plan in plans:
        starts, ends = domain.band_bounds(day, domain.Band(plan.start, plan.end), tz)
        rows.append({"schedule_id": schedule_id, "hospital_id": hospital_id, "pool": plan.pool,
                     "starts_at": starts, "ends_at": ends, "capacity": plan.capacity,
                     "first_visit_no": plan.first_visit_no})
    return rows


async def _write_slots(session: AsyncSession, rows: list[dict]) -> list[int]:
    """Insert slot rows (any number of schedules) in one batched statement; their new ids.

    The one place slots come into being: generation and schedule edits both call it.
    """
    if not rows:
        return []
    result = await session.execute(
        insert(Slot.__table__).returning(Slot.__table__.c.id, sort_by_parameter_order=True), rows)
    ids = [row[0] for row in result]
    # every seat of every slot is a row with its visit number (see scheduling/seats.py)
    await seats.do_create_positions(session, [{**row, "id": slot_id} for row, slot_id in zip(rows, ids)])
    return ids


async def write_slots(session: AsyncSession, rows: list[dict]) -> list[int]:
    """Slots (with their seats) from rows of Slot columns; for schedules mirrored from a HIS
    (scheduling/mirror.py). Every row has the same keys."""
    return await _write_slots(session, rows)


def _current_bands(slots: list[Slot], tz: dt.tzinfo) -> list[domain.Band]:
    starts = sorted({(s.starts_at, s.ends_at) for s in slots})
    return [domain.Band(a.astimezone(tz).time(), b.astimezone(tz).time()) for a, b in starts]


# --- generation -------------------------------------------------------------------------

def _insert_ignoring_duplicates(session: AsyncSession, keys: list[str], where: str):
    """INSERT ... ON CONFLICT (keys) WHERE <partial index predicate> DO NOTHING RETURNING.

    The partial unique indexes on schedules decide what already exists, so two generations
    racing over the same dates create each schedule once (PostgreSQL waits on the other
    inserter and then skips; SQLite writers are serial).
    """
    dialect = session.get_bind().dialect.name
    insert_fn = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Schedule.__table__
    return (insert_fn(table).on_conflict_do_nothing(index_elements=keys, index_where=text(where))
            .returning(table.c.id, table.c.doctor_id, table.c.department_id, table.c.date, table.c.period))


async def do_generate(session: AsyncSession, hospital_id: int, from_date: dt.date, to_date: dt.date,
                      publish: bool, now: dt.datetime, *, actor_id: int | None = None) -> GenerateOutcome:
    """Dated schedules and slots from the hospital's active templates, idempotently.

    A date and period that already has a schedule for the doctor (or general clinic) is
    skipped, whoever created it. Fees are fixed now from the fee rules; release_at from the
    current rules (publication recomputes it).
    """
    rules = await hospital_rules.get_rules(session, hospital_id)
    span = (to_date - from_date).days + 1
    if from_date < domain.local_today(now, rules.tz) or span < 1 or span > MAX_GENERATE_DAYS:
        raise ScheduleRangeInvalid(max_days=MAX_GENERATE_DAYS)
    active_templates = list((await session.scalars(
        select(ScheduleTemplate)
        .where(ScheduleTemplate.hospital_id == hospital_id, ScheduleTemplate.active.is_(True))
        .order_by(ScheduleTemplate.id))).all())
    doctors = await catalog_service.doctors_by_id(
        session, (t.doctor_id for t in active_templates if t.doctor_id is not None))
    rows = [(t, doctors.get(t.doctor_id)) for t in active_templates]
    templates = [(t, d) for t, d in rows if d is None or d.active]
    fees = await catalog_service.fee_table(session, hospital_id)
    by_weekday: dict[int, list] = defaultdict(list)
    for template, doctor in templates:
        by_weekday[template.weekday].append((template, doctor))

    candidates: dict[tuple, tuple[dict, ScheduleTemplate]] = {}
    for offset in range(span):
        day = from_date + dt.timedelta(days=offset)
        for template, doctor in by_weekday[day.weekday()]:
            title = doctor.title if doctor is not None else "none"
            fee = fees.get((template.registration_level, title))
            if fee is None:
                raise FeeNotConfigured(registration_level=template.registration_level, title=title)
            starts, ends = domain.period_bounds(day, template.period, rules.tz, rules.period_windows)
            row = {"hospital_id": hospital_id, "department_id": template.department_id,
                   "doctor_id": template.doctor_id, "template_id": template.id, "date": day,
                   "period": template.period, "starts_at": starts, "ends_at": ends,
                   "registration_level": template.registration_level,
                   "registration_fee": fee.registration_fee, "consultation_fee": fee.consultation_fee,
                   "status": "published" if publish else "draft",
                   "release_at": domain.release_instant(day, rules), "created_at": now, "updated_at": now}
            key = (("doctor", template.doctor_id) if template.doctor_id is not None
                   else ("clinic", template.department_id), day, template.period)
            candidates.setdefault(key, (row, template))  # two templates, one clinic: the first wins

    doctor_rows = [row for (who, _, _), (row, _) in candidates.items() if who[0] == "doctor"]
    clinic_rows = [row for (who, _, _), (row, _) in candidates.items() if who[0] == "clinic"]
    created: list = []
    if doctor_rows:
        stmt = _insert_ignoring_duplicates(session, ["doctor_id", "date", "period"], "doctor_id IS NOT NULL")
        created += (await session.execute(stmt, doctor_rows)).all()
    if clinic_rows:
        stmt = _insert_ignoring_duplicates(session, ["department_id", "date", "period"], "doctor_id IS NULL")
        created += (await session.execute(stmt, clinic_rows)).all()

    slot_rows: list[dict] = []
    for schedule_id, doctor_id, department_id, day, period in created:
        who = ("doctor", doctor_id) if doctor_id is not None else ("clinic", department_id)
        _, template = candidates[(who, day, period)]
        bands = domain.bands_for(period, rules.slot_granularity, template.bands, rules.period_windows)
        plans = domain.plan_slots(bands, template.platform_capacity, template.onsite_capacity)
        slot_rows += _slot_rows(schedule_id, hospital_id, day, plans, rules.tz)
    await _write_slots(session, slot_rows)
    ids = sorted(row[0] for row in created)
    await record_audit(session, now, actor_id, hospital_id, "schedules.generate", "hospital", hospital_id,
                       {"from": from_date.isoformat(), "to": to_date.isoformat(), "publish": publish,
                        "created": len(ids)})
    return GenerateOutcome(created=len(ids), skipped=len(candidates) - len(ids), schedule_ids=ids)


# --- edits and publication --------------------------------------------------------------

def _schedule_windows(schedule: Schedule, rules: hospital_rules.Rules) -> domain.Windows:
    """The hospital's clinic hours, except that this schedule's own period keeps the times it
    was generated with (hours changed later apply to new schedules only)."""
    tz = rules.tz
    own = (schedule.starts_at.astimezone(tz).time(), schedule.ends_at.astimezone(tz).time())
    return {**rules.period_windows, schedule.period: own}


async def do_update_schedule(session: AsyncSession, schedule_id: int, *, now: dt.datetime,
                             hospital_id: int | None = None, platform_capacity: int | None = None,
                             onsite_capacity: int | None = None, bands: list | None = None,
                             actor_id: int | None = None, bookings: ScheduleBookings) -> Schedule:
    """New capacities and/or bands for one schedule: its slots are rebuilt and renumbered.

    Once people have booked it, only capacities may change, seat by seat and never below
    what is sold or held (`capacity.do_change_capacity`). Rebuilding happens only while
    nobody has booked it: the schedule row is locked first, so a booking that
    locks the schedule (or inserts against its slots) cannot slip in between the check and
    the rebuild. `bands=[]` means the default 30-minute bands.
    """
    schedule = await get_schedule_or_raise(session, schedule_id, hospital_id=hospital_id, for_update=True)
    if schedule.status == "suspended":
        raise ScheduleNotEditable()
    if await bookings.schedule_has_bookings(session, schedule.id):
        if bands is not None:
            raise ScheduleHasBookings()  # new bands would move booked visit numbers
        slots = await list_slots(session, schedule.id)
        totals = await capacity.do_change_capacity(
            session, schedule, slots, capacities={"platform": platform_capacity, "onsite": onsite_capacity}, now=now)
        await record_audit(session, now, actor_id, schedule.hospital_id, "schedule.capacity", "schedule",
                           schedule.id, {"platform_capacity": totals["platform"], "onsite_capacity": totals["onsite"]})
        return schedule
    rules = await hospital_rules.get_rules(session, schedule.hospital_id)
    slots = await list_slots(session, schedule.id)
    totals = {"platform": 0, "onsite": 0}
    for slot in slots:
        totals[slot.pool] += slot.capacity
    if bands is not None:
        if rules.slot_granularity != "time_band":
            raise BandsNotUsed(granularity=rules.slot_granularity)
        new_bands = domain.bands_for(schedule.period, "time_band", bands, _schedule_windows(schedule, rules))
    elif slots:
        new_bands = _current_bands(slots, rules.tz)
    else:
        new_bands = domain.bands_for(schedule.period, rules.slot_granularity,
                                     windows=_schedule_windows(schedule, rules))
    platform = totals["platform"] if platform_capacity is None else platform_capacity
    onsite = totals["onsite"] if onsite_capacity is None else onsite_capacity
    plans = domain.plan_slots(new_bands, platform, onsite)
    await session.execute(delete(Slot).where(Slot.schedule_id == schedule.id))
    await _write_slots(session, _slot_rows(schedule.id, schedule.hospital_id, schedule.date, plans, rules.tz))
    schedule.updated_at = now
    await record_audit(session, now, actor_id, schedule.hospital_id, "schedule.update", "schedule", schedule.id,
                       {"platform_capacity": platform, "onsite_capacity": onsite,
                        "bands": [b.as_strings() for b in new_bands]})
    await session.flush()
    return schedule


async def do_publish(session: AsyncSession, schedule_id: int, *, now: dt.datetime,
                     hospital_id: int | None = None, actor_id: int | None = None) -> Schedule:
    """draft -> published; the release instant is fixed from the hospital's rules of now."""
    schedule = await get_schedule_or_raise(session, schedule_id, hospital_id=hospital_id, for_update=True)
    if schedule.status != "draft":
        raise ScheduleNotDraft()
    rules = await hospital_rules.get_rules(session, schedule.hospital_id)
    schedule.status = "published"
    schedule.release_at = domain.release_instant(schedule.date, rules)
    schedule.updated_at = now
    await record_audit(session, now, actor_id, schedule.hospital_id, "schedule.publish", "schedule", schedule.id,
                       {"release_at": schedule.release_at.isoformat()})
    await session.flush()
    return schedule


async def record_audit(session: AsyncSession, now: dt.datetime, actor_id: int | None, hospital_id: int,
                       action: str, object_type: str, object_id: int, detail: dict) -> None:
    """One audit row in the same unit of work as the change (ids and numbers only)."""
    await audit.do_record(session, now=now, action=action, object_type=object_type, object_id=object_id,
                                hospital_id=hospital_id, staff_id=actor_id, detail=detail)


async def set_waitlist_waiting(session: AsyncSession, schedule_id: int, waiting: bool) -> None:
    """The waitlist's flag "someone waits for a seat" (see `Schedule.waitlist_waiting`); the
    caller (the waitlist) holds the schedule's exclusive lock and computed it from its entries."""
    await session.execute(update(Schedule).where(Schedule.id == schedule_id, Schedule.waitlist_waiting != waiting)
                          .values(waitlist_waiting=waiting))


async def mark_resumed(session: AsyncSession, schedule_id: int, *, now: dt.datetime) -> None:
    """Undo 停诊's change to the schedule (published again); the caller holds the schedule's
    exclusive lock (bookings the 停诊 revoked stay revoked: booking's part)."""
    await session.execute(
        update(Schedule).where(Schedule.id == schedule_id, Schedule.status == "suspended")
        .values(status="published", suspended_reason=None, updated_at=now)
    )


async def waitlist_flags(session: AsyncSession) -> dict[int, tuple[bool, str]]:
    """{schedule id: (waitlist_waiting, status)} of schedules whose flag is set, for the
    waitlist's invariant audit."""
    rows = await session.execute(select(Schedule.id, Schedule.waitlist_waiting, Schedule.status)
                                 .where(Schedule.waitlist_waiting.is_(True)))
    return {sid: (bool(flag), status) for sid, flag, status in rows}


async def statuses(session: AsyncSession, schedule_ids: Iterable[int]) -> dict[int, str]:
    ids = set(schedule_ids)
    if not ids:
        return {}
    return dict((await session.execute(select(Schedule.id, Schedule.status).where(Schedule.id.in_(ids)))).all())
