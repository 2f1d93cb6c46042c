"""`guahao bench rush --release-mode draw`: the same rush, released by draw (摇号), next to
the first-come rush of the same run.

Phase (after the fifo phase of bench/runner.py, on its own fresh database and server): the
schedule's hospital releases by draw with a window of W seconds; at T0 every one of the N
patients sends one entry (the worst case: everyone at the first instant, as bots would), or,
with `--draw-spread S`, the N arrive evenly over the first S seconds (a draw gives no reason to
hurry, so real entrants spread over the window);
at the result time the draw runs in this process, exactly as a `guahao worker` runs the
`draw.run` job (rank, then allocate through the hold, chunk by chunk). Reported: entries
answered (202) and their latency (p50, p99, targets: p99 < 1 s at 5,000 entrants), T0 → the
draw allocated ("time to results", target ≤ W + 3 s), the winners and their seats, and
whether the public audit record passes tools/verify_draw.py.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select, update

from guahao.bench import loadgen, seed
from guahao.bench.report import percentile
from guahao.bench.servers import ScratchPostgres, UvicornServer

UTC = dt.UTC
VERIFIER = Path(__file__).resolve().parents[3] / "tools" / "verify_draw.py"  # in a checkout only
TARGET_ENTRY_P99_MS = 1000.0
RESULT_MARGIN_S = 3.0


@dataclass
class DrawFigures:
    entrants: int
    seats: int
    window_s: int
    answered: int
    accepted: int  # 202
    refused: dict[str, int]
    answers_per_s: float
    all_answered_s: float
    entry_p50_ms: float | None
    entry_p99_ms: float | None
    result_s: float | None  # T0 -> the draw allocated
    allocation_s: float | None  # the draw job alone
    winners: int
    bookings: int
    verified: bool | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        ok = "met" if self.entry_p99_ms is not None and self.entry_p99_ms < TARGET_ENTRY_P99_MS else "NOT met"
        res = ("met" if self.result_s is not None and self.result_s <= self.window_s + RESULT_MARGIN_S
               else "NOT met")
        return [
            f"entries answered: {self.answered} of {self.entrants} ({self.accepted} accepted, refused {self.refused}) "
            f"in {self.all_answered_s:.2f} s, {self.answers_per_s:,.0f}/s",
            f"entry latency p50 {self.entry_p50_ms} ms, p99 {self.entry_p99_ms} ms "
            f"(target p99 < {TARGET_ENTRY_P99_MS:.0f} ms: {ok})",
            f"time to results (T0 -> allocated): {self.result_s} s with a {self.window_s} s window "
            f"(target <= window + {RESULT_MARGIN_S:.0f} s: {res}); the draw job itself {self.allocation_s} s",
            f"winners {self.winners}, bookings {self.bookings} for {self.seats} seats; "
            f"audit record verified: {self.verified}",
        ]


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


async def draw_phase(opts, echo, log_dir: Path, env_for, window: int) -> DrawFigures:
    """`env_for(url)` gives the server's environment (the same as the fifo phase's)."""
    from guahao import migrations_api
    from guahao.catalog.models import HospitalRules
    from guahao.core.db import create_database
    from guahao.draw import allocation
    from guahao.draw import service as draw_service
    from guahao.draw.models import Draw

    scratch = ScratchPostgres("guahao_bench_draw", opts.pg_admin_url) if opts.database == "postgresql" else None
    url = await scratch.create() if scratch else f"sqlite+aiosqlite:///{log_dir / 'guahao-bench-draw.db'}"
    env = {**env_for(url), "GUAHAO_RUN_JOBS_IN_PROCESS": "false"}  # the draw runs here, as a worker would
    server = UvicornServer("guahao.asgi:app", workers=opts.workers, env=env, name="guahao-draw", log_dir=log_dir)
    db = None
    try:
        await asyncio.to_thread(migrations_api.upgrade, url)
        server.start()
        db = create_database(url, pool_size=4)
        now = dt.datetime.now(UTC)
        hospital_id, schedule_id, _slot_id = await seed.seed_schedule(db, now, capacity=opts.slots)
        async with db.begin() as s:
            await s.execute(update(HospitalRules).where(HospitalRules.hospital_id == hospital_id)
                            .values(release_mode="draw", draw_window_seconds=window))
        clients = await seed.seed_clients(db, opts.patients, now)
        await server.wait_ready()
        split = urlsplit(server.base_url)
        host = f"{split.hostname}:{split.port}"
        path = f"/api/v1/schedules/{schedule_id}/draw/entries"
        requests = [loadgen.build_request("POST", host, path, body={"patient_id": c.patient_id},
                                          headers={"Authorization": f"Bearer {c.token}"}) for c in clients]
        release_at = dt.datetime.now(UTC) + dt.timedelta(seconds=opts.lead_seconds)
        await seed.publish(db, schedule_id, release_at, now)
        async with db.begin() as s:
            await draw_service.do_apply_modes(s, hospital_id, now=dt.datetime.now(UTC))
            draw = await s.scalar(select(Draw.id).where(Draw.schedule_id == schedule_id))
        when = f"evenly over {opts.draw_spread:g} s from T0" if opts.draw_spread else "at T0"
        echo(f"draw {draw}: {opts.slots} seats, entries {release_at:%H:%M:%S} + {window} s; "
             f"firing {len(requests)} entries {when} through {opts.connections} connections")
        t0_wall = release_at.timestamp()
        result_at = release_at + dt.timedelta(seconds=window) + draw_service.GRACE

        async def the_draw_job() -> tuple[str, float, float]:
            # as a worker runs `draw.run`: at the result time, whatever is still in flight
            await asyncio.sleep(max(0.0, result_at.timestamp() - time.time()))
            started = time.time()
            ended = await allocation.run(db, draw, now_fn=lambda: dt.datetime.now(UTC))
            while ended == "open":  # the event loop may wake a millisecond before the result time
                await asyncio.sleep(0.01)
                ended = await allocation.run(db, draw, now_fn=lambda: dt.datetime.now(UTC))
            return ended, started, time.time()

        job = asyncio.create_task(the_draw_job())
        result = await loadgen.fire(split.hostname, split.port, requests, connections=opts.connections,
                                    start_wall=t0_wall, spread_s=opts.draw_spread)
        status, started, finished = await job
        figures = _figures(result, opts, window)
        figures.result_s = round(finished - t0_wall, 2)
        figures.allocation_s = round(finished - started, 2)
        figures.winners, figures.bookings = await _outcome(db, schedule_id)
        if status != "allocated":
            figures.notes.append(f"the draw ended {status}")
        figures.verified = await _verify(server.base_url, schedule_id, log_dir, figures.notes)
        return figures
    finally:
        if db is not None:
            await db.dispose()
        server.stop()
        if scratch is not None:
            await scratch.drop()


def _figures(result: loadgen.Run, opts, window: int) -> DrawFigures:
    answers = result.answers
    accepted = [a for a in answers if a.status == 202]
    refused: dict[str, int] = {}
    for a in answers:
        if a.status != 202:
            key = f"{a.status} {a.code or a.error or ''}".strip()
            refused[key] = refused.get(key, 0) + 1
    last = max((a.done for a in answers), default=result.t0)
    elapsed = max(last - result.t0, 1e-9)
    return DrawFigures(entrants=opts.patients, seats=opts.slots, window_s=window, answered=len(answers),
                       accepted=len(accepted), refused=refused, answers_per_s=round(len(answers) / elapsed, 1),
                       all_answered_s=round(elapsed, 3),
                       entry_p50_ms=_ms(percentile([a.done - a.sent for a in answers], 50)),
                       entry_p99_ms=_ms(percentile([a.done - a.sent for a in answers], 99)),
                       result_s=None, allocation_s=None, winners=0, bookings=0, verified=None)


async def _outcome(db, schedule_id: int) -> tuple[int, int]:
    from sqlalchemy import func, select

    from guahao.booking.models import Booking
    from guahao.draw.models import Draw, DrawEntry

    async with db.read() as s:
        winners = await s.scalar(select(func.count()).select_from(DrawEntry).join(Draw, Draw.id == DrawEntry.draw_id)
                                 .where(Draw.schedule_id == schedule_id, DrawEntry.outcome == "won"))
        bookings = await s.scalar(select(func.count()).select_from(Booking).where(Booking.schedule_id == schedule_id))
    return int(winners or 0), int(bookings or 0)


async def _verify(base_url: str, schedule_id: int, log_dir: Path, notes: list[str]) -> bool | None:
    if not VERIFIER.exists():
        notes.append("tools/verify_draw.py not found (not a checkout): audit not verified")
        return None
    answer = await asyncio.to_thread(subprocess.run, [sys.executable, "-I", str(VERIFIER),
                                                      f"{base_url}/api/v1/schedules/{schedule_id}/draw/audit"],
                                     capture_output=True, text=True, timeout=120)
    if answer.returncode != 0:
        notes.append(f"verifier: {answer.stdout.strip()[-300:]} {answer.stderr.strip()[-300:]}")
    return answer.returncode == 0
