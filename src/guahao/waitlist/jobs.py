"""Waitlist jobs: the promoter on every freed seat (outbox topic `seats.freed`, written by
booking and scheduling), at each hold deadline (`waitlist.promote`), and a periodic sweep
as the safety net (cutoffs, offers ended, seats freed unseen); a 停诊 pausing the queue and
its lifting resuming it (`schedule.suspended`, `schedule.resumed`: waitlist.pause)."""
from __future__ import annotations

import datetime as dt

from guahao.outbox.registry import JobContext, PermanentFailure, handler, periodic
from guahao.scheduling.seats import FREED_TOPIC, RESUMED_TOPIC, SUSPENDED_TOPIC
from guahao.waitlist import entries, pause, promote

periodic("waitlist.sweep", dt.timedelta(minutes=1))


def _schedule_id(payload: dict, name: str = "schedule_id") -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PermanentFailure(f"payload lacks an integer {name}")
    return value


async def run_promoter(ctx: JobContext, schedule_id: int) -> None:
    """One transaction: any number of these at once, in any process, equal one serial run."""
    async with ctx.db.begin() as session:
        await promote.do_promote(session, schedule_id=schedule_id, now=ctx.clock.now())


@handler(FREED_TOPIC)
async def seats_freed(ctx: JobContext, payload: dict) -> None:
    await run_promoter(ctx, _schedule_id(payload))


@handler(entries.PROMOTE)
async def promote_due(ctx: JobContext, payload: dict) -> None:
    await run_promoter(ctx, _schedule_id(payload))


@handler("waitlist.sweep")
async def sweep(ctx: JobContext, payload: dict) -> None:
    async with ctx.db.read() as session:
        schedule_ids = await promote.schedules_to_sweep(session, now=ctx.clock.now())
    for schedule_id in schedule_ids:
        await run_promoter(ctx, schedule_id)


@handler(SUSPENDED_TOPIC)
async def schedule_suspended(ctx: JobContext, payload: dict) -> None:
    schedule_id, suspension = _schedule_id(payload), _schedule_id(payload, "suspension")
    async with ctx.db.begin() as session:
        await pause.do_pause(session, schedule_id=schedule_id, suspension=suspension, now=ctx.clock.now())


@handler(RESUMED_TOPIC)
async def schedule_resumed(ctx: JobContext, payload: dict) -> None:
    schedule_id = _schedule_id(payload)
    async with ctx.db.begin() as session:
        await pause.do_resume(session, schedule_id=schedule_id, now=ctx.clock.now())
