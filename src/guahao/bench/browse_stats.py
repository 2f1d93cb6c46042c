"""Figures of the browse storm: rate and latency per polled endpoint, and staleness.

Staleness is measured against the database's own record of the changes: the true remaining
count of the polled slot is a step function of time (capacity, minus one at each hold's
`created_at`, plus one at each cancellation's event time). Both are the server's clock at the
start of the writing transaction, a little before its commit, so the figures are an upper
bound (a poll that reached the server between the start and the commit is counted stale).

- An answer is *fresh* when the count it shows was the true count at some instant between
  sending the request and reading the answer. Otherwise its *staleness* is how old its
  count was when the request was sent: the time since the count last had that value.
- A change is *seen by every poller* once each poller (per endpoint) has had an answer whose
  count is at least as new as the change; the figure is the time from the change to the
  last of those answers. It includes the polling interval (a poller asks once a second).
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from guahao.bench.report import percentile


@dataclass(slots=True)
class Poll:
    endpoint: str
    poller: int
    sent: float  # wall clock (time.time()) when the request was written
    done: float  # wall clock when the whole answer was read
    status: int  # 0 = transport error
    remaining: int | None  # the polled slot's remaining count in the answer, None if it shows none


class Timeline:
    """The true remaining count of one slot over time, from (instant, delta) changes."""

    def __init__(self, start_value: int, changes: list[tuple[float, int]]) -> None:
        self.changes = sorted(changes)
        self.times = [float("-inf")] + [t for t, _ in self.changes]
        values = [start_value]
        for _, delta in self.changes:
            values.append(values[-1] + delta)
        self.values = values
        # per value: the segments [start, end) during which the count had it
        self.segments: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for i, v in enumerate(values):
            end = self.times[i + 1] if i + 1 < len(self.times) else float("inf")
            self.segments[v].append((self.times[i], end))

    def value_at(self, t: float) -> int:
        return self.values[bisect.bisect_right(self.times, t) - 1]

    def matching_time(self, value: int, sent: float, done: float) -> float | None:
        """The latest instant <= done at which the count was `value` (None: never was)."""
        best = None
        for start, end in self.segments.get(value, ()):
            if start > done:
                break
            best = done if done < end else end - 1e-6  # the end itself belongs to the next value
        return best

    def staleness(self, value: int, sent: float, done: float) -> float | None:
        """0 for a fresh answer, else seconds since the count last was `value` (None: never)."""
        when = self.matching_time(value, sent, done)
        if when is None:
            return None
        return max(0.0, sent - when)


@dataclass
class EndpointFigures:
    endpoint: str
    requests: int
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    http_5xx: int
    other_errors: int  # transport errors and other non-200 answers
    with_count: int  # answers that showed the slot's remaining count
    stale_answers: int
    staleness_p99_ms: float | None  # over the answers that showed a count (fresh ones count 0)
    staleness_max_ms: float | None
    never_true: int  # answers with a count the slot never had (should be 0)
    changes: int  # changes of the count during the polling window
    all_seen_max_ms: float | None  # the slowest change to reach every poller
    unseen: int  # (change, poller) pairs never seen before the window ended


@dataclass
class BrowseFigures:
    label: str
    window_s: float
    requests_per_s: float
    pollers: int
    missed_ticks: int  # polls skipped because the previous one of that poller was still running
    endpoints: list[EndpointFigures]
    server_cpu_ms_per_request: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def endpoint_figures(endpoint: str, polls: list[Poll], window_s: float, timeline: Timeline | None,
                     window: tuple[float, float]) -> EndpointFigures:
    ok = [p for p in polls if p.status == 200]
    lat = [p.done - p.sent for p in ok]
    counted = [p for p in ok if p.remaining is not None]
    stale, never = [], 0
    changes, all_seen, unseen = 0, None, 0
    if timeline is not None:
        for p in counted:
            s = timeline.staleness(p.remaining, p.sent, p.done)
            if s is None:
                never += 1
            else:
                stale.append(s)
        events = [t for t, _ in timeline.changes if window[0] <= t <= window[1]]
        changes = len(events)
        by_poller: dict[int, list[Poll]] = defaultdict(list)
        for p in counted:
            by_poller[p.poller].append(p)
        worst = []
        for answers in by_poller.values():
            answers.sort(key=lambda p: p.done)
            prefix, best = [], float("-inf")
            for p in answers:
                m = timeline.matching_time(p.remaining, p.sent, p.done)
                best = max(best, m if m is not None else float("-inf"))
                prefix.append(best)
            for t in events:
                i = bisect.bisect_left(prefix, t)
                if i == len(answers):
                    unseen += 1
                else:
                    worst.append(answers[i].done - t)
        all_seen = max(worst) if worst else None
    return EndpointFigures(
        endpoint=endpoint, requests=len(polls), requests_per_s=round(len(ok) / max(window_s, 1e-9), 1),
        p50_ms=_ms(percentile(lat, 50)), p99_ms=_ms(percentile(lat, 99)),
        http_5xx=sum(1 for p in polls if p.status >= 500),
        other_errors=sum(1 for p in polls if p.status != 200 and p.status < 500),
        with_count=len(counted), stale_answers=sum(1 for s in stale if s > 0),
        staleness_p99_ms=_ms(percentile(stale, 99)), staleness_max_ms=_ms(max(stale)) if stale else None,
        never_true=never, changes=changes, all_seen_max_ms=_ms(all_seen), unseen=unseen)


def browse_figures(label: str, polls: list[Poll], *, pollers: int, window: tuple[float, float],
                   timeline: Timeline | None, missed_ticks: int = 0) -> BrowseFigures:
    window_s = window[1] - window[0]
    by_endpoint: dict[str, list[Poll]] = defaultdict(list)
    for p in polls:
        by_endpoint[p.endpoint].append(p)
    endpoints = [endpoint_figures(name, items, window_s, timeline, window) for name, items in by_endpoint.items()]
    total = sum(1 for p in polls if p.status == 200)
    return BrowseFigures(label=label, window_s=round(window_s, 2), requests_per_s=round(total / window_s, 1),
                         pollers=pollers, missed_ticks=missed_ticks, endpoints=endpoints)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}"
    return str(v)


def table(results: list[BrowseFigures]) -> str:
    """One row per (run, endpoint)."""
    head = ["run / endpoint", "req/s", "p50 ms", "p99 ms", "5xx/other", "stale", "stale p99/max ms",
            "every poller saw a change within, ms (changes, unseen)"]
    rows = []
    for r in results:
        rows.append([f"{r.label} (all, {r.pollers} pollers)", _fmt(r.requests_per_s), "", "", "", "", "",
                     f"CPU {_fmt(r.server_cpu_ms_per_request)} ms/request, missed ticks {r.missed_ticks}"])
        for e in r.endpoints:
            rows.append([f"  {e.endpoint}", _fmt(e.requests_per_s), _fmt(e.p50_ms), _fmt(e.p99_ms),
                         f"{e.http_5xx}/{e.other_errors}",
                         f"{e.stale_answers}/{e.with_count}" + (f" ({e.never_true} never true)" if e.never_true
                                                                else ""),
                         f"{_fmt(e.staleness_p99_ms)} / {_fmt(e.staleness_max_ms)}",
                         f"{_fmt(e.all_seen_max_ms)} ({e.changes}, {e.unseen})"])
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head] + rows)


TARGET_RATIO = 0.7
TARGET_P99_MS = 200.0
TARGET_STALENESS_MS = 1000.0


def target_lines(g: BrowseFigures, bare: BrowseFigures | None) -> list[str]:
    def mark(ok: bool | None) -> str:
        return "n/a " if ok is None else "MET " if ok else "MISS"

    ratio = g.requests_per_s / bare.requests_per_s if bare and bare.requests_per_s else None
    p99 = max((e.p99_ms for e in g.endpoints if e.p99_ms is not None), default=None)
    stale = max((e.staleness_max_ms for e in g.endpoints if e.staleness_max_ms is not None), default=None)
    lines = [
        f"[{mark(None if ratio is None else ratio >= TARGET_RATIO)}] requests/s >= {TARGET_RATIO:g} x bare "
        f"endpoint: " + ("-" if ratio is None else f"{ratio:.2f}"),
        f"[{mark(None if p99 is None else p99 < TARGET_P99_MS)}] p99 < {TARGET_P99_MS:g} ms on every endpoint: "
        f"worst {_fmt(p99)} ms",
        f"[{mark(None if stale is None else stale <= TARGET_STALENESS_MS)}] staleness <= "
        f"{TARGET_STALENESS_MS:g} ms (age of a count when asked): worst {_fmt(stale)} ms",
    ]
    if bare and bare.server_cpu_ms_per_request and g.server_cpu_ms_per_request:
        lines.append(f"[info] server CPU per request: guahao {_fmt(g.server_cpu_ms_per_request)} ms, bare "
                     f"{_fmt(bare.server_cpu_ms_per_request)} ms "
                     f"({bare.server_cpu_ms_per_request / g.server_cpu_ms_per_request:.2f} x)")
    return lines
