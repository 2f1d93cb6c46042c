"""Figures of one rush and the printed comparison table."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

from guahao.bench.loadgen import Answer

# the goals of issue 11 for 5,000 patients, 100 slots, 256 connections, PostgreSQL, 2 workers
TARGET_ALL_ANSWERED_S = 2.5
TARGET_WINNER_P99_MS = 800.0
TARGET_SOLD_OUT_P99_MS = 250.0
TARGET_RATIO_TO_BARE = 0.8


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class RushFigures:
    label: str
    requests: int
    capacity: int
    answers_per_s: float
    all_answered_s: float  # T0 -> the last answer
    sold_out_s: float | None  # T0 -> the last winner's answer
    winners: int
    sold_out: int
    http_5xx: int
    transport_errors: int
    other: dict[str, int]
    winner_p50_ms: float | None
    winner_p99_ms: float | None
    sold_out_p50_ms: float | None
    sold_out_p99_ms: float | None
    # the same percentiles counted from T0 instead of from the moment the request was sent
    winner_p99_since_t0_ms: float | None
    sold_out_p99_since_t0_ms: float | None
    winners_in_db: int | None = None
    distinct_visit_nos: int | None = None
    # realtime mode (--his-mode realtime): HIS calls per hold that reached the HIS, and
    # whether the HIS's pool agrees with our live bookings (None: no HIS in this run)
    his_calls_per_hold: float | None = None
    his_agrees: bool | None = None
    # CPU time of the server's processes during the rush, per answer (bench/servers.py)
    server_cpu_ms_per_answer: float | None = None
    # peak resident memory of each worker process (VmHWM), MiB
    worker_peak_rss_mib: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def oversell_ok(self) -> bool:
        in_db = self.winners_in_db if self.winners_in_db is not None else self.winners
        return self.winners == self.capacity == in_db and self.his_agrees is not False and (
            self.distinct_visit_nos is None or self.distinct_visit_nos == self.capacity)

    def as_dict(self) -> dict:
        return {**asdict(self), "oversell_ok": self.oversell_ok}


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 2 if x < 0.01 else 1)


def figures(label: str, answers: list[Answer], t0: float, capacity: int) -> RushFigures:
    wins = [a for a in answers if a.status == 201]
    codes = {a.index: a.code for a in answers if a.status >= 400}
    sold = [a for a in answers if codes.get(a.index) == "slot_sold_out"]
    other: Counter[str] = Counter()
    for a in answers:
        if a.status == 0:
            other[f"transport: {(a.error or '')[:60]}"] += 1
        elif a.status != 201 and codes.get(a.index) != "slot_sold_out":
            other[f"{a.status} {codes.get(a.index) or ''}".strip()] += 1
    last = max((a.done for a in answers), default=t0)
    elapsed = max(last - t0, 1e-9)
    return RushFigures(
        label=label, requests=len(answers), capacity=capacity, answers_per_s=round(len(answers) / elapsed, 1),
        all_answered_s=round(elapsed, 3),
        sold_out_s=round(max(a.done for a in wins) - t0, 3) if wins else None,
        winners=len(wins), sold_out=len(sold), http_5xx=sum(1 for a in answers if a.status >= 500),
        transport_errors=sum(1 for a in answers if a.status == 0), other=dict(other),
        winner_p50_ms=_ms(percentile([a.done - a.sent for a in wins], 50)),
        winner_p99_ms=_ms(percentile([a.done - a.sent for a in wins], 99)),
        sold_out_p50_ms=_ms(percentile([a.done - a.sent for a in sold], 50)),
        sold_out_p99_ms=_ms(percentile([a.done - a.sent for a in sold], 99)),
        winner_p99_since_t0_ms=_ms(percentile([a.done - t0 for a in wins], 99)),
        sold_out_p99_since_t0_ms=_ms(percentile([a.done - t0 for a in sold], 99)),
    )


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 10 else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    return str(value)


def table(results: list[RushFigures]) -> str:
    rows = [
        ("answers (decisions) / s", lambda r: r.answers_per_s),
        ("time until sold out, s", lambda r: r.sold_out_s),
        ("time until all answered, s", lambda r: r.all_answered_s),
        ("winners p50 / p99, ms", lambda r: f"{_fmt(r.winner_p50_ms)} / {_fmt(r.winner_p99_ms)}"),
        ("sold-out p50 / p99, ms", lambda r: f"{_fmt(r.sold_out_p50_ms)} / {_fmt(r.sold_out_p99_ms)}"),
        ("p99 since T0 win / sold-out, ms",
         lambda r: f"{_fmt(r.winner_p99_since_t0_ms)} / {_fmt(r.sold_out_p99_since_t0_ms)}"),
        ("winners: answers / DB", lambda r: f"{r.winners} / {_fmt(r.winners_in_db)}"),
        ("sold-out answers", lambda r: r.sold_out),
        ("5xx / transport errors", lambda r: f"{r.http_5xx} / {r.transport_errors}"),
        ("other answers", lambda r: ", ".join(f"{k}: {v}" for k, v in r.other.items()) or "0"),
        ("oversell check", lambda r: "ok" if r.oversell_ok else "FAILED"),
        ("server CPU per answer, ms", lambda r: r.server_cpu_ms_per_answer),
        ("peak RSS per worker, MiB", lambda r: " / ".join(f"{m:.0f}" for m in r.worker_peak_rss_mib) or "-"),
    ]
    head = [""] + [r.label for r in results]
    body = [[name] + [_fmt(get(r)) for r in results] for name, get in rows]
    if results:
        base = results[0].answers_per_s
        body.append([f"{results[0].label} / this (answers/s)"] + [f"{base / r.answers_per_s:.2f}" for r in results])
    widths = [max(len(str(row[i])) for row in [head] + body) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head] + body)


def target_lines(g: RushFigures, bare: RushFigures | None) -> list[str]:
    """Where guahao stands against the goals of the issue (goals, not tests)."""
    def mark(ok: bool | None) -> str:
        return "n/a " if ok is None else "MET " if ok else "MISS"

    ratio = g.answers_per_s / bare.answers_per_s if bare else None
    return [
        f"[{mark(g.all_answered_s <= TARGET_ALL_ANSWERED_S)}] every patient answered within "
        f"{TARGET_ALL_ANSWERED_S:g} s: {g.all_answered_s:.2f} s",
        f"[{mark(g.winner_p99_ms is not None and g.winner_p99_ms < TARGET_WINNER_P99_MS)}] winners p99 < "
        f"{TARGET_WINNER_P99_MS:g} ms: {_fmt(g.winner_p99_ms)} ms",
        f"[{mark(g.sold_out_p99_ms is not None and g.sold_out_p99_ms < TARGET_SOLD_OUT_P99_MS)}] sold-out p99 < "
        f"{TARGET_SOLD_OUT_P99_MS:g} ms: {_fmt(g.sold_out_p99_ms)} ms",
        f"[{mark(g.http_5xx == 0 and g.transport_errors == 0)}] zero 5xx: {g.http_5xx} (transport errors "
        f"{g.transport_errors})",
        f"[{mark(g.oversell_ok)}] exactly {g.capacity} winners: {g.winners} in answers, {_fmt(g.winners_in_db)} in DB",
        f"[{mark(None if ratio is None else ratio >= TARGET_RATIO_TO_BARE)}] decisions/s >= "
        f"{TARGET_RATIO_TO_BARE:g} x bare endpoint: " + ("-" if ratio is None else f"{ratio:.2f}"),
    ] + ([f"[info] server CPU per answer: guahao {_fmt(g.server_cpu_ms_per_answer)} ms, bare endpoint "
          f"{_fmt(bare.server_cpu_ms_per_answer)} ms"] if bare and g.server_cpu_ms_per_answer else [])
