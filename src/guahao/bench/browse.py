"""`guahao bench browse`: the browse storm around the release, while the rush runs.

P pollers, each on its own keep-alive connection, ask once per interval (ticks spread evenly
over the interval) for a doctor's availability, the department's availability (public JSON
API) and the doctor's HTML page, from T0 - before to T0 + after. At T0 the hold rush of
`bench rush` (same seeding, same load generator) runs against the same server; once it is
over, a few winners cancel, spread over what is left of the window, so that the count also
goes back up. The answers are compared with the database's record of the holds and
cancellations (bench/browse_stats.py).

Then the reference, same pollers and pattern: the bare FastAPI app answering the same three
paths with the bytes guahao gave before T0, from memory, while the bare claim rush runs.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select

from guahao.bench import loadgen, refs, seed
from guahao.bench.browse_stats import BrowseFigures, Poll, Timeline, browse_figures
from guahao.bench.report import RushFigures, figures
from guahao.bench.runner import HOLD_PATH, RushOptions, _hold_requests, guahao_env
from guahao.bench.servers import ScratchPostgres, UvicornServer, asyncpg_dsn

UTC = dt.UTC
# the rush's connections are opened and warmed this long before T0: uvicorn closes a keep-alive
# connection idle for 5 s, so opening them at T0 - before would lose the first request of each
WARM_LEAD = 2.0


@dataclass
class BrowseOptions:
    rush: RushOptions = field(default_factory=RushOptions)
    pollers: int = 500
    before: float = 10.0  # polling starts at T0 - before
    after: float = 20.0  # and ends at T0 + after
    interval: float = 1.0
    cancellations: int = 3
    references: bool = True


@dataclass
class BrowseOutcome:
    results: list[BrowseFigures]
    rushes: list[RushFigures]
    notes: list[str] = field(default_factory=list)


def endpoint_paths(doctor_id: int, department_id: int, day: dt.date) -> dict[str, str]:
    return {"doctor availability (API)": f"/api/v1/doctors/{doctor_id}/availability",
            "department availability (API)": f"/api/v1/departments/{department_id}/availability",
            "doctor page (HTML)": f"/doctors/{doctor_id}?day={day.isoformat()}"}


def remaining_in(body: bytes, slot_id: int, html: bool) -> int | None:
    """The slot's remaining count shown by an answer; None when it shows none (not yet released)."""
    if not html:
        m = re.search(rb'"slot_id":%d,[^}]*?"remaining":(\d+)' % slot_id, body)
        return int(m.group(1)) if m else None
    m = re.search(rb'data-slot="%d" data-state="(\w+)"[^>]*>.*?<span class="badge[^"]*">([^<]*)</span>'
                  % slot_id, body, re.S)
    if m is None:
        return None
    if m.group(1) == b"full":
        return 0
    if m.group(1) == b"bookable":
        digits = re.search(rb"\d+", m.group(2))
        return int(digits.group()) if digits else None
    return None


async def poll(host: str, port: int, paths: dict[str, str], slot_id: int, *, pollers: int, start: float,
               end: float, interval: float) -> tuple[list[Poll], int]:
    """Every poller asks each path once per interval between the wall instants start and end.
    A tick that comes while the poller's previous round is still running is skipped (counted)."""
    reqs = [(name, loadgen.build_request("GET", f"{host}:{port}", path, headers={"Accept-Language": "en"}),
             path.startswith("/doctors/")) for name, path in paths.items()]
    conns = [loadgen.Connection(host, port) for _ in range(pollers)]
    out: list[Poll] = []
    missed = 0
    skew = time.time() - time.perf_counter()  # perf_counter -> wall clock

    async def poller(n: int, conn: loadgen.Connection) -> None:
        nonlocal missed
        tick = start + interval * n / pollers
        perf = time.perf_counter
        # connect shortly before the first tick (uvicorn drops a connection idle for 5 s)
        await loadgen._wait_until_wall(tick - 0.5)
        try:
            await conn.connect()
        except OSError:
            conn.close()  # the first poll connects again and records the failure if any
        while tick < end:
            await loadgen._wait_until_wall(tick)
            for name, request, html in reqs:
                sent = perf()
                try:
                    status, body = await conn.roundtrip(request)
                except Exception:  # recorded; the connection is renewed
                    out.append(Poll(name, n, sent + skew, perf() + skew, 0, None))
                    conn.close()
                    continue
                done = perf()
                out.append(Poll(name, n, sent + skew, done + skew, status,
                                remaining_in(body, slot_id, html) if status == 200 else None))
            tick += interval
            now = time.time()
            while tick < now:
                tick += interval
                missed += 1

    await asyncio.gather(*(poller(n, c) for n, c in enumerate(conns)))
    for c in conns:
        c.close()
    return out, missed


