"""Public availability of a department or a doctor: days -> periods -> schedules -> slots.

Read-only, unauthenticated. Only published and suspended schedules appear (drafts never),
only the platform pool is shown, and every state is computed against the caller's `now`.
Answers are reused for at most 1 s in this process (`avail_cache`: emptied when a write to the
seats, schedules or catalogue commits here; other processes see a change at most 1 s late).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.core.db import Database
from guahao.scheduling import avail_cache, domain, service
from guahao.scheduling.models import Schedule, Slot
from guahao.scheduling.schemas import (
    Availability,
    AvailableDay,
    AvailablePeriod,
    AvailableSchedule,
    AvailableSlot,
    DoctorBrief,
)

MAX_DAYS = 31
REALTIME = "realtime"  # catalog's his_mode whose availability comes from the HIS
PUBLIC_STATUSES = ("published", "suspended")
T = TypeVar("T")


async def department_availability(session: AsyncSession, department_id: int, *, now: dt.datetime,
                                  from_date: dt.date | None = None, days: int | None = None,
                                  registration_level: str | None = None) -> Availability:
    """A department's schedules, its sub-departments' included (the tree has two levels)."""
    key = ("department", department_id, from_date, days, registration_level)
    hit = avail_cache.lookup(session, key, now)
    if hit is not None:
        return hit
    since = avail_cache.generation()
    # NotFound("department") unless it exists in an active hospital
    department = await catalog_service.get_department_or_raise(session, department_id)
    children = catalog_service.sub_department_ids(department_id)
    where = or_(Schedule.department_id == department_id, Schedule.department_id.in_(children))
    if registration_level is not None:  # the 普通号 / 专家号 entrance
        where = and_(where, Schedule.registration_level == registration_level)
    return _kept(session, key, now, await _availability(session, department.hospital_id, where, now, from_date, days),
                 since)


async def doctor_availability(session: AsyncSession, doctor_id: int, *, now: dt.datetime,
                              from_date: dt.date | None = None, days: int | None = None) -> Availability:
    key = ("doctor", doctor_id, from_date, days)
    hit = avail_cache.lookup(session, key, now)
    if hit is not None:
        return hit
    since = avail_cache.generation()
    # NotFound("doctor") unless it is active in an active hospital
    doctor = await catalog_service.get_doctor_or_raise(session, doctor_id)
    return _kept(session, key, now, await _availability(session, doctor.hospital_id, Schedule.doctor_id == doctor_id,
                                                        now, from_date, days), since)


async def department_shared(db: Database, department_id: int, *, now: dt.datetime, from_date: dt.date | None = None,
                            days: int | None = None, registration_level: str | None = None) -> Availability:
    """department_availability in a read of its own, computed once for concurrent misses
    (avail_cache.shared): the API's and the department page's way in."""
    async def make() -> Availability:
        async with db.read() as session:
            return await department_availability(session, department_id, now=now, from_date=from_date, days=days,
                                                 registration_level=registration_level)
    return await avail_cache.shared(db, ("department", department_id, from_date, days, registration_level), now,
                                    make, shareable=_shareable)


async def doctor_shared(db: Database, doctor_id: int, *, now: dt.datetime, from_date: dt.date | None = None,
                        days: int | None = None) -> Availability:
    """doctor_availability the same way."""
    async def make() -> Availability:
        async with db.read() as session:
            return await doctor_availability(session, doctor_id, now=now, from_date=from_date, days=days)
    return await avail_cache.shared(db, ("doctor", doctor_id, from_date, days), now, make, shareable=_shareable)


def _shareable(result: Availability) -> bool:
    return result.source != "his"  # a realtime answer gets the HIS's counts written into it per request


async def kept_like_answers(db: Database, key: tuple, now: dt.datetime, make: Callable[[], Awaitable[T]]) -> T:
    """What a public page shows next to an answer (a doctor's or a department's catalogue
    entry, fees, photos), reused under the answers' own rule (`avail_cache`): at most 1 s of
    the caller's clock, dropped when a write to those tables commits in this process. So the
    page is never staler than the API. `make` reads it afresh; an error is never kept."""
    key = ("alongside", *key)

    async def made() -> T:
        since = avail_cache.generation()
        value = await make()
        avail_cache.store(db, key, now, value, since=since)
        return value
    return await avail_cache.shared(db, key, now, made)


def forget_cached() -> None:
    """Drop every availability answer this process keeps (a new app, a change made where the
    cache cannot see it). Writes committed through a session in this process do it themselves."""
    avail_cache.invalidate()


# id(answer) -> (answer, its JSON): a cached answer is served to every poller of its second,
# and serialising the nested model was most of a poll's CPU (docs/BENCHMARKS.md, browse storm);
# the answer is kept in the value so its id cannot be reused while the entry lives
_RENDERED: dict[int, tuple[Availability, bytes]] = {}


def rendered(result: Availability) -> bytes:
    """The answer as the API sends it (the response model's JSON), serialised once per cached
    answer; an answer with the HIS's counts (never cached, changed in place) every time."""
    if result.source in ("his", "his_unavailable"):
        return result.model_dump_json().encode()
    hit = _RENDERED.get(id(result))
    if hit is not None and hit[0] is result:
        return hit[1]
    if len(_RENDERED) >= avail_cache.MAX_ENTRIES:
        _RENDERED.clear()
    body = result.model_dump_json().encode()
    _RENDERED[id(result)] = (result, body)
    return body


def _kept(session: AsyncSession, key: tuple, now: dt.datetime, result: Availability, since: int) -> Availability:
    """Cache a local or synced hospital's answer until the next instant a state changes by time
    alone (a release, a booking window closing); a realtime hospital's counts are the HIS's."""
    if result.source != "his":
        changes = [t for day in result.days for period in day.periods for s in period.schedules
                   for t in (s.release_at, s.closes_at) if t is not None]
        avail_cache.store(session, key, now, result, changes_at=changes, since=since)
    return result


def window(now: dt.datetime, rules: hospital_rules.Rules, from_date: dt.date | None,
           days: int | None) -> tuple[dt.date, dt.date]:
    """Default: today in the hospital's zone through release_days_ahead days later, at most 31 days."""
    start = from_date or domain.local_today(now, rules.tz)
    count = min(days or rules.release_days_ahead + 1, MAX_DAYS)
    return start, start + dt.timedelta(days=count - 1)


async def _availability(session: AsyncSession, hospital_id: int, where, now: dt.datetime,
                        from_date: dt.date | None, days: int | None) -> Availability:
    rules = await hospital_rules.get_rules(session, hospital_id)
    first, last = window(now, rules, from_date, days)
    schedules = list((await session.scalars(
        select(Schedule).where(where, Schedule.hospital_id == hospital_id, Schedule.date >= first,
                               Schedule.date <= last, Schedule.status.in_(PUBLIC_STATUSES))
        .order_by(Schedule.date, Schedule.starts_at, Schedule.doctor_id.is_(None), Schedule.id))).all())
    ids = [s.id for s in schedules]
    slots_by_schedule: dict[int, list[Slot]] = {i: [] for i in ids}
    if ids:
        for slot in (await session.scalars(
                select(Slot).where(Slot.schedule_id.in_(ids), Slot.pool == "platform", Slot.capacity > 0)
                .order_by(Slot.starts_at))).all():
            slots_by_schedule[slot.schedule_id].append(slot)
    counts = await service.live_counts(session, [s.id for v in slots_by_schedule.values() for s in v], now)
    doctors = await catalog_service.doctors_by_id(session, (s.doctor_id for s in schedules if s.doctor_id is not None))

    by_day: dict[dt.date, dict[str, list[AvailableSchedule]]] = {}
    for schedule in schedules:
        item = _schedule_view(schedule, slots_by_schedule[schedule.id], counts, doctors, rules, now)
        by_day.setdefault(schedule.date, {}).setdefault(schedule.period, []).append(item)
    result_days = []
    for offset in range((last - first).days + 1):
        day = first + dt.timedelta(days=offset)
        periods = by_day.get(day, {})
        result_days.append(AvailableDay(date=day, weekday=day.weekday(), periods=[
            AvailablePeriod(period=p, schedules=periods[p]) for p in domain.PERIOD_ORDER if p in periods]))
    result = Availability(hospital_id=hospital_id, timezone=str(rules.tz), from_date=first, to_date=last,
                          days=result_days)
    if await catalog_service.his_mode_of(session, hospital_id) == REALTIME:
        # the counts are the HIS's: `with_his` asks it once the read is over
        result.source = "his"
        result._his_bands = {s.id: s.his_band_id for v in slots_by_schedule.values() for s in v
                             if s.his_band_id is not None}
    return result


@dataclass(frozen=True)
class HisCounts:
    by_band: dict[str, int]  # HIS band id -> numbers left in our pool there
    as_of: dt.datetime  # when the HIS said so


class HisAvailability(Protocol):
    """The HIS of a realtime hospital, as availability needs it (implemented by the HIS feature)."""

    async def remaining(self, db: Database, *, hospital_id: int, first: dt.date, last: dt.date,
                        now: dt.datetime) -> HisCounts | None:
        """Remaining per band (cached briefly), or None when the HIS cannot say now."""


async def with_his(db: Database, result: Availability, his: HisAvailability | None, *,
                   now: dt.datetime) -> Availability:
    """For a realtime hospital, take the remaining counts from its HIS. Called after the read
    transaction ended (no network call inside one). A slot shows the smaller of the HIS's
    count and our free seats (a realtime hold needs both). The HIS down: `his_unavailable`,
    our own counts, never an error. Local and synced hospitals pass through untouched."""
    if result.source != "his":
        return result
    counts = await his.remaining(db, hospital_id=result.hospital_id, first=result.from_date, last=result.to_date,
                                 now=now) if his is not None else None
    if counts is None:
        result.source = "his_unavailable"
        return result
    result.as_of = counts.as_of.astimezone(ZoneInfo(result.timezone))  # every answer: the hospital's clock
    for day in result.days:
        for period in day.periods:
            for schedule in period.schedules:
                for slot in schedule.slots:
                    band = result._his_bands.get(slot.slot_id)
                    slot.remaining = min(slot.remaining, counts.by_band.get(band, 0)) if band else 0
                    if slot.state in ("bookable", "full"):
                        slot.state = "bookable" if slot.remaining > 0 else "full"
                if schedule.slots:
                    schedule.remaining = sum(s.remaining for s in schedule.slots)
                    schedule.state = domain.schedule_state([s.state for s in schedule.slots])
    return result


def _schedule_view(schedule: Schedule, slots: list[Slot], counts: dict[int, int], doctors: dict[int, Any],
                   rules: hospital_rules.Rules, now: dt.datetime) -> AvailableSchedule:
    tz = rules.tz
    closes = service.closes_at(schedule, rules)
    views = []
    for slot in slots:
        remaining = max(0, slot.capacity - counts.get(slot.id, 0))
        if schedule.waitlist_waiting:
            remaining = 0  # a freed seat is the waitlist head's (seats.claim refuses it to others)
        state = domain.slot_state(now, schedule.status, schedule.release_at, closes, remaining)
        views.append(AvailableSlot(
            slot_id=slot.id, starts_at=slot.starts_at.astimezone(tz), ends_at=slot.ends_at.astimezone(tz),
            capacity=slot.capacity, remaining=remaining, state=state,
            release_at=schedule.release_at.astimezone(tz) if state == "not_yet_released" else None))
    if views:
        state = domain.schedule_state([v.state for v in views])
    else:  # no platform seats at all: the schedule's own state with nothing remaining
        state = domain.slot_state(now, schedule.status, schedule.release_at, closes, 0)
    doctor = doctors.get(schedule.doctor_id) if schedule.doctor_id is not None else None
    return AvailableSchedule(
        schedule_id=schedule.id, department_id=schedule.department_id,
        doctor=DoctorBrief(id=doctor.id, name=doctor.name, title=doctor.title) if doctor is not None else None,
        registration_level=schedule.registration_level, registration_fee=schedule.registration_fee,
        consultation_fee=schedule.consultation_fee,
        total_fee=schedule.registration_fee + schedule.consultation_fee, state=state,
        release_at=schedule.release_at.astimezone(tz) if state == "not_yet_released" else None,
        closes_at=closes.astimezone(tz), remaining=sum(v.remaining for v in views),
        release_mode=schedule.release_mode, slots=views)


@dataclass(frozen=True)
class ReleasedSchedule:
    """A released schedule as the public sees it (the FHIR facade and its bulk files): the same
    view as availability's (`_schedule_view`, so the remaining counts cannot disagree) plus the
    schedule's own window, which the availability tree carries in its day and period."""

    hospital_id: int
    date: dt.date
    period: str
    starts_at: dt.datetime  # in the hospital's zone
    ends_at: dt.datetime
    release_at: dt.datetime
    view: AvailableSchedule
    his_bands: dict[int, str] | None = None  # realtime hospitals: slot id -> HIS band (see with_his_released)


def _released_where(*, now: dt.datetime, first: dt.date, last: dt.date, hospital_id: int | None = None,
                    department_id: int | None = None, doctor_id: int | None = None,
                    schedule_ids: list[int] | None = None, registration_level: str | None = None,
                    status: str | None = None, exclude_hospitals: Any = None) -> list:
    where = [Schedule.date >= first, Schedule.date <= last, Schedule.status.in_(PUBLIC_STATUSES),
             Schedule.release_at <= now]
    if hospital_id is not None:
        where.append(Schedule.hospital_id == hospital_id)
    if department_id is not None:
        where.append(or_(Schedule.department_id == department_id,
                         Schedule.department_id.in_(catalog_service.sub_department_ids(department_id))))
    if doctor_id is not None:
        where.append(Schedule.doctor_id == doctor_id)
    if schedule_ids is not None:
        where.append(Schedule.id.in_(schedule_ids))
    if registration_level is not None:
        where.append(Schedule.registration_level == registration_level)
    if status is not None:
        where.append(Schedule.status == status)
    if exclude_hospitals is not None:  # ids, or a subquery of them (catalog's inactive hospitals)
        where.append(Schedule.hospital_id.not_in(exclude_hospitals))
    return where


async def count_released_schedules(session: AsyncSession, **filters: Any) -> int:
    """How many schedules `released_schedules` gives with the same filters, without a page."""
    return await session.scalar(select(func.count()).select_from(Schedule).where(*_released_where(**filters))) or 0


async def released_schedules(session: AsyncSession, *, now: dt.datetime, first: dt.date, last: dt.date,
                             hospital_id: int | None = None, department_id: int | None = None,
                             doctor_id: int | None = None, schedule_ids: list[int] | None = None,
                             registration_level: str | None = None, status: str | None = None,
                             exclude_hospitals: Any = None, limit: int | None = None,
                             offset: int = 0) -> list[ReleasedSchedule]:
    """Published or suspended schedules whose numbers are released (`release_at <= now`), dated
    `first`..`last`, in date order (then start, then id: a stable order for paging). Never
    drafts, never unreleased ones. `status` narrows to published or suspended; the caller
    leaves out inactive hospitals with `exclude_hospitals` (`catalog.service.inactive_hospital_ids()`),
    in the same statement; `limit` / `offset` page in SQL
    (`count_released_schedules` is the total)."""
    where = _released_where(now=now, first=first, last=last, hospital_id=hospital_id, department_id=department_id,
                            doctor_id=doctor_id, schedule_ids=schedule_ids, registration_level=registration_level,
                            status=status, exclude_hospitals=exclude_hospitals)
    query = select(Schedule).where(*where).order_by(Schedule.date, Schedule.starts_at, Schedule.id)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    schedules = list((await session.scalars(query)).all())
    ids = [s.id for s in schedules]
    slots_by_schedule: dict[int, list[Slot]] = {i: [] for i in ids}
    if ids:
        for slot in (await session.scalars(
                select(Slot).where(Slot.schedule_id.in_(ids), Slot.pool == "platform", Slot.capacity > 0)
                .order_by(Slot.starts_at, Slot.id))).all():
            slots_by_schedule[slot.schedule_id].append(slot)
    counts = await service.live_counts(session, [s.id for v in slots_by_schedule.values() for s in v], now)
    doctors = await catalog_service.doctors_by_id(session, (s.doctor_id for s in schedules if s.doctor_id is not None))
    rules_of: dict[int, hospital_rules.Rules] = {}
    realtime: dict[int, bool] = {}
    result = []
    for schedule in schedules:
        if schedule.hospital_id not in rules_of:
            rules_of[schedule.hospital_id] = await hospital_rules.get_rules(session, schedule.hospital_id)
            realtime[schedule.hospital_id] = await catalog_service.his_mode_of(session, schedule.hospital_id) == REALTIME
        rules = rules_of[schedule.hospital_id]
        tz = rules.tz
        slots = slots_by_schedule[schedule.id]
        result.append(ReleasedSchedule(
            hospital_id=schedule.hospital_id, date=schedule.date, period=schedule.period,
            starts_at=schedule.starts_at.astimezone(tz), ends_at=schedule.ends_at.astimezone(tz),
            release_at=schedule.release_at.astimezone(tz),
            view=_schedule_view(schedule, slots, counts, doctors, rules, now),
            his_bands={s.id: s.his_band_id for s in slots if s.his_band_id is not None}
            if realtime[schedule.hospital_id] else None))
    return result


async def with_his_released(db: Database, items: list[ReleasedSchedule], his: HisAvailability | None, *,
                            now: dt.datetime) -> list[ReleasedSchedule]:
    """`with_his` for `released_schedules`: at a realtime hospital a slot shows the smaller of
    the HIS's count and our free seats. Called after the read transaction (no network call
    inside one). The HIS down or no port: our own counts, as the API's `his_unavailable` shows
    them (a hold is then refused with his_unavailable, nothing is oversold)."""
    by_hospital: dict[int, list[ReleasedSchedule]] = {}
    for item in items:
        if item.his_bands is not None:
            by_hospital.setdefault(item.hospital_id, []).append(item)
    for hospital_id, group in by_hospital.items():
        counts = await his.remaining(db, hospital_id=hospital_id, first=min(i.date for i in group),
                                     last=max(i.date for i in group), now=now) if his is not None else None
        if counts is None:
            continue
        for item in group:
            schedule = item.view
            for slot in schedule.slots:
                band = item.his_bands.get(slot.slot_id)
                slot.remaining = min(slot.remaining, counts.by_band.get(band, 0)) if band else 0
                if slot.state in ("bookable", "full"):
                    slot.state = "bookable" if slot.remaining > 0 else "full"
            if schedule.slots:
                schedule.remaining = sum(s.remaining for s in schedule.slots)
                schedule.state = domain.schedule_state([s.state for s in schedule.slots])
    return items
