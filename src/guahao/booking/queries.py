"""Read-only questions other features ask about bookings.

Other features (payments, notifications) read bookings only through these functions, which
hand out small frozen snapshots instead of the ORM rows: nobody outside booking can change a
booking by accident, and booking stays free to reshape its tables. The few scans that must
stay one SQL statement (a LIMIT over rows joined with another feature's table) get a
SELECT or subquery from here and add their own conditions to it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Select, Subquery, and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking.context import SlotContext, load_slot_context
from guahao.booking.models import IN_PROGRESS_STATES, Booking, BookingEvent, Restriction
from guahao.core.errors import NotFound
from guahao.scheduling import service as scheduling_service


async def schedule_has_bookings(session: AsyncSession, schedule_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(Booking.schedule_id == schedule_id))))


async def patient_has_live_bookings(session: AsyncSession, patient_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(
        Booking.patient_id == patient_id, Booking.state.in_(IN_PROGRESS_STATES)))))


async def hospital_has_live_bookings(session: AsyncSession, hospital_id: int, *, now: dt.datetime) -> bool:
    """Live for a HIS mode switch (catalog.his_mode.HospitalBookings): a hold still running or
    a confirmed booking. The hospital's open schedules are locked first (the switch then waits
    for holds in flight), so the answer holds until the caller commits."""
    await scheduling_service.lock_open_schedules(session, hospital_id, now=now)
    running_hold = and_(Booking.state == "held", Booking.hold_expires_at > now)
    return bool(await session.scalar(select(exists().where(
        Booking.hospital_id == hospital_id, or_(running_hold, Booking.state == "confirmed")))))


# --- snapshots for payments and notifications ---------------------------------------------------

@dataclass(frozen=True)
class BookingFacts:
    """A booking as read at one moment; read it again after anything may have changed it."""

    id: int
    hospital_id: int
    department_id: int
    slot_id: int
    account_id: int
    patient_id: int
    person_id: int
    visit_date: dt.date
    visit_no: int | None
    booking_code: str
    state: str
    registration_fee: int
    consultation_fee: int
    amount_due: int
    hold_expires_at: dt.datetime | None
    his_visit_no: int | None = None  # the HIS's 就诊序号 once the write-back recorded it

    @classmethod
    def of(cls, row: Booking) -> BookingFacts:
        return cls(id=row.id, hospital_id=row.hospital_id, department_id=row.department_id, slot_id=row.slot_id,
                   account_id=row.account_id, patient_id=row.patient_id, person_id=row.person_id,
                   visit_date=row.visit_date, visit_no=row.visit_no, booking_code=row.booking_code,
                   state=row.state, registration_fee=row.registration_fee,
                   consultation_fee=row.consultation_fee, amount_due=row.amount_due,
                   hold_expires_at=row.hold_expires_at, his_visit_no=row.his_visit_no)


async def get(session: AsyncSession, booking_id: int, *, fresh: bool = False) -> BookingFacts | None:
    """The booking, or None. `fresh` reads the row again even when this session has it
    already (after a lock was taken, or a savepoint rolled back)."""
    row = await session.get(Booking, booking_id, populate_existing=fresh)
    return None if row is None else BookingFacts.of(row)


async def get_or_raise(session: AsyncSession, booking_id: int, *, fresh: bool = False) -> BookingFacts:
    facts = await get(session, booking_id, fresh=fresh)
    if facts is None:
        raise NotFound("booking")
    return facts


async def list_by_ids(session: AsyncSession, booking_ids: Iterable[int]) -> list[BookingFacts]:
    rows = await session.scalars(select(Booking).where(Booking.id.in_(list(booking_ids))))
    return [BookingFacts.of(row) for row in rows]


async def list_with_fee(session: AsyncSession, *, states: Iterable[str],
                        hospital_id: int | None = None) -> list[BookingFacts]:
    """Bookings in one of `states` that cost something (of one hospital, or all)."""
    query = select(Booking).where(Booking.state.in_(tuple(states)), Booking.amount_due > 0)
    if hospital_id is not None:
        query = query.where(Booking.hospital_id == hospital_id)
    return [BookingFacts.of(row) for row in await session.scalars(query)]


def holds_over_by(deadline: dt.datetime) -> Subquery:
    """Subquery (id, state, hold_expires_at) of the bookings that are no longer a hold, or
    whose hold ends by `deadline`: the payment reconciliation joins its open payments to it."""
    return (select(Booking.id, Booking.state, Booking.hold_expires_at)
            .where((Booking.state != "held") | (Booking.hold_expires_at <= deadline))
            .subquery("hold_over"))


def select_holds_ending(*, after: dt.datetime, until: dt.datetime) -> Select:
    """SELECT (id, hospital_id) of running holds whose deadline is in (after, until], by id."""
    return (select(Booking.id, Booking.hospital_id)
            .where(Booking.state == "held", Booking.hold_expires_at > after, Booking.hold_expires_at <= until)
            .order_by(Booking.id))


def select_confirmed_on(days: Mapping[dt.date, Iterable[int]]) -> Select:
    """SELECT (id, hospital_id) of confirmed bookings whose visit is on a day at one of the
    hospitals listed for that day, by id."""
    return (select(Booking.id, Booking.hospital_id)
            .where(Booking.state == "confirmed",
                   or_(*(and_(Booking.visit_date == day, Booking.hospital_id.in_(list(ids)))
                         for day, ids in days.items())))
            .order_by(Booking.id))


async def entered_current_state_from(session: AsyncSession, booking: BookingFacts) -> str | None:
    """The state the booking was in before its latest move into its current state."""
    return await session.scalar(
        select(BookingEvent.from_state)
        .where(BookingEvent.booking_id == booking.id, BookingEvent.to_state == booking.state)
        .order_by(BookingEvent.id.desc()).limit(1))


async def entered_current_state_at(session: AsyncSession, booking: BookingFacts) -> dt.datetime | None:
    """When the booking last moved into its current state."""
    return await session.scalar(
        select(BookingEvent.at)
        .where(BookingEvent.booking_id == booking.id, BookingEvent.to_state == booking.state)
        .order_by(BookingEvent.id.desc()).limit(1))


async def slot_context(session: AsyncSession, slot_id: int) -> SlotContext | None:
    """The slot's schedule, department, doctor, hospital and rules, read without a lock."""
    return await load_slot_context(session, slot_id)


