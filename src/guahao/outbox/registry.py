"""Job handlers by outbox topic, and periodic jobs.

A feature registers the consumer of its outbox topics in its own `jobs.py` module:

    from guahao.outbox.registry import JobContext, handler

    @handler("notify.booking_confirmed")
    async def send_confirmation(ctx: JobContext, payload: dict) -> None: ...

Delivery is at least once: a handler may run again after a crash or a lapsed lease, so its
effect must be idempotent (a unique key on the effect, a conditional UPDATE, an idempotent
provider call keyed by our id). Handlers open their own short transactions through
`ctx.db` and never hold a database transaction across network I/O.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from guahao.config import Settings
from guahao.core.clock import Clock
from guahao.core.db import Database


@dataclass
class JobContext:
    db: Database
    clock: Clock
    settings: Settings
    # providers (ports) by name: "sms", "payments", "his", ...; set up by the process
    providers: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}


class RetryLater(Exception):
    """The handler could not finish now (provider down, not yet due); try again later.

    `delay` replaces the exponential backoff. The attempt counts toward the dead-letter limit
    unless `count_attempt=False` (for "not yet due": waiting is not failing).
    """

    def __init__(self, reason: str, *, delay: dt.timedelta | None = None, count_attempt: bool = True) -> None:
        super().__init__(reason)
        self.delay = delay
        self.count_attempt = count_attempt


class PermanentFailure(Exception):
    """Retrying cannot help (bad payload, refused by the provider): dead-letter at once."""


@dataclass(frozen=True)
class HandlerOptions:
    """Per-topic overrides of the worker settings (None: the settings' value)."""

    max_attempts: int | None = None
    timeout: dt.timedelta | None = None


OPTIONS: dict[str, HandlerOptions] = {}


def handler(topic: str, *, max_attempts: int | None = None,
            timeout: dt.timedelta | None = None) -> Callable[[Handler], Handler]:
    """Register the consumer of `topic`. `max_attempts` / `timeout` override the settings
    for this topic (e.g. a HIS write-back that must outlast an hour of HIS downtime)."""

    def register(fn: Handler) -> Handler:
        if topic in HANDLERS and HANDLERS[topic] is not fn:
            raise RuntimeError(f"two handlers for topic {topic}")
        HANDLERS[topic] = fn
        if max_attempts is not None or timeout is not None:
            OPTIONS[topic] = HandlerOptions(max_attempts, timeout)
        return fn

    return register


@dataclass(frozen=True)
class PeriodicJob:
    """Enqueued once per time bucket (dedupe key `periodic:<topic>:<bucket start>`), so any
    number of workers scheduling it produce one message per bucket."""

    topic: str
    every: dt.timedelta


PERIODIC: list[PeriodicJob] = []


def periodic(topic: str, every: dt.timedelta) -> None:
    job = PeriodicJob(topic, every)
    if job not in PERIODIC:
        PERIODIC.append(job)
