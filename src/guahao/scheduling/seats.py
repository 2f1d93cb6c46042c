"""Seats (visit-number positions) of slots: creation, claim, release and live counts.

Concurrency story. A hold claims the lowest free seat of a slot with
`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL: concurrent claimers never wait on each
other's seats, each locks a different row, and the row lock lasts only until the claim
transaction commits (the claim is the last step before commit). On SQLite every write
transaction is already exclusive (BEGIN IMMEDIATE), so the same statement without the lock
clause is enough. A seat is free when it has no booking or its hold deadline has passed; the
claimer that takes over a lapsed seat also marks the lapsed booking expired, in the same
transaction. Lock order everywhere (DESIGN.md section 5, docs/ARCHITECTURE.md): schedule,
person, seats, booking, payment.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.outbox import service as outbox
from guahao.scheduling.models import Schedule, Slot, SlotPosition


def _free(now: dt.datetime):
    return or_(SlotPosition.booking_id.is_(None), SlotPosition.hold_expires_at <= now)


def _taken(now: dt.datetime):
    return and_(SlotPosition.booking_id.is_not(None),
                or_(SlotPosition.hold_expires_at.is_(None), SlotPosition.hold_expires_at > now))


def taken(now: dt.datetime):
    """SQL condition: the seat is sold or held right now (for callers' own seat queries)."""
    return _taken(now)


async def do_create_positions(session: AsyncSession, slots: Iterable) -> None:
    """One seat row per visit number of each slot (both pools; only `platform` is sold here).

    `slots` are Slot rows or dicts with the same keys."""
    def get(s, key):
        return s[key] if isinstance(s, dict) else getattr(s, key)

    rows = [
        {"hospital_id": get(s, "hospital_id"), "schedule_id": get(s, "schedule_id"), "slot_id": get(s, "id"),
         "visit_no": get(s, "first_visit_no") + i}
        for s in slots for i in range(get(s, "capacity"))
    ]
    if rows:
        await session.execute(SlotPosition.__table__.insert(), rows)


async def do_delete_positions(session: AsyncSession, slot_ids: list[int]) -> None:
    if slot_ids:
        await session.execute(delete(SlotPosition).where(SlotPosition.slot_id.in_(slot_ids)))


def _nobody_waiting():
    """SQL condition: nobody is on the seat's schedule's waitlist (候补). The flag is written
    by the waitlist under the schedule's exclusive lock, and an open hold holds that row
    shared, so the value this statement reads is the committed truth, not a stale copy."""
    return ~exists().where(Schedule.id == SlotPosition.schedule_id, Schedule.waitlist_waiting.is_(True))


async def claim(session: AsyncSession, *, slot_id: int, booking_id: int, hold_until: dt.datetime | None,
                now: dt.datetime, respect_waitlist: bool = False) -> tuple[int, int | None] | None:
    """Give the lowest free seat of `slot_id` to `booking_id`.

    Returns (visit_no, lapsed_booking_id) or None when the slot is full. `lapsed_booking_id`
    is the expired hold this seat was taken from; the caller marks it expired.
    `hold_until` None means the booking is confirmed at once (free registration).
    `respect_waitlist`: an open (patient's own) hold finds no seat while anyone waits on the
    schedule's waitlist: a freed seat is the queue head's, never a refresher's. The
    waitlist's own offers claim without it.
    """
    conditions = [SlotPosition.slot_id == slot_id, _free(now)]
    if respect_waitlist:
        conditions.append(_nobody_waiting())
    pick = (select(SlotPosition.id, SlotPosition.booking_id.label("lapsed"))
            .where(*conditions)
            .order_by(SlotPosition.visit_no).limit(1)
            .with_for_update(skip_locked=True))
    if session.bind.dialect.name == "postgresql":
        # one round trip: pick and take the seat in a single statement (the row lock is
        # taken by the CTE's FOR UPDATE SKIP LOCKED and held to commit)
        chosen = pick.cte("chosen")
        row = (await session.execute(
            update(SlotPosition).where(SlotPosition.id == chosen.c.id)
            .values(booking_id=booking_id, hold_expires_at=hold_until)
            .returning(SlotPosition.visit_no, chosen.c.lapsed)
        )).first()
        return None if row is None else (row.visit_no, row.lapsed)
    # SQLite: the write transaction is exclusive already; two local statements
    row = (await session.execute(pick.add_columns(SlotPosition.visit_no))).first()
    if row is None:
        return None
    await session.execute(
        update(SlotPosition).where(SlotPosition.id == row.id)
        .values(booking_id=booking_id, hold_expires_at=hold_until)
    )
    return row.visit_no, row.lapsed


async def make_permanent(session: AsyncSession, booking_id: int, now: dt.datetime) -> bool:
    """Confirm a held seat: only while its hold is still running. False = the hold lapsed."""
    result = await session.execute(
        update(SlotPosition)
        .where(SlotPosition.booking_id == booking_id, SlotPosition.hold_expires_at > now)
        .values(hold_expires_at=None)
    )
    return result.rowcount == 1


async def release(session: AsyncSession, booking_ids: list[int]) -> None:
    """Free the seats of bookings that left the live states."""
    if booking_ids:
        await session.execute(
            update(SlotPosition).where(SlotPosition.booking_id.in_(booking_ids))
            .values(booking_id=None, hold_expires_at=None)
        )


async def lock_seats_of(session: AsyncSession, booking_ids: list[int]) -> None:
    """Take the seat row locks of these bookings first, to keep the lock order."""
    if booking_ids:
        await session.execute(
            select(SlotPosition.id).where(SlotPosition.booking_id.in_(booking_ids))
            .order_by(SlotPosition.id).with_for_update()
        )


async def taken_counts(session: AsyncSession, slot_ids: list[int], now: dt.datetime) -> dict[int, int]:
    """Seats in use per slot right now: confirmed ones and holds that have not lapsed."""
    if not slot_ids:
        return {}
    rows = await session.execute(
        select(SlotPosition.slot_id, func.count())
        .where(SlotPosition.slot_id.in_(slot_ids), _taken(now))
        .group_by(SlotPosition.slot_id)
    )
    return {slot_id: count for slot_id, count in rows}


async def seat_facts(session: AsyncSession, now: dt.datetime) -> list[tuple[int, int, int, int | None]]:
    """Every seat as (schedule id, slot id, visit number, occupying booking or None), for the
    invariant audit (ops/invariants.py): a lapsed hold's seat counts as free."""
    rows = await session.execute(select(SlotPosition.schedule_id, SlotPosition.slot_id, SlotPosition.visit_no,
                                        SlotPosition.booking_id, SlotPosition.hold_expires_at))
    return [(sch, slot, no, None if booking is None or (until is not None and until <= now) else booking)
            for sch, slot, no, booking, until in rows]


async def first_free_platform_slot(session: AsyncSession, schedule_id: int, now: dt.datetime) -> int | None:
    """The platform slot holding the schedule's lowest free seat (None: no free seat): where
    the waitlist's next offer goes."""
    return await session.scalar(
        select(SlotPosition.slot_id).join(Slot, Slot.id == SlotPosition.slot_id)
        .where(SlotPosition.schedule_id == schedule_id, Slot.pool == "platform", _free(now))
        .order_by(SlotPosition.visit_no).limit(1))


async def free_platform_seats(session: AsyncSession, schedule_id: int, now: dt.datetime) -> int:
    """Free seats of the schedule's platform pool right now (lapsed holds count as free)."""
    return await session.scalar(
        select(func.count()).select_from(SlotPosition).join(Slot, Slot.id == SlotPosition.slot_id)
        .where(SlotPosition.schedule_id == schedule_id, Slot.pool == "platform", _free(now))) or 0


async def hold_deadlines(session: AsyncSession, schedule_id: int, now: dt.datetime) -> list[dt.datetime]:
    """The distinct deadlines of the running holds on the schedule's seats: the instants at
    which a seat frees without any transaction (lazy expiry)."""
    rows = await session.scalars(
        select(SlotPosition.hold_expires_at).where(SlotPosition.schedule_id == schedule_id,
                                                   SlotPosition.booking_id.is_not(None),
                                                   SlotPosition.hold_expires_at > now)
        .distinct())
    return sorted(rows)


FREED_TOPIC = "seats.freed"


async def announce_freed(session: AsyncSession, *, schedule_id: int, hospital_id: int, key: str,
                         now: dt.datetime) -> None:
    """Seats of a schedule with a 候补 queue came free (a cancellation, more capacity, a 停诊
    lifted): the waitlist consumes this topic and offers them to its head. Consequences flow
    up through the outbox (DESIGN.md 7a): scheduling and booking never import the waitlist.
    Callers write it when the schedule's `waitlist_waiting` flag is set (lifting a 停诊: always,
    since an offer it revoked may be the queue's only live entry); `key` makes each cause
    count once."""
    await outbox.enqueue(session, topic=FREED_TOPIC, dedupe_key=f"{FREED_TOPIC}:{key}",
                         payload={"schedule_id": schedule_id}, now=now, hospital_id=hospital_id)


SUSPENDED_TOPIC = "schedule.suspended"
RESUMED_TOPIC = "schedule.resumed"


def suspension_stamp(since: dt.datetime) -> int:
    """A 停诊's number for message keys: its instant in epoch milliseconds."""
    return int(since.timestamp() * 1000)


async def announce_suspended(session: AsyncSession, *, schedule_id: int, hospital_id: int,
                             now: dt.datetime) -> None:
    """A 停诊 began at `now` (written by every 停诊, whoever caused it): the waitlist pauses the
    schedule's queue, puts offers the 停诊 revoked back at their places and tells everyone
    waiting, once per entry and 停诊."""
    stamp = suspension_stamp(now)
    await outbox.enqueue(session, topic=SUSPENDED_TOPIC, dedupe_key=f"{SUSPENDED_TOPIC}:{schedule_id}:{stamp}",
                         payload={"schedule_id": schedule_id, "suspension": stamp}, now=now,
                         hospital_id=hospital_id)


async def announce_resumed(session: AsyncSession, *, schedule_id: int, hospital_id: int,
                           now: dt.datetime) -> None:
    """A 停诊 was lifted at `now`: the waitlist offers the seats it freed to its queue, in order
    (its promoter, as for `seats.freed`), and tells the entries it told of the pause."""
    await outbox.enqueue(session, topic=RESUMED_TOPIC,
                         dedupe_key=f"{RESUMED_TOPIC}:{schedule_id}:{suspension_stamp(now)}",
                         payload={"schedule_id": schedule_id}, now=now, hospital_id=hospital_id)