async def changes(db, slot_id: int) -> list[tuple[float, int]]:
    """(wall instant, delta) of every hold (-1) and cancellation (+1) of the slot, from the database."""
    from guahao.booking.models import Booking, BookingEvent

    async with db.read() as s:
        holds = (await s.execute(select(Booking.created_at).where(Booking.slot_id == slot_id))).scalars().all()
        cancels = (await s.execute(select(BookingEvent.at).join(Booking, Booking.id == BookingEvent.booking_id)
                                   .where(Booking.slot_id == slot_id, BookingEvent.to_state == "cancelled"))
                   ).scalars().all()
    return [(t.timestamp(), -1) for t in holds] + [(t.timestamp(), +1) for t in cancels]


async def _cancel_some(host: str, port: int, winners: list[tuple[str, int]], at: list[float]) -> list[int]:
    conn = loadgen.Connection(host, port)
    statuses = []
    try:
        for (token, booking_id), instant in zip(winners, at):
            await loadgen._wait_until_wall(instant)
            req = loadgen.build_request("POST", f"{host}:{port}", f"{HOLD_PATH}/{booking_id}/cancel", body={},
                                        headers={"Authorization": f"Bearer {token}",
                                                 "Idempotency-Key": uuid.uuid4().hex})
            statuses.append((await conn.roundtrip(req))[0])
    finally:
        conn.close()
    return statuses


async def run(opts: BrowseOptions, echo: Callable[[str], None]) -> BrowseOutcome:
    log_dir = Path(tempfile.mkdtemp(prefix="guahao-browse-"))
    outcome = BrowseOutcome(results=[], rushes=[])
    try:
        pages = await _guahao_phase(opts, echo, log_dir, outcome)
        if opts.references:
            await _bare_phase(opts, echo, log_dir, outcome, pages)
    finally:
        if opts.rush.keep_logs:
            outcome.notes.append(f"logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    return outcome


async def _guahao_phase(opts: BrowseOptions, echo, log_dir: Path, outcome: BrowseOutcome) -> dict:
    from guahao import migrations_api
    from guahao.core.db import create_database

    r = opts.rush
    scratch = ScratchPostgres("guahao_browse", r.pg_admin_url) if r.database == "postgresql" else None
    url = await scratch.create() if scratch else f"sqlite+aiosqlite:///{log_dir / 'guahao-browse.db'}"
    server = UvicornServer("guahao.asgi:app", workers=r.workers, env=guahao_env(r, url), name="guahao",
                           log_dir=log_dir)
    db = None
    try:
        await asyncio.to_thread(migrations_api.upgrade, url)
        server.start()
        db = create_database(url, pool_size=4)
        now = dt.datetime.now(UTC)
        hospital_id, schedule_id, slot_id = await seed.seed_schedule(db, now, capacity=r.slots)
        clients = await seed.seed_clients(db, r.patients, now)
        doctor_id, department_id, day = await _schedule_keys(db, schedule_id)
        await server.wait_ready(timeout=max(30.0, 20.0 * r.workers))
        host, port = "127.0.0.1", server.port
        paths = endpoint_paths(doctor_id, department_id, day)
        release_at = time.time() + opts.before + 3.0
        await seed.publish(db, schedule_id, dt.datetime.fromtimestamp(release_at, UTC), now)
        pages = await _snapshot(server.base_url, paths)
        echo(f"guahao: {r.workers} worker(s); {opts.pollers} pollers from T0 - {opts.before:g} s to "
             f"T0 + {opts.after:g} s; {r.patients} holds for {r.slots} seats at T0")
        window = (release_at - opts.before, release_at + opts.after)
        polling = asyncio.create_task(poll(host, port, paths, slot_id, pollers=opts.pollers, start=window[0],
                                           end=window[1], interval=opts.interval))
        await loadgen._wait_until_wall(window[0])
        cpu_before = server.cpu_seconds()
        reqs = _hold_requests(f"{host}:{port}", HOLD_PATH, slot_id, clients[:r.patients])
        await loadgen._wait_until_wall(release_at - WARM_LEAD)  # idle keep-alive connections are closed after 5 s
        # no warm-up holds: behind the pollers' backlog they could reach the server after T0 and
        # take seats (the connections are still warmed with a GET each)
        rush = await loadgen.fire(host, port, reqs, connections=r.connections, start_wall=release_at)
        outcome.rushes.append(figures("guahao rush", rush.answers, rush.t0, r.slots))
        if rush.t0 - time.perf_counter() + time.time() > release_at + 0.5:
            outcome.rushes[-1].notes.append("the rush started late: warming its connections outlasted T0")
        winners = [(clients[a.index].token, a.json()["id"]) for a in rush.answers if a.status == 201]
        left = window[1] - 1.0 - time.time()
        count = min(opts.cancellations, len(winners)) if left > 0.5 else 0
        at = [time.time() + left * (i + 1) / (count + 1) for i in range(count)]
        statuses = await _cancel_some(host, port, winners, at)
        polls, missed = await polling
        cpu = server.cpu_seconds() - cpu_before
        timeline = Timeline(r.slots, await changes(db, slot_id))
        fig = browse_figures("guahao", polls, pollers=opts.pollers, window=window, timeline=timeline,
                             missed_ticks=missed)
        fig.server_cpu_ms_per_request = round(1000 * cpu / max(1, len(polls) + len(rush.answers)), 3)
        fig.notes.append(f"rush during the storm: {len(rush.answers)} holds, {outcome.rushes[-1].winners} winners, "
                         f"all answered {outcome.rushes[-1].all_answered_s:.2f} s after T0; "
                         f"cancellations after it: {statuses}")
        outcome.results.append(fig)
        return pages
    finally:
        if db is not None:
            await db.dispose()
        server.stop()
        if server.log_path.exists() and "Traceback" in server.log_path.read_text(errors="replace"):
            outcome.notes.append(f"guahao server log has tracebacks:\n{server.log_tail(30)}")
        if scratch is not None:
            await scratch.drop()


async def _schedule_keys(db, schedule_id: int) -> tuple[int, int, dt.date]:
    from guahao.scheduling.models import Schedule

    async with db.read() as s:
        row = (await s.execute(select(Schedule.doctor_id, Schedule.department_id, Schedule.date)
                               .where(Schedule.id == schedule_id))).one()
    return row[0], row[1], row[2]


async def _snapshot(base_url: str, paths: dict[str, str]) -> dict[str, list[str]]:
    """guahao's answers before T0, for the bare app to serve from memory ({path: [type, body]})."""
    import httpx

    out = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, headers={"Accept-Language": "en"}) as client:
        for path in paths.values():
            r = await client.get(path)
            r.raise_for_status()
            out[urlsplit(path).path] = [r.headers.get("content-type", "application/json"), r.text]
    return out


