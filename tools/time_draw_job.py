"""Time the draw job (`draw.run`) alone, phase by phase, on a draw with thousands of entries.

    .venv/bin/python tools/time_draw_job.py [--entries 5000] [--seats 100] [--opt-in 0.5] [--database-url URL]

Without --database-url a fresh PostgreSQL database is created on the local server
($GUAHAO_TEST_PG_URL, else postgres@127.0.0.1) and dropped at the end; with one (PostgreSQL or
SQLite), that database is migrated to head and used as is. The world is seeded set-based (the
bench's seed: one hospital releasing by draw, one platform slot of --seats seats, N verified
patients), the entries are inserted in bulk (--opt-in of them asking for the waitlist), then the
job runs exactly as `allocation.run` does, one transaction per step, and the split is printed:
rank, the chunks that allocate winners, losing the rest, settling (waitlist joins included).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import datetime as dt
import secrets
import time
from contextlib import contextmanager

from sqlalchemy import event, func, insert, select, update

from guahao import migrations_api
from guahao.bench import seed
from guahao.bench.servers import PG_ADMIN_URL, ScratchPostgres
from guahao.catalog.models import HospitalRules
from guahao.core import crypto, signing
from guahao.core.db import create_database
from guahao.draw import allocation, fairness
from guahao.draw import service as draw_service
from guahao.draw.models import Draw, DrawEntry
from guahao.patients.models import Patient
from guahao.waitlist import actions as waitlist_actions

UTC = dt.UTC


class Split:
    """Seconds spent per phase, by wrapping allocation's steps (the chunk is what is left)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.statements: dict[str, int] = {}
        self.sent = 0  # statements sent to the database so far (an executemany counts once)

    def count(self, *_args) -> None:
        self.sent += 1

    def add(self, name: str, seconds: float, statements: int = 0) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.statements[name] = self.statements.get(name, 0) + statements

    def wrap(self, module, name: str, label: str):
        original = getattr(module, name)

        async def timed(*args, **kwargs):
            started, sent = time.perf_counter(), self.sent
            try:
                return await original(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - started, self.sent - sent)

        setattr(module, name, timed)
        return original


@contextmanager
def wrapped(split: Split):
    originals = [(allocation, "_lose_the_rest", split.wrap(allocation, "_lose_the_rest", "lose the rest")),
                 (allocation, "_settle", split.wrap(allocation, "_settle", "settle")),
                 (waitlist_actions, "do_join_ranked",
                  split.wrap(waitlist_actions, "do_join_ranked", "  of which waitlist joins"))]
    try:
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


async def _world(db, entries: int, seats: int, opt_in: float, now: dt.datetime) -> tuple[int, int, dt.datetime]:
    """(draw id, schedule id, result time) of a draw with `entries` entries, not yet run."""
    hospital_id, schedule_id, _slot = await seed.seed_schedule(db, now, capacity=seats)
    async with db.begin() as s:
        await s.execute(update(HospitalRules).where(HospitalRules.hospital_id == hospital_id)
                        .values(release_mode="draw", draw_window_seconds=10))
    clients = await seed.seed_clients(db, entries, now)
    release_at = now + dt.timedelta(hours=1)
    await seed.publish(db, schedule_id, release_at, now)
    async with db.begin() as s:
        await draw_service.do_apply_modes(s, hospital_id, now=now)
        draw = await s.scalar(select(Draw).where(Draw.schedule_id == schedule_id))
        draw_id, result_at = draw.id, draw.result_at
    patient_ids = [c.patient_id for c in clients]
    async with db.read() as s:
        people = (await s.execute(select(Patient.id, Patient.account_id, Patient.person_id)
                                  .where(Patient.id.in_(patient_ids)))).all()
    rows = [{"draw_id": draw_id, "hospital_id": hospital_id, "person_id": person, "account_id": account,
             "patient_id": patient, "receipt": fairness.new_receipt(), "waitlist_opt_in": i % 100 < opt_in * 100,
             "arrived_at": release_at, "created_at": release_at}
            for i, (patient, account, person) in enumerate(people)]
    for start in range(0, len(rows), 1000):
        async with db.begin() as s:
            await s.execute(insert(DrawEntry), rows[start:start + 1000])
    return draw_id, schedule_id, result_at


