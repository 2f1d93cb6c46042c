"""`guahao bench bots`: a bot's burst of holds from one account at release time, and what it
does to everyone else.

Two releases on the same server, one after the other: P patients (one hold each, K
connections, closed loop) on a schedule released alone, then P other patients on a second
schedule released at the same instant as a bot's B holds (one account, one patient, a new
Idempotency-Key each, its own connections). The per-account hold limit (core/ratelimit.py,
checked before any database work) must refuse the bot cheaply (429 `rate_limited`), and the
other patients' latency with the burst is compared with their latency without it. Every
simulated client comes from 127.0.0.1, so the per-address limit is lifted for the run (it is
the defence against one address cycling many accounts, tested in tests/test_hold_limits.py).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from guahao.bench import loadgen, seed
from guahao.bench.overload import acknowledged_ids, hold_requests, live_booking_ids
from guahao.bench.report import percentile

UTC = dt.UTC


@dataclass
class BotsOptions:
    database: str = "postgresql"
    workers: int = 2
    patients: int = 500  # P, per release
    connections: int = 64  # K, of the patients
    bot_holds: int = 10_000  # B
    bot_connections: int = 128
    keep_logs: bool = False


@dataclass
class Side:
    label: str
    requests: int
    codes: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    answered_per_s: float
    transport_errors: int


@dataclass
class BotsFigures:
    alone: Side
    with_burst: Side
    bot: Side
    acknowledged_in_db: bool
    bot_bookings: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _side(label: str, answers: list[loadgen.Answer], t0: float) -> Side:
    ms = [a.done - a.sent for a in answers]

    def p(q: float) -> float | None:
        v = percentile(ms, q)
        return None if v is None else round(v * 1000, 1)

    last = max((a.done for a in answers), default=t0)
    return Side(label=label, requests=len(answers),
                codes=dict(Counter(str(a.status) if a.status < 400 else f"{a.status} {a.code}" for a in answers)),
                p50_ms=p(50), p99_ms=p(99), max_ms=p(100), answered_per_s=round(len(answers) / max(last - t0, 1e-9), 1),
                transport_errors=sum(1 for a in answers if a.status == 0))


async def run(opts: BotsOptions, echo, log_dir) -> BotsFigures:
    from guahao.bench import service as bench_service

    async with bench_service.running(opts.database, opts.workers, log_dir,
                                     {"GUAHAO_HOLD_LIMIT_PER_ADDRESS": "1000000/minute"}) as svc:
        now = dt.datetime.now(UTC)
        quiet, busy = await svc.released_slot(opts.patients), await svc.released_slot(opts.patients)
        people = await seed.seed_clients(svc.db, 2 * opts.patients + 1, now)
        bot, alone_people, busy_people = people[0], people[1:opts.patients + 1], people[opts.patients + 1:]
        echo(f"guahao: {opts.workers} worker(s) on {opts.database}; seeded {len(people)} accounts")

        echo(f"release 1: {opts.patients} patients alone")
        alone = await loadgen.fire(svc.host, svc.port, hold_requests(svc.host_header, quiet, alone_people),
                                   connections=opts.connections, start_wall=time.time() + 1.0)
        echo(f"release 2: {opts.patients} patients and a bot's {opts.bot_holds} holds at the same instant")
        start = time.time() + 1.5
        crowd, burst = await asyncio.gather(
            loadgen.fire(svc.host, svc.port, hold_requests(svc.host_header, busy, busy_people),
                         connections=opts.connections, start_wall=start),
            loadgen.fire(svc.host, svc.port, hold_requests(svc.host_header, busy, [bot] * opts.bot_holds),
                         connections=opts.bot_connections, start_wall=start))
        in_db_quiet = await live_booking_ids(svc.db, quiet)
        in_db_busy = await live_booking_ids(svc.db, busy)
        bot_ids = acknowledged_ids(burst.answers)
        figures = BotsFigures(
            alone=_side("patients, release alone", alone.answers, alone.t0),
            with_burst=_side("patients, release with the bot", crowd.answers, crowd.t0),
            bot=_side("bot (one account)", burst.answers, burst.t0),
            acknowledged_in_db=(acknowledged_ids(alone.answers) == in_db_quiet
                                and acknowledged_ids(crowd.answers) | bot_ids == in_db_busy),
            bot_bookings=len(bot_ids))
        if "Traceback" in svc.server.log_path.read_text(errors="replace"):
            figures.notes.append(f"server log has tracebacks:\n{svc.server.log_tail(30)}")
        return figures


def table(f: BotsFigures) -> str:
    head = ("who", "requests", "answered/s", "p50 ms", "p99 ms", "max ms", "answers")
    rows = [head]
    for s in (f.alone, f.with_burst, f.bot):
        rows.append((s.label, str(s.requests), f"{s.answered_per_s:,.0f}",
                     *("-" if x is None else f"{x:,.1f}" for x in (s.p50_ms, s.p99_ms, s.max_ms)),
                     ", ".join(f"{k}: {v}" for k, v in sorted(s.codes.items()))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)