async def _bare_phase(opts: BrowseOptions, echo, log_dir: Path, outcome: BrowseOutcome, pages: dict) -> None:
    r = opts.rush
    pg = r.database == "postgresql"
    scratch = ScratchPostgres("guahao_browse_ref", r.pg_admin_url) if pg else None
    seats = {1: r.slots, 2: 0}
    try:
        if scratch is not None:
            dsn = asyncpg_dsn(await scratch.create())
            await refs.prepare_seats_pg(dsn, seats)
        else:
            dsn = str(log_dir / "browse-ref.db")
            refs.prepare_seats_sqlite(dsn, seats)
        pages_file = log_dir / "pages.json"
        pages_file.write_text(json.dumps(pages, ensure_ascii=False))
        env = {"GUAHAO_BENCH_DSN": dsn, "GUAHAO_BENCH_POOL_SIZE": str(r.bare_pool_size),
               "GUAHAO_BENCH_PAGES": str(pages_file)}
        with UvicornServer("guahao.bench.bare_app:app", workers=r.workers, env=env, name="bare",
                           log_dir=log_dir) as server:
            await server.wait_ready(timeout=max(30.0, 20.0 * r.workers))
            host, port = "127.0.0.1", server.port
            paths = _same_paths(pages)
            release_at = time.time() + opts.before + 1.0
            window = (release_at - opts.before, release_at + opts.after)
            echo(f"bare endpoint: {r.workers} worker(s), the same pollers and a claim rush at T0")
            polling = asyncio.create_task(poll(host, port, paths, 0, pollers=opts.pollers, start=window[0],
                                               end=window[1], interval=opts.interval))
            await loadgen._wait_until_wall(window[0])
            cpu_before = server.cpu_seconds()
            fake = [seed.Client(secrets.token_urlsafe(32), 1 + i) for i in range(r.patients)]
            reqs = _hold_requests(f"{host}:{port}", "/claim", 1, fake[:r.patients])
            await loadgen._wait_until_wall(release_at - WARM_LEAD)
            rush = await loadgen.fire(host, port, reqs, connections=r.connections, start_wall=release_at)
            polls, missed = await polling
            cpu = server.cpu_seconds() - cpu_before
        outcome.rushes.append(figures("bare claim rush", rush.answers, rush.t0, r.slots))
        fig = browse_figures("bare endpoint", polls, pollers=opts.pollers, window=window, timeline=None,
                             missed_ticks=missed)
        fig.server_cpu_ms_per_request = round(1000 * cpu / max(1, len(polls) + len(rush.answers)), 3)
        outcome.results.append(fig)
    finally:
        if scratch is not None:
            await scratch.drop()


def _same_paths(pages: dict) -> dict[str, str]:
    """The endpoint names with the paths guahao was polled on (the bare app serves those)."""
    by_kind = {("/doctors/" in p and "/availability" in p): p for p in pages if p.startswith("/api/")}
    page = next(p for p in pages if not p.startswith("/api/"))
    return {"doctor availability (API)": by_kind[True], "department availability (API)": by_kind[False],
            "doctor page (HTML)": page}