async def _time_job(db, draw_id: int, result_at: dt.datetime) -> tuple[Split, int]:
    """Run the job step by step as `allocation.run` does; returns the split and the chunk count."""
    tick = [result_at]

    def now_fn() -> dt.datetime:  # the job's clock: the result time, a millisecond more per call
        tick[0] += dt.timedelta(milliseconds=1)
        return tick[0]

    split, chunks = Split(), 0
    event.listen(db.engine.sync_engine, "before_cursor_execute", split.count)
    with wrapped(split):
        started, sent = time.perf_counter(), split.sent
        async with db.begin() as s:
            assert await allocation.do_rank(s, draw_id, now=now_fn())
        split.add("rank", time.perf_counter() - started, split.sent - sent)
        while True:
            started, sent = time.perf_counter(), split.sent
            async with db.begin() as s:
                done = await allocation.do_allocate_chunk(s, draw_id, now=now_fn())
            chunks += 1
            split.add("chunk transactions", time.perf_counter() - started, split.sent - sent)
            if done == 0:
                break
    event.remove(db.engine.sync_engine, "before_cursor_execute", split.count)
    return split, chunks


async def main(opts) -> None:
    scratch = None if opts.database_url else ScratchPostgres("guahao_time_draw", opts.pg_admin_url)
    url = opts.database_url or await scratch.create()
    db = None
    crypto.configure(*(base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(2)))
    signing.configure(secrets.token_urlsafe(32))
    try:
        await asyncio.to_thread(migrations_api.upgrade, url)
        db = create_database(url, pool_size=2)
        now = dt.datetime.now(UTC)
        t = time.perf_counter()
        draw_id, schedule_id, result_at = await _world(db, opts.entries, opts.seats, opts.opt_in, now)
        print(f"seeded {opts.entries} entries, {opts.seats} seats in {time.perf_counter() - t:.1f} s "
              f"({url.split('://')[0]})")
        profile = cProfile.Profile() if opts.profile else None
        t = time.perf_counter()
        if profile:
            profile.enable()
        split, chunks = await _time_job(db, draw_id, result_at)
        total = time.perf_counter() - t
        if profile:
            profile.disable()
            profile.dump_stats(opts.profile)
        s, n = split.seconds, split.statements
        lose, settle, joins = "lose the rest", "settle", "  of which waitlist joins"
        winners = (s["chunk transactions"] - s.get(lose, 0) - s.get(settle, 0),
                   n["chunk transactions"] - n.get(lose, 0) - n.get(settle, 0))
        print(f"draw job: {total:.3f} s in {chunks} allocation transactions (seconds, statements)")
        for name, (seconds, statements) in [("rank (one transaction)", (s["rank"], n["rank"])),
                                            ("allocate winners (chunks, commits)", winners),
                                            (lose, (s.get(lose, 0), n.get(lose, 0))),
                                            (settle, (s.get(settle, 0), n.get(settle, 0))),
                                            ("  of which waitlist joins", (s.get(joins, 0), n.get(joins, 0)))]:
            print(f"  {name:<38}{seconds:7.3f} s {statements:6d}")
        async with db.read() as session:
            outcomes = dict((await session.execute(select(DrawEntry.outcome, func.count()).where(
                DrawEntry.draw_id == draw_id).group_by(DrawEntry.outcome))).all())
            status = await session.scalar(select(Draw.status).where(Draw.id == draw_id))
        print(f"draw {status}; outcomes {outcomes}")
    finally:
        if db is not None:
            await db.dispose()
        if scratch is not None:
            await scratch.drop()


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--seats", type=int, default=100)
    parser.add_argument("--opt-in", type=float, default=0.5, help="share of entrants asking for the waitlist")
    parser.add_argument("--database-url", default=None,
                        help="use (and migrate) this database instead of a fresh PostgreSQL one")
    parser.add_argument("--profile", metavar="FILE", help="write the job's cProfile stats there (pstats)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL, help="where the fresh database is created")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
