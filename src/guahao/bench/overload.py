"""`guahao bench overload`: holds offered at 1x and 3x the measured capacity of one process.

Admission control (core/admission.py) promises that past its bound a request is refused at
once (503 `overloaded`, `Retry-After`) instead of waiting for a database connection; this
measures it. Phases, one after the other, on the same server and database:

1. capacity: a closed loop (each connection sends its next hold when the last is answered)
   through K connections; holds answered per second is the capacity C.
2. 1x: an open loop offering C holds per second for D seconds (the arrival rate does not slow
   down when the server does: patients do not wait for each other).
3. 3x: the same at 3C per second.

Each phase books its own slot (enough seats for every request, so every admitted hold is a
real claim transaction) with its own patients. Latency is counted from the instant a request
was due (so a client-side queue counts against the server). After each phase the database is
read: the acknowledged holds must be exactly the live bookings of the phase's slot.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field

from guahao.bench import loadgen, seed
from guahao.bench.report import percentile

UTC = dt.UTC
HOLD_PATH = "/api/v1/bookings"


@dataclass(slots=True)
class Shot:
    """One request of an open loop and its outcome."""

    index: int
    status: int  # 0 = no HTTP answer (client timeout or transport error)
    body: bytes
    retry_after: str | None
    due: float  # perf_counter when the request was due
    done: float
    error: str | None = None

    @property
    def code(self) -> str | None:
        return loadgen.Answer(self.index, self.status, self.body, self.due, self.done).code


def _retry_after(head: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            return value.strip().decode("latin-1")
    return None


async def open_loop(host: str, port: int, requests: list[bytes], rate: float, *, timeout: float = 30.0,
                    max_connections: int = 1024) -> list[Shot]:
    """Send request i at start + i / rate whatever happened to the earlier ones, each on an
    idle keep-alive connection or a new one (at most `max_connections` open: past that a
    request waits here, and its latency shows it). An answer slower than `timeout` is a
    timeout (status 0)."""
    idle: list[loadgen.Connection] = []
    gate = asyncio.Semaphore(max_connections)
    perf = time.perf_counter
    start = perf() + 0.1

    async def one(i: int, request: bytes) -> Shot:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - perf()))
        async with gate:
            conn = idle.pop() if idle else loadgen.Connection(host, port)
            try:
                status, body = await asyncio.wait_for(conn.roundtrip(request), timeout)
            except TimeoutError:
                conn.close()
                return Shot(i, 0, b"", None, due, perf(), error="client timeout")
            except Exception as exc:  # counted as a transport error; the connection is dropped
                conn.close()
                return Shot(i, 0, b"", None, due, perf(), error=f"{type(exc).__name__}: {exc}"[:80])
            shot = Shot(i, status, body, _retry_after(conn.head), due, perf())
            idle.append(conn)
            return shot

    shots = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    for conn in idle:
        conn.close()
    return list(shots)


@dataclass
class PhaseFigures:
    label: str
    offered_per_s: float | None  # None for the closed loop
    requests: int
    answered_per_s: float
    ok: int  # 201: a hold
    overloaded: int  # 503 overloaded
    overloaded_without_retry_after: int
    timeouts: int  # no answer within the client's timeout, or a transport error
    other: dict[str, int]
    ok_p50_ms: float | None
    ok_p99_ms: float | None
    ok_max_ms: float | None
    refused_p50_ms: float | None
    refused_p99_ms: float | None
    refused_max_ms: float | None
    acknowledged_in_db: bool | None = None  # the 201s are exactly the slot's live bookings
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _ms(values: list[float], p: float) -> float | None:
    v = percentile(values, p)
    return None if v is None else round(v * 1000, 1)


def phase_figures(label: str, shots: list[Shot], offered: float | None) -> PhaseFigures:
    ok = [s for s in shots if s.status == 201]
    refused = [s for s in shots if s.status == 503 and s.code == "overloaded"]
    other = Counter(f"{s.status} {s.code or s.error or ''}".strip() for s in shots
                    if s.status not in (201, 0) and not (s.status == 503 and s.code == "overloaded"))
    first = min((s.due for s in shots), default=0.0)
    last = max((s.done for s in shots), default=first)
    return PhaseFigures(
        label=label, offered_per_s=None if offered is None else round(offered, 1), requests=len(shots),
        answered_per_s=round(len(shots) / max(last - first, 1e-9), 1), ok=len(ok), overloaded=len(refused),
        overloaded_without_retry_after=sum(1 for s in refused if not s.retry_after),
        timeouts=sum(1 for s in shots if s.status == 0), other=dict(other),
        ok_p50_ms=_ms([s.done - s.due for s in ok], 50), ok_p99_ms=_ms([s.done - s.due for s in ok], 99),
        ok_max_ms=_ms([s.done - s.due for s in ok], 100),
        refused_p50_ms=_ms([s.done - s.due for s in refused], 50),
        refused_p99_ms=_ms([s.done - s.due for s in refused], 99),
        refused_max_ms=_ms([s.done - s.due for s in refused], 100),
    )


def hold_requests(host: str, slot_id: int, clients, *, languages=("zh-CN", "en")) -> list[bytes]:
    """One hold per client (its own Idempotency-Key), alternating the answer's language."""
    return [loadgen.build_request("POST", host, HOLD_PATH, body={"slot_id": slot_id, "patient_id": c.patient_id},
                                  headers={"Authorization": f"Bearer {c.token}", "Idempotency-Key": uuid.uuid4().hex,
                                           "Accept-Language": languages[i % len(languages)]})
            for i, c in enumerate(clients)]