@dataclass(frozen=True)
class RestrictionFacts:
    id: int
    person_id: int
    hospital_id: int
    starts_at: dt.datetime
    until: dt.datetime
    lifted_at: dt.datetime | None


async def get_restriction(session: AsyncSession, restriction_id: int) -> RestrictionFacts | None:
    row = await session.get(Restriction, restriction_id)
    if row is None:
        return None
    return RestrictionFacts(id=row.id, person_id=row.person_id, hospital_id=row.hospital_id,
                            starts_at=row.starts_at, until=row.until, lifted_at=row.lifted_at)


async def strike_bookers(session: AsyncSession, *, person_id: int, hospital_id: int, after: dt.datetime,
                         until: dt.datetime) -> list[tuple[int, int]]:
    """(account_id, patient_id) of the person's bookings at the hospital that counted as a
    strike in (after, until], latest strike first."""
    rows = await session.execute(
        select(Booking.account_id, Booking.patient_id)
        .where(Booking.person_id == person_id, Booking.hospital_id == hospital_id,
               Booking.strike_at > after, Booking.strike_at <= until)
        .order_by(Booking.strike_at.desc(), Booking.id.desc()))
    return [(account_id, patient_id) for account_id, patient_id in rows.all()]


async def person_has_active_on_schedule(session: AsyncSession, person_id: int, schedule_id: int,
                                        now: dt.datetime) -> bool:
    """Whether the person holds a running hold or a confirmed booking on the schedule (the
    waitlist refuses to queue them for a seat they already have)."""
    return bool(await session.scalar(select(exists().where(
        Booking.person_id == person_id, Booking.schedule_id == schedule_id, _active(now)))))


def _active(now: dt.datetime):
    return or_(Booking.state == "confirmed", and_(Booking.state == "held", or_(Booking.hold_expires_at.is_(None),
                                                                                Booking.hold_expires_at > now)))


async def persons_active_on_schedule(session: AsyncSession, schedule_id: int, now: dt.datetime) -> set[int]:
    """The persons who `person_has_active_on_schedule` (a schedule has as many as its seats)."""
    return set(await session.scalars(select(Booking.person_id).distinct().where(Booking.schedule_id == schedule_id,
                                                                                _active(now))))
