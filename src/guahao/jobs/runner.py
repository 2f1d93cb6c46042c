"""The job worker: claims due outbox messages, runs their handlers, retries, dead-letters.

Our own code rather than a task-queue library (DESIGN 8): the messages are rows written in the
business transaction that causes them, so the queue must be that table, on SQLite as on
PostgreSQL, with no broker. The queue operations and their concurrency story are in
guahao.outbox.service; this module is the loop around them:

- a message is claimed with a lease (`job_lease_seconds`); while its handler runs, a heartbeat
  extends the lease every third of it, so the lease lapses only when the worker died or
  stalled, and then another worker reclaims the message (at-least-once delivery);
- handlers run outside any transaction of ours, at most `job_concurrency` at once, each with a
  timeout; the result is recorded only while we still hold the lease;
- failures are retried with exponential backoff and jitter, and dead-lettered after
  `job_max_attempts` (or at once on PermanentFailure / unknown topic) for operators to see;
- periodic jobs are enqueued once per time bucket by every worker (guahao.jobs.scheduler).

Time comes from the injected clock; only the waits between polls are real sleeps. `drain`
processes what is due and returns (tests, with a FrozenClock); `run_worker` is the
`guahao worker` process; `start_background` is the in-process worker of `guahao serve`.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import os
import random
import signal
import socket
import time
import uuid
from contextlib import suppress
from typing import Any

import structlog

from guahao.config import Settings
from guahao.core.clock import Clock, SystemClock
from guahao.core.db import Database
from guahao.core.logging import scrub
from guahao.jobs import handlers, metrics
from guahao.jobs.scheduler import schedule_periodic
from guahao.outbox import registry
from guahao.outbox import service as outbox
from guahao.outbox.registry import JobContext, PermanentFailure, RetryLater
from guahao.outbox.service import Claim

log = structlog.get_logger("guahao.jobs")
ERROR_TEXT_MAX = 300


@dataclasses.dataclass(frozen=True)
class JobConfig:
    lease: dt.timedelta = dt.timedelta(seconds=60)
    max_attempts: int = 8
    poll_seconds: float = 0.5
    concurrency: int = 4
    timeout: dt.timedelta = dt.timedelta(minutes=5)  # per handler run; a topic may override it
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 30 * 60
    periodic: bool = True  # enqueue the periodic jobs from this worker

    @classmethod
    def from_settings(cls, settings: Any) -> JobConfig:
        # getattr: the settings fields arrive with config.py; until then the defaults hold
        def get(name: str, default: Any) -> Any:
            value = getattr(settings, name, None)
            return default if value is None else value

        return cls(lease=dt.timedelta(seconds=float(get("job_lease_seconds", 60))),
                   max_attempts=int(get("job_max_attempts", 8)),
                   poll_seconds=float(get("job_poll_seconds", 0.5)),
                   concurrency=max(1, int(get("job_concurrency", 4))),
                   timeout=dt.timedelta(seconds=float(get("job_timeout_seconds", 300))))

    def replace(self, **changes: Any) -> JobConfig:
        return dataclasses.replace(self, **changes)


def backoff(attempt: int, config: JobConfig, rng: random.Random | None = None) -> dt.timedelta:
    """Exponential with "equal jitter": attempt n waits between half and all of
    base * 2^(n-1) seconds, capped, so retries of many messages failing together spread out."""
    ceiling = min(config.backoff_cap_seconds, config.backoff_base_seconds * 2 ** max(0, attempt - 1))
    return dt.timedelta(seconds=ceiling / 2 + (rng or random).uniform(0, ceiling / 2))


def describe_error(exc: BaseException) -> str:
    """Exception type and a truncated message, scrubbed of ID and phone numbers. Handlers must
    not put personal data in exception messages; this is the safety net, not the rule."""
    text = str(exc) if not isinstance(exc, TimeoutError) else "handler timed out"
    text = scrub(text.replace("\n", " "))
    if len(text) > ERROR_TEXT_MAX:
        text = text[:ERROR_TEXT_MAX] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Worker:
    """One process's job loop. `claim` + `process` are the steps `drain` and `run` share."""

    def __init__(self, ctx: JobContext, config: JobConfig, *, name: str | None = None) -> None:
        self.ctx = ctx
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._leases: collections.Counter[str] = collections.Counter()  # token -> running claims
        self._seen_buckets: dict[str, str] = {}
        self._poll_failures = 0

    # --- steps -----------------------------------------------------------------------------

    async def claim(self, limit: int) -> list[Claim]:
        now = self.ctx.clock.now()
        token = uuid.uuid4().hex
        async with self.ctx.db.begin() as session:
            claims = await outbox.claim_due(session, now=now, lease=self.config.lease, limit=limit, token=token)
        if claims:
            self._leases[token] += len(claims)
            lags = [max(0.0, (now - c.available_at).total_seconds()) for c in claims]
            for c, lag in zip(claims, lags):
                metrics.START_LAG.labels(metrics.label(c.topic)).observe(lag)
            metrics.QUEUE_LAG.set(max(lags))
        else:
            metrics.QUEUE_LAG.set(0)
        return claims

    async def process(self, claim: Claim) -> str:
        """Run one claimed message to an outcome: done, retry, dead or lost (lease)."""
        with structlog.contextvars.bound_contextvars(message_id=claim.id, topic=claim.topic,
                                                     attempt=claim.attempts):
            metrics.RUNNING.inc()
            try:
                return await self._process(claim)
            finally:
                metrics.RUNNING.dec()
                self._leases[claim.token] -= 1
                if self._leases[claim.token] <= 0:
                    del self._leases[claim.token]

    async def _process(self, claim: Claim) -> str:
        fn = registry.HANDLERS.get(claim.topic)
        options = registry.OPTIONS.get(claim.topic) or registry.HandlerOptions()
        max_attempts = options.max_attempts or self.config.max_attempts
        if fn is None:
            return await self._dead(claim, f"UnknownTopic: no handler is registered for topic {claim.topic!r}")
        if claim.attempts > max_attempts:
            # the last allowed attempt was claimed but never finished: its worker crashed or stalled
            return await self._dead(claim, f"LeaseLapsed: attempt {claim.attempts - 1} of {max_attempts} "
                                           "never finished (worker crashed or stalled)")
        timeout = (options.timeout or self.config.timeout).total_seconds()
        started = time.perf_counter()
        failure: Exception | None = None
        try:
            await asyncio.wait_for(fn(self.ctx, claim.payload), timeout)
        except Exception as exc:  # every handler failure is recorded; CancelledError is not caught
            failure = exc
        elapsed = time.perf_counter() - started
        metrics.DURATION.labels(metrics.label(claim.topic)).observe(elapsed)
        if isinstance(failure, PermanentFailure):
            return await self._dead(claim, describe_error(failure))
        if isinstance(failure, RetryLater):
            return await self._retry(claim, failure, max_attempts, delay=failure.delay,
                                     count_attempt=failure.count_attempt)
        if failure is not None:
            return await self._retry(claim, failure, max_attempts)
        if not await self._finish(claim, outbox.mark_done, now=self.ctx.clock.now()):
            return "lost"
        metrics.PROCESSED.labels(metrics.label(claim.topic)).inc()
        log.info("job_done", duration_ms=round(elapsed * 1000))
        return "done"

    async def _retry(self, claim: Claim, exc: Exception, max_attempts: int, *, delay: dt.timedelta | None = None,
                     count_attempt: bool = True) -> str:
        error = describe_error(exc)
        if count_attempt and claim.attempts >= max_attempts:
            return await self._dead(claim, error)
        delay = delay if delay is not None else backoff(claim.attempts, self.config)
        at = self.ctx.clock.now() + delay
        if not await self._finish(claim, outbox.mark_retry, at=at, error=error, count_attempt=count_attempt):
            return "lost"
        metrics.FAILED.labels(metrics.label(claim.topic)).inc()
        log.warning("job_retry", error=error, retry_in_s=round(delay.total_seconds(), 1))
        return "retry"

    async def _dead(self, claim: Claim, error: str) -> str:
        if not await self._finish(claim, outbox.mark_dead, now=self.ctx.clock.now(), error=error):
            return "lost"
        metrics.DEAD.labels(metrics.label(claim.topic)).inc()
        log.error("job_dead", error=error)
        return "dead"

    async def _finish(self, claim: Claim, mark, **kwargs: Any) -> bool:
        try:
            async with self.ctx.db.begin() as session:
                owned = await mark(session, claim, **kwargs)
        except Exception as exc:  # database trouble: the lease lapses and the message runs again
            log.error("job_finish_failed", error=describe_error(exc))
            return False
        if not owned:
            metrics.LEASE_LOST.labels(metrics.label(claim.topic)).inc()
            log.warning("job_lease_lost")
        return owned

    # --- the loop ----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Claim nothing more; `run` returns once the running jobs finished."""
        self._stop.set()

    def cancel_running(self) -> None:
        """Abandon the running jobs (their leases lapse and another worker runs them again)."""
        for task in list(self._tasks):
            task.cancel()

    async def run(self) -> None:
        log.info("worker_started", worker=self.name, concurrency=self.config.concurrency,
                 lease_s=self.config.lease.total_seconds(), handlers=len(registry.HANDLERS))
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while not self._stop.is_set():
                claimed = await self._tick()
                if claimed and len(self._tasks) < self.config.concurrency:
                    continue  # the batch was not full of due work only if nothing more is due
                await self._wait(self._poll_delay())
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            heartbeat.cancel()
            with suppress(asyncio.CancelledError):
                await heartbeat
            log.info("worker_stopped", worker=self.name)

    async def _tick(self) -> int:
        try:
            if self.config.periodic:
                await schedule_periodic(self.ctx, seen=self._seen_buckets)
            free = self.config.concurrency - len(self._tasks)
            claims = await self.claim(free) if free > 0 else []
        except Exception as exc:  # database unreachable or busy: keep polling, more slowly
            self._poll_failures += 1
            log.warning("worker_poll_failed", error=describe_error(exc), failures=self._poll_failures)
            return 0
        self._poll_failures = 0
        for claim in claims:
            task = asyncio.create_task(self.process(claim))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
        return len(claims)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug of ours, not a handler failure
            log.error("job_crashed", error=describe_error(task.exception()))

    def _poll_delay(self) -> float:
        if not self._poll_failures:
            return self.config.poll_seconds
        return min(30.0, self.config.poll_seconds * 2 ** min(self._poll_failures, 10))

    async def _wait(self, timeout: float) -> None:
        """Until the poll interval passed, a running job finished (a slot is free) or a stop."""
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({stop, *self._tasks}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    async def _heartbeat(self) -> None:
        interval = max(0.05, self.config.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                tokens = list(self._leases)
                now = self.ctx.clock.now()
                if tokens:
                    async with self.ctx.db.begin() as session:
                        await outbox.extend_leases(session, tokens, until=now + self.config.lease)
                async with self.ctx.db.read() as session:
                    oldest = await outbox.oldest_due(session, now=now)
                metrics.QUEUE_LAG.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0)
            except Exception as exc:
                log.warning("worker_heartbeat_failed", error=describe_error(exc))


async def drain(ctx: JobContext, *, max_messages: int | None = None, config: JobConfig | None = None,
                periodic: bool = False) -> int:
    """Process messages until none is due (by ctx.clock) or `max_messages` were processed;
    returns how many were. With `periodic`, enqueue this bucket's periodic jobs first."""
    worker = Worker(ctx, config or JobConfig.from_settings(ctx.settings))
    if periodic:
        await schedule_periodic(ctx)
    processed = 0
    while max_messages is None or processed < max_messages:
        limit = worker.config.concurrency
        if max_messages is not None:
            limit = min(limit, max_messages - processed)
        claims = await worker.claim(limit)
        if not claims:
            break
        await asyncio.gather(*(worker.process(c) for c in claims))
        processed += len(claims)
    return processed


class BackgroundWorker:
    """The handle `start_background` returns; `stop()` lets the running jobs finish."""

    def __init__(self, worker: Worker, task: asyncio.Task) -> None:
        self.worker = worker
        self.task = task

    async def stop(self, grace: float = 30.0) -> None:
        self.worker.request_stop()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), grace)
        except TimeoutError:
            self.worker.cancel_running()
            with suppress(asyncio.CancelledError):
                await self.task