def acknowledged_ids(shots) -> set[int]:
    import json

    return {json.loads(s.body)["id"] for s in shots if s.status == 201}


async def live_booking_ids(db, slot_id: int) -> set[int]:
    from sqlalchemy import select

    from guahao.booking.models import LIVE_STATES, Booking

    async with db.read() as s:
        return set(await s.scalars(select(Booking.id).where(Booking.slot_id == slot_id,
                                                            Booking.state.in_(LIVE_STATES))))


def table(results: list[PhaseFigures]) -> str:
    head = ("phase", "offered/s", "sent", "answered/s", "201", "503", "no Retry-After", "timeouts", "other",
            "201 p50/p99/max ms", "503 p50/p99/max ms", "201s = DB")
    rows = [head]
    for r in results:
        rows.append((r.label, "closed" if r.offered_per_s is None else f"{r.offered_per_s:,.0f}", str(r.requests),
                     f"{r.answered_per_s:,.0f}", str(r.ok), str(r.overloaded), str(r.overloaded_without_retry_after),
                     str(r.timeouts), ", ".join(f"{k}: {v}" for k, v in r.other.items()) or "-",
                     "/".join("-" if x is None else f"{x:,.0f}" for x in (r.ok_p50_ms, r.ok_p99_ms, r.ok_max_ms)),
                     "/".join("-" if x is None else f"{x:,.0f}" for x in (r.refused_p50_ms, r.refused_p99_ms,
                                                                          r.refused_max_ms)),
                     {True: "yes", False: "NO", None: "-"}[r.acknowledged_in_db]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


@dataclass
class OverloadOptions:
    database: str = "postgresql"
    workers: int = 1
    admission: str = "hold=64"  # GUAHAO_ADMISSION_LIMITS of the server
    db_pool_size: int | None = None
    probe: int = 1500  # holds of the capacity phase
    connections: int = 64  # of the capacity phase
    seconds: float = 5.0  # D: length of each open-loop phase
    factor: float = 3.0
    timeout: float = 10.0  # the client's patience
    keep_logs: bool = False


async def run(opts: OverloadOptions, echo, log_dir) -> list[PhaseFigures]:
    from guahao.bench import service as bench_service

    env = {"GUAHAO_ADMISSION_LIMITS": opts.admission, "GUAHAO_HOLD_LIMIT_PER_ADDRESS": "1000000/minute"}
    if opts.db_pool_size:
        env["GUAHAO_DB_POOL_SIZE"] = str(opts.db_pool_size)
    results: list[PhaseFigures] = []
    async with bench_service.running(opts.database, opts.workers, log_dir, env) as svc:
        echo(f"guahao: {opts.workers} worker(s) on {opts.database}, admission {opts.admission}")
        slot, warm_slot = await svc.released_slot(opts.probe), await svc.released_slot(2 * opts.connections)
        clients = await seed.seed_clients(svc.db, opts.probe + 2 * opts.connections, dt.datetime.now(UTC))
        # the warm-up holds (another slot) run before the measured ones on the same connections
        run_ = await loadgen.fire(svc.host, svc.port, hold_requests(svc.host_header, slot, clients[:opts.probe]),
                                  connections=opts.connections, start_wall=time.time() + 0.5,
                                  warmup=hold_requests(svc.host_header, warm_slot, clients[opts.probe:]))
        shots = [Shot(a.index, a.status, a.body, None, a.sent, a.done, a.error) for a in run_.answers]
        probe = phase_figures(f"capacity ({opts.connections} conns)", shots, None)
        probe.acknowledged_in_db = acknowledged_ids(shots) == await live_booking_ids(svc.db, slot)
        results.append(probe)
        capacity = probe.ok / max(max(a.done for a in run_.answers) - run_.t0, 1e-9)
        echo(f"capacity: {capacity:,.0f} holds/s ({probe.ok} of {probe.requests} booked)")
        for factor in (1.0, opts.factor):
            rate = capacity * factor
            count = max(1, int(rate * opts.seconds))
            slot = await svc.released_slot(count)
            clients = await seed.seed_clients(svc.db, count, dt.datetime.now(UTC))
            echo(f"{factor:g}x: {count} holds at {rate:,.0f}/s for {opts.seconds:g} s")
            shots = await open_loop(svc.host, svc.port, hold_requests(svc.host_header, slot, clients), rate,
                                    timeout=opts.timeout)
            fig = phase_figures(f"{factor:g}x capacity", shots, rate)
            fig.acknowledged_in_db = acknowledged_ids(shots) == await live_booking_ids(svc.db, slot)
            results.append(fig)
        if "Traceback" in svc.server.log_path.read_text(errors="replace"):
            results[-1].notes.append(f"server log has tracebacks:\n{svc.server.log_tail(30)}")
    return results
