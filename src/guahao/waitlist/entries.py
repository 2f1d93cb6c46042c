"""The waitlist entry's state machine: one table, one function that applies it, and the
helpers every action uses under the schedule's exclusive lock (the queue flag, positions).

waiting ─offer→ offered ─pay→ fulfilled
   │               ├─lapse→ lapsed      (unpaid at the deadline; a strike where the rule says so)
   │               ├─decline→ left      (the patient left the queue or cancelled the offer)
   │               └─revoke→ waiting    (停诊 revoked the offer: back at its old position)
   ├─leave→ left
   ├─skip→ skipped  (ineligible when its turn came: reason kept, patient told)
   └─close→ closed  (the cutoff passed, or the schedule ended; patient told)
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.outbox import service as outbox
from guahao.scheduling import service as scheduling_service
from guahao.waitlist.errors import EntryEnded
from guahao.waitlist.models import WaitlistEntry

TRANSITIONS: dict[tuple[str, str], str] = {
    ("waiting", "offer"): "offered",
    ("waiting", "leave"): "left",
    ("waiting", "skip"): "skipped",
    ("waiting", "close"): "closed",
    ("offered", "pay"): "fulfilled",
    ("offered", "lapse"): "lapsed",
    ("offered", "decline"): "left",
    ("offered", "revoke"): "waiting",
}
FHIR_STATUS = "waitlist"  # DESIGN.md section 3: waitlist entries map to Appointment.status=waitlist


async def apply(session: AsyncSession, entry: WaitlistEntry, event: str, *, now: dt.datetime, **changes) -> None:
    """Move `entry` along `event`, guarded by the state the caller saw (a concurrent change
    makes the UPDATE match nothing, and that is an error here: every caller holds the
    schedule's exclusive lock, so it cannot happen unless the lock order was broken)."""
    to_state = TRANSITIONS.get((entry.state, event))
    if to_state is None:
        raise EntryEnded()
    values = {"state": to_state, "updated_at": now, **changes}
    result = await session.execute(
        update(WaitlistEntry).where(WaitlistEntry.id == entry.id, WaitlistEntry.state == entry.state)
        .values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise RuntimeError(f"waitlist entry {entry.id} changed under the schedule lock")
    for key, value in values.items():
        setattr(entry, key, value)


async def sync_flag(session: AsyncSession, schedule_id: int) -> bool:
    """Recompute the schedule's "someone waits" flag from the entries (the caller holds the
    schedule exclusively): while it is set, open holds find no seat."""
    waiting = bool(await session.scalar(select(exists().where(WaitlistEntry.schedule_id == schedule_id,
                                                              WaitlistEntry.state == "waiting"))))
    await scheduling_service.set_waitlist_waiting(session, schedule_id, waiting)
    return waiting


async def next_position(session: AsyncSession, schedule_id: int) -> int:
    last = await session.scalar(select(func.max(WaitlistEntry.position)).where(WaitlistEntry.schedule_id == schedule_id))
    return (last or 0) + 1


async def notify(session: AsyncSession, topic: str, entry: WaitlistEntry, *, now: dt.datetime, key_extra: str = "",
                 **extra) -> None:
    """An outbox message about an entry (SMS through notifications), once per key."""
    await outbox.enqueue(session, topic=topic, dedupe_key=f"{topic}:{entry.id}{key_extra}",
                         payload={"entry_id": entry.id, "hospital_id": entry.hospital_id, **extra},
                         now=now, hospital_id=entry.hospital_id)


PROMOTE = "waitlist.promote"


async def promote_at(session: AsyncSession, schedule_id: int, hospital_id: int, at: dt.datetime,
                     now: dt.datetime) -> None:
    """Run the promoter for the schedule at `at` (a hold deadline: the instant a seat frees
    with no transaction). One message per schedule and instant, whoever asks."""
    await outbox.enqueue(session, topic=PROMOTE, dedupe_key=f"{PROMOTE}:{schedule_id}:{at.isoformat()}",
                         payload={"schedule_id": schedule_id}, now=now, hospital_id=hospital_id, available_at=at)
