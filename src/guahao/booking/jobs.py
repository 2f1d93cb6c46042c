"""Booking housekeeping jobs: record lapsed holds, mark no-shows."""
from __future__ import annotations

import datetime as dt

from guahao.booking import actions, hospital_actions
from guahao.outbox.registry import JobContext, handler, periodic

periodic("booking.sweep_expired_holds", dt.timedelta(minutes=1))
periodic("booking.mark_no_shows", dt.timedelta(minutes=10))


@handler("booking.sweep_expired_holds")
async def sweep_expired_holds(ctx: JobContext, payload: dict) -> None:
    """Housekeeping only: capacity came back at each hold's deadline without this job."""
    while True:
        async with ctx.db.begin() as session:
            done = await actions.do_expire_due(session, now=ctx.clock.now(), limit=200)
        if done < 200:
            return


@handler("booking.mark_no_shows")
async def mark_no_shows(ctx: JobContext, payload: dict) -> None:
    while True:
        async with ctx.db.begin() as session:
            done = await hospital_actions.do_mark_no_shows(session, now=ctx.clock.now(), limit=200)
        if done < 200:
            return
