"""停诊 and the 候补 queue: the queue pauses while its schedule is suspended and resumes in the
same order when the 停诊 is lifted; the patients waiting are told both times by SMS.

Booking writes `schedule.suspended` with every 停诊 and `schedule.resumed` when one is lifted
(scheduling.seats); these run under the schedule's exclusive lock, like the promoter:
- paused: the promoter's bookkeeping first (an offer the 停诊 revoked goes back to waiting at
  its place, and the "someone waits" flag follows), then one notice to every waiting entry,
  keyed per entry and 停诊. A 停诊 already lifted when this runs is no news: nobody is told.
- resumed: the promoter offers the freed seats to the queue in order (those entries get the
  offer SMS, which says more); every other waiting entry told of this pause is told the queue
  runs again, once (keyed per entry and the 停诊 it was told of). A schedule suspended again
  meanwhile tells nobody: its own pause notice follows.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.outbox import service as outbox
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import entries, promote
from guahao.waitlist.models import WaitlistEntry

PAUSED = "notify.waitlist_paused"
RESUMED = "notify.waitlist_resumed"


async def _waiting(session: AsyncSession, schedule_id: int) -> list[WaitlistEntry]:
    return list(await session.scalars(
        select(WaitlistEntry).where(WaitlistEntry.schedule_id == schedule_id, WaitlistEntry.state == "waiting")
        .order_by(WaitlistEntry.position).execution_options(populate_existing=True)))


async def do_pause(session: AsyncSession, *, schedule_id: int, suspension: int, now: dt.datetime) -> list[int]:
    """The queue of a suspended schedule pauses; returns the entries told (in queue order)."""
    schedule = await scheduling_service.lock_schedule(session, schedule_id, exclusive=True)
    if schedule is None:
        return []
    await promote.promote_locked(session, schedule, now)
    if schedule.status != "suspended":
        return []
    told = []
    for entry in await _waiting(session, schedule_id):
        await entries.notify(session, PAUSED, entry, now=now, key_extra=f":{suspension}", suspension=suspension)
        told.append(entry.id)
    return told


async def _last_pause(session: AsyncSession, entry_id: int) -> int | None:
    """The latest 停诊 this entry was told of, unless it was already told the queue resumed."""
    paused = [int(k.rsplit(":", 1)[1]) for k in await outbox.keys_starting(session, f"{PAUSED}:{entry_id}:")]
    if not paused:
        return None
    last = max(paused)
    if f"{RESUMED}:{entry_id}:{last}" in await outbox.keys_starting(session, f"{RESUMED}:{entry_id}:"):
        return None
    return last


async def do_resume(session: AsyncSession, *, schedule_id: int, now: dt.datetime) -> list[int]:
    """The queue of a schedule whose 停诊 was lifted runs again: freed seats are offered in
    order, and the entries still waiting that were told of the pause are told it resumed.
    Returns the entries told."""
    schedule = await scheduling_service.lock_schedule(session, schedule_id, exclusive=True)
    if schedule is None:
        return []
    await promote.promote_locked(session, schedule, now)
    if schedule.status != "published":
        return []
    told = []
    for entry in await _waiting(session, schedule_id):
        suspension = await _last_pause(session, entry.id)
        if suspension is not None:
            await entries.notify(session, RESUMED, entry, now=now, key_extra=f":{suspension}", suspension=suspension)
            told.append(entry.id)
    return told
