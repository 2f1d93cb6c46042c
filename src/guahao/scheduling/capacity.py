"""Capacity changes of a schedule that people have already booked.

Rebuilding the slots (`service.do_update_schedule` on an unbooked schedule) would renumber
seats that bookings hold, so a booked schedule changes capacity seat by seat instead:
- more seats: new seat rows, spread over the pool's bands (the earlier bands take the
  remainder) and numbered after the schedule's last visit number, so nobody's number moves;
- fewer seats: only free seats are removed (the highest visit numbers first); a cut below
  what is sold or held is refused (`CapacityBelowSold`) and nothing changes.

Concurrency: the caller holds the schedule row exclusively (FOR UPDATE). Holds,
confirmations and cancellations take it shared, so no seat is claimed or freed while the
free seats are counted and removed; on SQLite writers are serial anyway.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.scheduling import domain, seats
from guahao.scheduling.errors import CapacityBelowSold
from guahao.scheduling.models import Schedule, Slot, SlotPosition

POOL_ZH = {"platform": "线上", "onsite": "现场"}


async def _grow(session: AsyncSession, schedule: Schedule, slots: list[Slot], extra: int) -> None:
    last = await session.scalar(select(func.max(SlotPosition.visit_no))
                                .where(SlotPosition.schedule_id == schedule.id)) or 0
    rows = []
    for slot, more in zip(slots, domain.split_capacity(extra, len(slots)), strict=True):
        for _ in range(more):
            last += 1
            rows.append({"hospital_id": schedule.hospital_id, "schedule_id": schedule.id, "slot_id": slot.id,
                         "visit_no": last})
        slot.capacity += more
    if rows:
        await session.execute(SlotPosition.__table__.insert(), rows)


async def _shrink(session: AsyncSession, pool: str, slots: list[Slot], cut: int, requested: int,
                  current: int) -> None:
    free = list((await session.execute(
        select(SlotPosition.id, SlotPosition.slot_id)
        .where(SlotPosition.slot_id.in_([s.id for s in slots]), SlotPosition.booking_id.is_(None))
        .order_by(SlotPosition.visit_no.desc()).limit(cut))).all())
    if len(free) < cut:
        taken = current - await session.scalar(
            select(func.count()).select_from(SlotPosition)
            .where(SlotPosition.slot_id.in_([s.id for s in slots]), SlotPosition.booking_id.is_(None)))
        raise CapacityBelowSold(pool=pool, pool_zh=POOL_ZH.get(pool, pool), taken=taken, requested=requested)
    await session.execute(delete(SlotPosition).where(SlotPosition.id.in_([row.id for row in free])))
    removed: dict[int, int] = {}
    for row in free:
        removed[row.slot_id] = removed.get(row.slot_id, 0) + 1
    for slot in slots:
        slot.capacity -= removed.get(slot.id, 0)


async def do_change_capacity(session: AsyncSession, schedule: Schedule, slots: list[Slot], *,
                             capacities: dict[str, int | None], now: dt.datetime) -> dict[str, int]:
    """Set each pool's total capacity (None: unchanged) on a booked schedule, seat by seat.
    Returns the new totals. The caller holds the schedule's row lock and writes the audit row."""
    totals = {}
    grew = False
    for pool in ("platform", "onsite"):
        pool_slots = sorted((s for s in slots if s.pool == pool), key=lambda s: s.starts_at)
        current = sum(s.capacity for s in pool_slots)
        target = capacities.get(pool)
        totals[pool] = current if target is None else target
        if target is None or target == current or not pool_slots:
            continue  # every schedule has slots of both pools (plan_slots), capacity 0 included
        if target > current:
            await _grow(session, schedule, pool_slots, target - current)
            grew = grew or pool == "platform"
        else:
            await _shrink(session, pool, pool_slots, current - target, target, current)
    schedule.updated_at = now
    await session.flush()
    if schedule.waitlist_waiting and grew:  # the new seats belong to the 候补 queue first
        await seats.announce_freed(session, schedule_id=schedule.id, hospital_id=schedule.hospital_id,
                                   key=f"capacity:{schedule.id}:{now.isoformat()}", now=now)
    return totals
