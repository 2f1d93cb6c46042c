"""Prometheus metrics: the business counters in one module, and how a scrape is rendered.

Call sites change by one line each (`metrics.HOLDS.labels(code).inc()`); label values are
bounded sets (problem codes, fixed words), never ids.

Several processes. `guahao serve --workers N` runs N uvicorn workers; each counts only what it
served. prometheus-client's multiprocess mode makes every process write its values to files in
PROMETHEUS_MULTIPROC_DIR and a scrape (whichever worker answers it) adds them up. `serve`
owns that directory: it makes a fresh one per run (or empties the one given), so numbers from
an earlier run never leak in. The variable must be set before prometheus_client is first
imported in a process, which is why `serve` sets it (guahao.core.metrics_dir) before anything
imports this module.
A worker that died leaves its files: counters keep counting what it did (right for totals),
and its live gauges are removed at the next scrape (`reap_dead`).
"""
from __future__ import annotations

import functools
import glob
import os
import re
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import event
from sqlalchemy.orm import Session

from guahao.core import metrics_dir
from guahao.core.children import process_alive

CONTENT_TYPE = CONTENT_TYPE_LATEST

# --- business counters ---------------------------------------------------------------------
HOLDS = Counter("guahao_holds_total", "Hold requests answered, by outcome: created or the refusal code",
                ["outcome"])
GATE = Counter("guahao_gate_answers_total", "Sold-out gate answers: sold_out (refused early) or pass", ["answer"])
CONFIRMATIONS = Counter("guahao_bookings_confirmed_total", "Bookings that became confirmed")
EXPIRIES = Counter("guahao_holds_expired_total", "Unpaid holds released because their time ran out")
SMS = Counter("guahao_sms_total", "Text messages handed to the SMS provider, by result (sent, failed)", ["result"])
REFUNDS = Counter("guahao_refunds_total",
                  "Refund attempts at the payment provider: succeeded, failed (retried later), refused", ["result"])
DEAD_LETTERS = Counter("guahao_jobs_dead_total", "Jobs moved to the dead-letter state", ["topic"])
# the HIS port arrives with its issue; the counter is here so dashboards can be built now
HIS_CALLS = Counter("guahao_his_calls_total", "Calls to a hospital information system, by operation and outcome",
                    ["operation", "outcome"])
# differences between our bookings and the HIS's orders, counted each time a drift check finds them
HIS_DRIFT = Counter("guahao_his_drift_total", "Booking differences found by HIS drift checks, by kind", ["kind"])
# Scrape-time gauges (computed from the database when /metrics is read, so they are right
# whichever process answers and need no process to keep them fresh):
OUTBOX_LAG = "guahao_outbox_lag_seconds"  # age of the oldest due, still pending outbox message
REFUNDS_PENDING = "guahao_refunds_pending"  # refunds opened and not yet succeeded or failed

_PENDING = "guahao_metrics_on_commit"  # Session.info key: counts waiting for the commit


def hold_answered(status: int, payload: dict) -> None:
    """The booking route's answer to a hold request (replays of a key included)."""
    HOLDS.labels("created" if status < 400 else str(payload.get("code", "error"))).inc()


def counted_gate(known_full):
    """Decorates the sold-out gate's check: every answer it gives is counted."""
    @functools.wraps(known_full)
    async def check(*args, **kwargs) -> bool:
        full = await known_full(*args, **kwargs)
        GATE.labels("sold_out" if full else "pass").inc()
        return full

    return check


def count_on_commit(session, counter, *labels: str) -> None:
    """Count when the caller's transaction commits: an action that is rolled back (a lost
    race, a later refusal in the same transaction) did not happen and is not counted."""
    sync = getattr(session, "sync_session", session)
    sync.info.setdefault(_PENDING, []).append((counter, labels))


@event.listens_for(Session, "after_commit")
def _count_committed(session) -> None:
    for counter, labels in session.info.pop(_PENDING, ()):
        (counter.labels(*labels) if labels else counter).inc()


@event.listens_for(Session, "after_rollback")
def _drop_rolled_back(session) -> None:
    session.info.pop(_PENDING, None)


_PID_FILE = re.compile(r"_(\d+)\.db$")


def multiproc_dir() -> str | None:
    return os.environ.get(metrics_dir.ENV) or None


def reap_dead(path: str) -> list[int]:
    """Drop the live gauges of processes that are gone (a killed worker cannot do it itself)."""
    dead = set()
    for name in glob.glob(os.path.join(path, "gauge_live*.db")):
        match = _PID_FILE.search(name)
        if match and not process_alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)
    return sorted(dead)


class _Scrape:
    """One scrape: this process's registry, or every process's files, plus computed gauges."""

    def __init__(self, extra: Iterable[GaugeMetricFamily] = ()) -> None:
        self.extra = list(extra)

    def collect(self):
        path = multiproc_dir()
        if path:
            reap_dead(path)
            yield from multiprocess.MultiProcessCollector(None, path=path).collect()
        else:
            yield from REGISTRY.collect()
        yield from self.extra


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def scrape_registry(extra: Iterable[GaugeMetricFamily] = ()) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(extra))
    return registry


def render(extra: Iterable[GaugeMetricFamily] = ()) -> bytes:
    return generate_latest(scrape_registry(extra))


def start_http_server(port: int, host: str = "127.0.0.1"):
    """A small /metrics endpoint in a daemon thread, for processes without an HTTP app
    (`guahao worker --metrics-port`). Returns (server, thread)."""
    from prometheus_client import start_http_server as _start

    return _start(port, addr=host, registry=scrape_registry())
