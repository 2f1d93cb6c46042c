"""`guahao bench rush`: the release rush against guahao, then the references, same N and K.

Phases, one after the other on the same machine (only one of them loads it at a time):
1. guahao: its own uvicorn with W workers on a fresh database (or `--target`), N accounts
   with a verified patient each, one schedule with C platform seats published with
   release_at = T0 a few seconds ahead (real clock); at T0 all N holds through K connections.
2. the bare endpoint (`guahao.bench.bare_app`, same W workers, same requests, same K).
3. the raw claim statement from this process through the driver (PostgreSQL: asyncpg with a
   small and a wide pool, K concurrent tasks; SQLite: sqlite3, one writer).
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from guahao.bench import his_rush, loadgen, refs, seed
from guahao.bench.report import RushFigures, figures
from guahao.bench.servers import PG_ADMIN_URL, ScratchPostgres, UvicornServer, asyncpg_dsn

UTC = dt.UTC
HOLD_PATH = "/api/v1/bookings"


@dataclass
class RushOptions:
    database: str = "postgresql"
    patients: int = 5000
    slots: int = 100
    connections: int = 256
    workers: int = 2
    target: str | None = None
    database_url: str | None = None  # with --target: the target's database (default: GUAHAO_DATABASE_URL)
    redis: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    db_pool_size: int | None = None  # guahao's GUAHAO_DB_POOL_SIZE; None = the product default
    bare_pool_size: int = 5
    raw_pools: list[int] = field(default_factory=lambda: [4, 64])
    references: bool = True
    lead_seconds: float = 3.0
    warmup: int = 64
    pg_admin_url: str = PG_ADMIN_URL
    keep_logs: bool = False
    # "realtime": a HIS simulator decides every hold; "synced": the hospital is connected to one
    # but holds are decided locally (bench/his_rush.py)
    his_mode: str = "local"
    his_latency_ms: int = 20
    # "draw": after the first-come rush, the same rush released by draw (bench/draw_rush.py)
    release_mode: str = "fifo"
    draw_window: int = 10
    draw_spread: float = 0.0  # entrants arrive evenly over this many seconds from T0


@dataclass
class RushOutcome:
    results: list[RushFigures]
    log_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    draw: object | None = None  # draw_rush.DrawFigures with --release-mode draw


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _hold_requests(host: str, path: str, slot_id: int, clients: list[seed.Client]) -> list[bytes]:
    return [loadgen.build_request("POST", host, path, body={"slot_id": slot_id, "patient_id": c.patient_id},
                                  headers={"Authorization": f"Bearer {c.token}", "Idempotency-Key": uuid.uuid4().hex})
            for c in clients]


def guahao_env(opts: RushOptions, url: str) -> dict[str, str]:
    """Fresh keys (configured in this process too, so that seeded rows and sessions match) and the
    environment of a bench guahao server on `url`."""
    from guahao.core import crypto, signing

    data_key, index_key, secret_key = _key(), _key(), secrets.token_urlsafe(32)
    crypto.configure(data_key, index_key)
    signing.configure(secret_key)
    # production refuses the development stand-ins; the rush needs neither SMS nor face checks
    env = {"GUAHAO_ENV": "production", "GUAHAO_DATABASE_URL": url, "GUAHAO_DATA_KEY": data_key,
           "GUAHAO_INDEX_KEY": index_key, "GUAHAO_SECRET_KEY": secret_key,
           "GUAHAO_SMS_PROVIDER": "none", "GUAHAO_FACE_CHECK_PROVIDER": "none", "GUAHAO_LOG_JSON": "true",
           # the rush takes holds and pays nothing; production refuses the published sandbox key
           "GUAHAO_PAYSIM_KEY": secrets.token_urlsafe(32),
           # the embedded default runs its jobs in-process; production runs `guahao worker`
           "GUAHAO_RUN_JOBS_IN_PROCESS": "true" if opts.database == "sqlite" else "false",
           "GUAHAO_REDIS_URL": opts.redis_url if opts.redis else "",
           # every simulated patient comes from the one loopback address: the per-address
           # bot limit would refuse the crowd (the per-account limit still applies)
           "GUAHAO_HOLD_LIMIT_PER_ADDRESS": "1000000/minute"}
    if opts.db_pool_size:
        env["GUAHAO_DB_POOL_SIZE"] = str(opts.db_pool_size)
    return env


async def run(opts: RushOptions, echo: Callable[[str], None]) -> RushOutcome:
    log_dir = Path(tempfile.mkdtemp(prefix="guahao-bench-"))
    outcome = RushOutcome(results=[], log_dir=log_dir)
    try:
        outcome.results.append(await _guahao_phase(opts, echo, log_dir, outcome.notes))
        if opts.release_mode == "draw":
            from guahao.bench import draw_rush

            outcome.draw = await draw_rush.draw_phase(opts, echo, log_dir, lambda url: guahao_env(opts, url),
                                                      opts.draw_window)
        if opts.references:
            outcome.results += await _reference_phases(opts, echo, log_dir)
    finally:
        if not opts.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
            outcome.log_dir = None
    return outcome


async def _guahao_phase(opts: RushOptions, echo, log_dir: Path, notes: list[str]) -> RushFigures:
    from guahao import migrations_api
    from guahao.core import crypto, signing
    from guahao.core.db import create_database

    scratch: ScratchPostgres | None = None
    server: UvicornServer | None = None
    if opts.target:
        from guahao.config import get_settings

        settings = get_settings()
        url = opts.database_url or settings.database_url
        crypto.configure(settings.data_key, settings.index_key)
        signing.configure(settings.secret_key)  # the seeded sessions must match the target's key
        base_url = opts.target.rstrip("/")
    else:
        if opts.database == "postgresql":
            scratch = ScratchPostgres("guahao_bench", opts.pg_admin_url)
            url = await scratch.create()
        else:
            url = f"sqlite+aiosqlite:///{log_dir / 'guahao-bench.db'}"
        env = guahao_env(opts, url)
        server = UvicornServer("guahao.asgi:app", workers=opts.workers, env=env, name="guahao", log_dir=log_dir)
        base_url = server.base_url
    db = None
    sim = his_rush.SimProcess(log_dir, opts.his_latency_ms) if opts.his_mode != "local" else None
    try:
        if sim is not None:
            sim.start()
            echo(f"HIS simulator on {sim.url}, {opts.his_latency_ms} ms added latency")
        if server is not None:
            started = time.perf_counter()
            await asyncio.to_thread(migrations_api.upgrade, url)
            echo(f"migrated a fresh {opts.database} database in {time.perf_counter() - started:.1f} s")
            server.start()
        db = create_database(url, pool_size=4)
        return await _rush(opts, echo, db, server, base_url, sim)
    finally:
        if db is not None:
            await db.dispose()
        if server is not None:
            server.stop()
            if server.log_path.exists() and "Traceback" in server.log_path.read_text(errors="replace"):
                notes.append(f"guahao server log has tracebacks:\n{server.log_tail(30)}")
        if scratch is not None:
            await scratch.drop()
        if sim is not None:
            sim.stop()


async def _rush(opts: RushOptions, echo, db, server, base_url: str, sim) -> RushFigures:
    """Seed, publish, fire at T0 and check (the first-come rush)."""
    now = dt.datetime.now(UTC)
    started = time.perf_counter()
    hospital_id, schedule_id, slot_id = await seed.seed_schedule(db, now, capacity=opts.slots)
    his_setup = None
    if sim is not None:
        his_setup = await his_rush.prepare(db, sim, mode=opts.his_mode, hospital_id=hospital_id,
                                           schedule_id=schedule_id,
                                           slot_id=slot_id, seats=opts.slots, now=now)
    clients = await seed.seed_clients(db, opts.patients + opts.warmup, now)
    rush_clients, warm_clients = clients[:opts.patients], clients[opts.patients:]
    echo(f"seeded {len(clients)} accounts with a verified patient and a session in "
         f"{time.perf_counter() - started:.1f} s")
    if server is not None:
        await server.wait_ready(timeout=max(30.0, 20.0 * opts.workers))  # a busy machine boots workers slowly
        echo(f"guahao: uvicorn with {opts.workers} worker(s) ready on {base_url}")
    if opts.redis:
        await _forget_full(opts.redis_url, slot_id)
    split = urlsplit(base_url)
    host = f"{split.hostname}:{split.port or 80}"
    requests = _hold_requests(host, HOLD_PATH, slot_id, rush_clients)
    warm = _hold_requests(host, HOLD_PATH, slot_id, warm_clients)
    release_at = dt.datetime.now(UTC) + dt.timedelta(seconds=opts.lead_seconds)
    await seed.publish(db, schedule_id, release_at, now)
    echo(f"published schedule {schedule_id}: {opts.slots} seats released at {release_at:%H:%M:%S.%f} UTC; "
         f"firing {len(requests)} holds through {opts.connections} connections")
    cpu_before = server.cpu_seconds() if server is not None else None
    result = await loadgen.fire(split.hostname, split.port or 80, requests, connections=opts.connections,
                                start_wall=release_at.timestamp(), warmup=warm)
    fig = figures("guahao", result.answers, result.t0, opts.slots)
    if server is not None:
        fig.worker_peak_rss_mib = server.peak_rss_mib()
    if server is not None and cpu_before is not None:  # warm-up included: a few dozen answers
        fig.server_cpu_ms_per_answer = round(
            1000 * (server.cpu_seconds() - cpu_before) / max(1, len(result.answers) + len(warm)), 3)
    check = await seed.check_slot(db, slot_id, dt.datetime.now(UTC))
    fig.winners_in_db = check.live_bookings
    visit_nos = {a.json().get("visit_no") for a in result.answers if a.status == 201}
    fig.distinct_visit_nos = len(visit_nos)
    if check.seats_taken != check.live_bookings or check.distinct_visit_nos != check.live_bookings:
        fig.distinct_visit_nos = check.distinct_visit_nos
        fig.notes.append(f"DB: {check.live_bookings} live bookings, {check.distinct_visit_nos} distinct visit "
                         f"numbers, {check.seats_taken} seats taken")
    if visit_nos != set(range(1, opts.slots + 1)):
        fig.notes.append(f"visit numbers answered: {len(visit_nos)} distinct, expected 1..{opts.slots}")
    in_db = await seed.stored_refusals(db, release_at)
    # every sold-out answer is stored as its key's answer, the gate's included (one INSERT
    # instead of a hold transaction), so the database cannot tell the two apart any more
    fig.notes.append(f"sold-out answers stored under their Idempotency-Key: {in_db} of {fig.sold_out}")
    fig.notes.append(f"warm-up before T0 ({len(warm)} holds): statuses {result.warmup_statuses}")
    if sim is not None and his_setup is not None and server is not None:
        his_notes, fig.his_agrees, fig.his_calls_per_hold = await his_rush.check(
            db, sim, his_setup, slot_id=slot_id, seats=opts.slots, answered=len(result.answers),
            server_log=server.log_path)
        fig.notes += his_notes
    return fig


async def _forget_full(redis_url: str, slot_id: int) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        await client.delete(f"guahao:full:{slot_id}")
    finally:
        await client.aclose()


async def _reference_phases(opts: RushOptions, echo, log_dir: Path) -> list[RushFigures]:
    """The bare endpoint and the raw driver: same N, same K, one seat row each."""
    bare_seat, warm_seat, raw_seat = 1, 2, 3
    seats = {bare_seat: opts.slots, warm_seat: 0}
    pg = opts.database == "postgresql"
    pools = [p for p in opts.raw_pools if p > 0] if pg else [1]
    seats.update({raw_seat + i: opts.slots for i in range(len(pools))})
    scratch = ScratchPostgres("guahao_bench_ref", opts.pg_admin_url) if pg else None
    out: list[RushFigures] = []
    try:
        if scratch is not None:
            dsn = asyncpg_dsn(await scratch.create())
            await refs.prepare_seats_pg(dsn, seats)
        else:
            dsn = str(log_dir / "bench-ref.db")
            refs.prepare_seats_sqlite(dsn, seats)
        env = {"GUAHAO_BENCH_DSN": dsn, "GUAHAO_BENCH_POOL_SIZE": str(opts.bare_pool_size)}
        with UvicornServer("guahao.bench.bare_app:app", workers=opts.workers, env=env, name="bare",
                           log_dir=log_dir) as server:
            await server.wait_ready()
            host = f"127.0.0.1:{server.port}"
            fake = [seed.Client(secrets.token_urlsafe(32), 1 + i) for i in range(opts.patients + opts.warmup)]
            requests = _hold_requests(host, "/claim", bare_seat, fake[:opts.patients])
            warm = _hold_requests(host, "/claim", warm_seat, fake[opts.patients:])
            conns = f"asyncpg pool {opts.bare_pool_size}" if pg else "one aiosqlite connection"
            echo(f"bare endpoint: uvicorn with {opts.workers} worker(s), {conns} each; "
                 f"firing {len(requests)} claims through {opts.connections} connections")
            cpu_before = server.cpu_seconds()
            result = await loadgen.fire("127.0.0.1", server.port, requests, connections=opts.connections,
                                        start_wall=time.time() + 1.5, warmup=warm)
            cpu_used = server.cpu_seconds() - cpu_before
        fig = figures("bare endpoint", result.answers, result.t0, opts.slots)
        fig.server_cpu_ms_per_answer = round(1000 * cpu_used / max(1, len(result.answers) + len(warm)), 3)
        fig.winners_in_db = await refs.taken_pg(dsn, bare_seat) if pg else refs.taken_sqlite(dsn, bare_seat)
        out.append(fig)
        for i, pool in enumerate(pools):
            seat = raw_seat + i
            if pg:
                size = min(pool, opts.connections)
                echo(f"raw asyncpg: {opts.patients} claims by {opts.connections} tasks over a pool of {size}")
                result = await refs.raw_pg(dsn, seat, opts.patients, concurrency=opts.connections, pool_size=size)
                fig = figures(f"raw asyncpg, pool {size}", result.answers, result.t0, opts.slots)
                fig.winners_in_db = await refs.taken_pg(dsn, seat)
            else:
                echo(f"raw sqlite3: {opts.patients} claim transactions on one connection")
                result = await asyncio.to_thread(refs.raw_sqlite, dsn, seat, opts.patients)
                fig = figures("raw sqlite3, 1 writer", result.answers, result.t0, opts.slots)
                fig.winners_in_db = refs.taken_sqlite(dsn, seat)
            out.append(fig)
        return out
    finally:
        if scratch is not None:
            await scratch.drop()


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpus": str(os.cpu_count()), "cpu": cpu, "memory": mem,
            "date": dt.datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
