"""The release rush in draw mode, over HTTP (SQLite and PostgreSQL): 200 bots fire at the
release instant among 2,000 patients who arrive across the window; 100 seats. Speed buys
nothing: the bots win about their share (10 of 100), every entrant is answered at once."""
from __future__ import annotations

import asyncio
import datetime as dt

from tests.draw_support import draw_world, enter, entries, many_patients, run_draw

BOTS, PATIENTS, SEATS = 200, 2_000, 100


async def test_bots_at_t0_win_about_their_fair_share(client, db, clock):
    world = await draw_world(db, clock, capacity=SEATS, bands=4, window=30)
    people = await many_patients(db, clock, PATIENTS)
    bots, others = people[:BOTS], people[BOTS:]
    clock.set(world.release_at)  # T0: every bot fires three times at once
    answers = await asyncio.gather(*(enter(client, world, t, p) for t, _a, p in bots for _ in range(3)))
    for group in range(18):  # the others spread across the 30 s window
        clock.set(world.release_at + dt.timedelta(seconds=1 + group * 1.5))
        batch = others[group * 100:(group + 1) * 100]
        answers += await asyncio.gather(*(enter(client, world, t, p) for t, _a, p in batch))
    assert all(a.status_code == 202 for a in answers), {a.status_code for a in answers}
    assert await run_draw(db, clock, world) == "allocated"
    rows = await entries(db, world)
    assert len(rows) == PATIENTS
    winners = {e.patient_id for e in rows if e.outcome == "won"}
    assert len(winners) == SEATS
    bot_wins = len(winners & {p for _t, _a, p in bots})
    # hypergeometric: mean 10, sd ≈ 2.9; 10 ± 4 sd. In fifo mode the bots would take all 100.
    assert 0 <= bot_wins <= 21, bot_wins