async def start_background(db: Database, clock: Clock, settings: Settings, providers: dict[str, Any], *,
                           config: JobConfig | None = None) -> BackgroundWorker:
    """The in-process worker of `guahao serve` (embedded default), sharing the app's database."""
    handlers.load(settings)
    ctx = JobContext(db=db, clock=clock, settings=settings, providers=providers)
    worker = Worker(ctx, config or JobConfig.from_settings(settings))
    task = asyncio.create_task(worker.run(), name="guahao-jobs")
    task.add_done_callback(_report_crash)
    return BackgroundWorker(worker, task)


def _report_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("worker_crashed", error=describe_error(task.exception()))


async def run_worker(settings: Settings, *, config: JobConfig | None = None, clock: Clock | None = None) -> None:
    """`guahao worker`: run until SIGTERM / SIGINT, then finish the running jobs and exit.
    A second signal abandons them (their leases lapse; another worker runs them again)."""
    from guahao.core import crypto
    from guahao.core.db import create_database
    from guahao.core.logging import configure_logging
    from guahao.providers import build_providers

    configure_logging(json=settings.log_json, log_file=settings.log_file)
    crypto.configure_from(settings)
    loaded = handlers.load(settings)
    config = config or JobConfig.from_settings(settings)
    # every running job, the claimer and the heartbeat may each hold a connection
    db = create_database(settings.database_url, pool_size=max(settings.db_pool_size, config.concurrency + 2))
    ctx = JobContext(db=db, clock=clock or SystemClock(), settings=settings, providers=build_providers(settings))
    worker = Worker(ctx, config)
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if worker.stopping:
            log.warning("worker_abandoning_jobs", signal=name)
            worker.cancel_running()
        else:
            log.info("worker_stopping", signal=name)
            worker.request_stop()

    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig.name)
    log.info("worker_modules", modules=loaded)
    try:
        await worker.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await db.dispose()
