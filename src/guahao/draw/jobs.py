"""Draw jobs: `draw.run` (queued when a draw is created, due at its result time) and the
`draw.prepare` scan (every minute: fixes release modes of new schedules and hospital rule
edits, and runs any draw that is due but was not run, e.g. its message was lost)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from guahao.draw import allocation, service
from guahao.draw.models import Draw
from guahao.outbox.registry import JobContext, RetryLater, handler, periodic

periodic("draw.prepare", dt.timedelta(minutes=1))


@handler(service.RUN_TOPIC)
async def run_draw(ctx: JobContext, payload: dict) -> None:
    draw_id = int(payload["draw_id"])
    async with ctx.db.read() as session:
        draw = await session.get(Draw, draw_id)
        if draw is None or draw.status in ("allocated", "cancelled"):
            return
        due_in = draw.result_at - ctx.clock.now()
    if due_in > dt.timedelta(0):  # its times moved later while it was not yet open: not failing
        raise RetryLater("draw not due yet", delay=due_in, count_attempt=False)
    await allocation.run(ctx.db, draw_id, now_fn=ctx.clock.now)


@handler("draw.prepare")
async def prepare(ctx: JobContext, payload: dict) -> None:
    async with ctx.db.read() as session:
        hospitals = await service.hospitals_to_prepare(session)
    for hospital_id in hospitals:
        async with ctx.db.begin() as session:
            await service.do_apply_modes(session, hospital_id, now=ctx.clock.now())
    async with ctx.db.read() as session:
        due = list(await session.scalars(select(Draw.id).where(Draw.status.in_(("open", "ranked")),
                                                                Draw.result_at <= ctx.clock.now())))
    for draw_id in due:
        await allocation.run(ctx.db, draw_id, now_fn=ctx.clock.now)
