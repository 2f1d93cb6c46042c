"""The job worker in-process, with a frozen clock: delivery, retries with backoff, dead
letters, leases, periodic scheduling and the booking sweep job."""
from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest
from sqlalchemy import func, select, update

from guahao.booking import actions as booking_actions
from guahao.booking.models import Booking
from guahao.core.db import create_database
from guahao.jobs import handlers, runner, scheduler
from guahao.jobs.runner import JobConfig, drain
from guahao.outbox import registry
from guahao.outbox import service as outbox
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import JobContext, PermanentFailure, RetryLater
from tests.booking_builders import make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital

CONFIG = JobConfig(max_attempts=3)


@pytest.fixture
def ctx(db, clock, settings) -> JobContext:
    return JobContext(db=db, clock=clock, settings=settings, providers={})


@pytest.fixture
def calls(monkeypatch):
    """Register test handlers for this test only; returns the payloads they saw, per topic."""
    seen: dict[str, list[dict]] = {}

    def register(topic: str, fn=None, **options):
        async def record(ctx, payload):
            seen.setdefault(topic, []).append(payload)
            if fn is not None:
                await fn(ctx, payload)

        monkeypatch.setitem(registry.HANDLERS, topic, record)
        if options:
            monkeypatch.setitem(registry.OPTIONS, topic, registry.HandlerOptions(**options))
        return seen

    register.seen = seen
    return register


async def put(db, clock, topic: str, key: str, payload: dict | None = None, **extra) -> int:
    async with db.begin() as s:
        await outbox.enqueue(s, topic=topic, dedupe_key=key, payload=payload or {"key": key}, now=clock.now(), **extra)
    async with db.read() as s:
        return await s.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key))


async def message(db, message_id: int) -> OutboxMessage:
    async with db.read() as s:
        return await s.get(OutboxMessage, message_id)


async def test_drain_runs_each_due_message_once_and_marks_it_done(ctx, db, clock, calls):
    calls("test.ok")
    ids = [await put(db, clock, "test.ok", f"ok:{i}") for i in range(10)]
    later = await put(db, clock, "test.ok", "ok:later", available_at=clock.now() + dt.timedelta(minutes=5))

    assert await drain(ctx, config=CONFIG) == 10
    assert sorted(p["key"] for p in calls.seen["test.ok"]) == sorted(f"ok:{i}" for i in range(10))
    for mid in ids:
        m = await message(db, mid)
        assert (m.state, m.attempts, m.done_at, m.lease_token) == ("done", 1, clock.now(), None)
    assert (await message(db, later)).state == "pending"  # not due yet
    assert await drain(ctx, config=CONFIG) == 0

    clock.advance(minutes=5)
    assert await drain(ctx, config=CONFIG) == 1


async def test_drain_stops_at_max_messages(ctx, db, clock, calls):
    calls("test.ok")
    for i in range(5):
        await put(db, clock, "test.ok", f"ok:{i}")
    assert await drain(ctx, max_messages=2, config=CONFIG) == 2
    assert await drain(ctx, config=CONFIG) == 3


async def test_failing_handler_is_retried_with_backoff_then_succeeds(ctx, db, clock, calls):
    failures = iter([ConnectionError("provider down"), ConnectionError("provider down")])

    async def flaky(ctx, payload):
        if (exc := next(failures, None)) is not None:
            raise exc

    calls("test.flaky", flaky)
    mid = await put(db, clock, "test.flaky", "flaky:1")
    delays = []
    for attempt in (1, 2):
        assert await drain(ctx, config=CONFIG) == 1
        m = await message(db, mid)
        assert (m.state, m.attempts, m.last_error) == ("pending", attempt, "ConnectionError: provider down")
        delay = (m.available_at - clock.now()).total_seconds()
        delays.append(delay)
        assert 2 ** (attempt - 1) <= delay <= 2 ** attempt  # base 2 s, doubling, equal jitter
        assert await drain(ctx, config=CONFIG) == 0  # not before its time
        clock.set(m.available_at)

    assert await drain(ctx, config=CONFIG) == 1
    m = await message(db, mid)
    assert (m.state, m.attempts) == ("done", 3)
    assert len(calls.seen["test.flaky"]) == 3


def test_backoff_doubles_with_jitter_up_to_the_cap():
    config = JobConfig()
    rng = random.Random(7)
    for attempt in range(1, 20):
        ceiling = min(1800, 2 * 2 ** (attempt - 1))
        delays = {backoff.total_seconds() for backoff in (runner.backoff(attempt, config, rng) for _ in range(20))}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
    assert runner.backoff(30, config).total_seconds() <= 1800


async def test_dead_letter_after_max_attempts(ctx, db, clock, calls):
    async def broken(ctx, payload):
        raise ValueError("no good")

    calls("test.broken", broken)
    mid = await put(db, clock, "test.broken", "broken:1")
    for _ in range(CONFIG.max_attempts):
        assert await drain(ctx, config=CONFIG) == 1
        clock.advance(hours=1)
    m = await message(db, mid)
    assert (m.state, m.attempts, m.last_error) == ("dead", 3, "ValueError: no good")
    assert m.done_at is not None and m.locked_until is None
    assert await drain(ctx, config=CONFIG) == 0


async def test_topic_option_overrides_max_attempts(ctx, db, clock, calls):
    async def broken(ctx, payload):
        raise ValueError("no good")

    calls("test.patient", broken, max_attempts=5)
    mid = await put(db, clock, "test.patient", "patient:1")
    for _ in range(4):
        await drain(ctx, config=CONFIG)
        clock.advance(hours=1)
    assert (await message(db, mid)).state == "pending"
    await drain(ctx, config=CONFIG)
    assert (await message(db, mid)).state == "dead"


async def test_permanent_failure_dead_letters_at_once(ctx, db, clock, calls):
    async def refuse(ctx, payload):
        raise PermanentFailure("refused by the provider")

    calls("test.refused", refuse)
    mid = await put(db, clock, "test.refused", "refused:1")
    assert await drain(ctx, config=CONFIG) == 1
    m = await message(db, mid)
    assert (m.state, m.attempts, m.last_error) == ("dead", 1, "PermanentFailure: refused by the provider")


async def test_unknown_topic_is_dead_lettered_with_a_clear_error(ctx, db, clock):
    mid = await put(db, clock, "test.nobody_listens", "nobody:1")
    assert await drain(ctx, config=CONFIG) == 1
    m = await message(db, mid)
    assert m.state == "dead" and "no handler is registered for topic 'test.nobody_listens'" in m.last_error


async def test_retry_later_uses_its_delay_and_may_not_count_the_attempt(ctx, db, clock, calls):
    async def not_yet(ctx, payload):
        raise RetryLater("hold still open", delay=dt.timedelta(minutes=2), count_attempt=False)

    calls("test.wait", not_yet)
    mid = await put(db, clock, "test.wait", "wait:1")
    for _ in range(CONFIG.max_attempts + 2):  # waiting is not failing: never dead-lettered
        assert await drain(ctx, config=CONFIG) == 1
        m = await message(db, mid)
        assert (m.state, m.attempts) == ("pending", 0)
        assert m.available_at == clock.now() + dt.timedelta(minutes=2)
        assert m.last_error == "RetryLater: hold still open"
        clock.set(m.available_at)


async def test_handler_timeout_is_a_failure_and_is_retried(ctx, db, clock, calls):
    async def hangs(ctx, payload):
        await asyncio.sleep(30)

    calls("test.hangs", hangs, timeout=dt.timedelta(seconds=0.05))
    mid = await put(db, clock, "test.hangs", "hangs:1")
    assert await drain(ctx, config=CONFIG) == 1
    m = await message(db, mid)
    assert m.state == "pending" and m.last_error == "TimeoutError: handler timed out"


async def test_last_error_carries_no_id_or_phone_number(ctx, db, clock, calls):
    async def leaky(ctx, payload):
        raise ValueError("bad patient 110101199003074514 phone 13812345678 " + "x" * 2000)

    calls("test.leaky", leaky)
    mid = await put(db, clock, "test.leaky", "leaky:1")
    await drain(ctx, config=CONFIG)
    error = (await message(db, mid)).last_error
    assert "110101199003074514" not in error and "13812345678" not in error
    assert "138****5678" in error and len(error) < 400


async def test_lapsed_lease_is_reclaimed_and_the_stale_holder_cannot_finish(ctx, db, clock, calls):
    calls("test.ok")
    mid = await put(db, clock, "test.ok", "ok:1")
    crashed = runner.Worker(ctx, CONFIG)
    [stale] = await crashed.claim(1)  # ... and then the worker "crashes": it never finishes
    assert await drain(ctx, config=CONFIG) == 0  # leased: nobody else may take it

    clock.advance(seconds=CONFIG.lease.total_seconds() - 1)
    assert await drain(ctx, config=CONFIG) == 0
    clock.advance(seconds=2)
    assert await drain(ctx, config=CONFIG) == 1
    m = await message(db, mid)
    assert (m.state, m.attempts) == ("done", 2)
    assert len(calls.seen["test.ok"]) == 1

    async with db.begin() as s:  # the first worker wakes up: its outcome is ignored
        assert await outbox.mark_retry(s, stale, at=clock.now(), error="late") is False
        assert await outbox.mark_done(s, stale, now=clock.now()) is False
    assert (await message(db, mid)).state == "done"


async def test_a_message_whose_last_lease_lapsed_at_max_attempts_is_dead_lettered(ctx, db, clock, calls):
    calls("test.ok")
    mid = await put(db, clock, "test.ok", "ok:1")
    async with db.begin() as s:
        await s.execute(update(OutboxMessage).where(OutboxMessage.id == mid).values(
            state="in_progress", attempts=CONFIG.max_attempts, locked_until=clock.now() - dt.timedelta(seconds=1),
            lease_token="x" * 32))
    assert await drain(ctx, config=CONFIG) == 1
    m = await message(db, mid)
    assert m.state == "dead" and m.last_error.startswith("LeaseLapsed:")
    assert "test.ok" not in calls.seen  # a job that keeps killing its worker is not run again


async def test_heartbeat_keeps_the_lease_of_a_running_job(ctx, db, clock, calls):
    release = asyncio.Event()

    async def slow(ctx, payload):
        await release.wait()

    calls("test.slow", slow)
    mid = await put(db, clock, "test.slow", "slow:1")
    handle = await runner.start_background(db, clock, ctx.settings, {},
                                           config=CONFIG.replace(lease=dt.timedelta(seconds=0.3), poll_seconds=0.02,
                                                                 periodic=False))
    try:
        for _ in range(100):
            if (await message(db, mid)).state == "in_progress":
                break
            await asyncio.sleep(0.02)
        clock.advance(seconds=0.25)
        await asyncio.sleep(0.3)  # the heartbeat ran and moved the lease past the clock
        assert (await message(db, mid)).locked_until > clock.now()
        release.set()
    finally:
        await handle.stop()
    assert (await message(db, mid)).state == "done"


async def test_background_worker_drains_and_stops_gracefully(ctx, db, clock, calls):
    gate = asyncio.Event()

    async def waits(ctx, payload):
        await gate.wait()

    calls("test.ok")
    calls("test.waits", waits)
    ids = [await put(db, clock, "test.ok", f"ok:{i}") for i in range(20)]
    waiting = await put(db, clock, "test.waits", "waits:1")
    handle = await runner.start_background(db, clock, ctx.settings, {},
                                           config=CONFIG.replace(poll_seconds=0.02, periodic=False))
    for _ in range(200):
        async with db.read() as s:
            done = await s.scalar(select(func.count()).where(OutboxMessage.state == "done"))
        if done == 20:
            break
        await asyncio.sleep(0.02)
    stopping = asyncio.create_task(handle.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # it waits for the running job ...
    gate.set()
    await stopping  # ... which finishes
    assert (await message(db, waiting)).state == "done"
    assert [(await message(db, mid)).state for mid in ids] == ["done"] * 20


@pytest.fixture
def two_periodic_jobs(monkeypatch):
    jobs = [registry.PeriodicJob("test.every_minute", dt.timedelta(minutes=1)),
            registry.PeriodicJob("test.every_ten_minutes", dt.timedelta(minutes=10))]
    monkeypatch.setattr(registry, "PERIODIC", jobs)
    return jobs


async def test_two_concurrent_schedulers_in_one_bucket_create_one_message(ctx, db, clock, settings,
                                                                          two_periodic_jobs):
    other_db = create_database(settings.database_url)  # as if another worker process
    other = JobContext(db=other_db, clock=clock, settings=settings)
    try:
        for _ in range(3):
            inserted = await asyncio.gather(*(scheduler.schedule_periodic(c) for c in (ctx, other, ctx, other)))
            async with db.read() as s:
                    keys = list(await s.scalars(select(OutboxMessage.dedupe_key).order_by(OutboxMessage.topic)))
            assert sum(inserted) in (2, 0)
            assert keys == ["periodic:test.every_minute:2026-11-19T02:00:00+00:00",
                            "periodic:test.every_ten_minutes:2026-11-19T02:00:00+00:00"]

        clock.advance(minutes=1)  # next bucket of the one-minute sweep; same ten-minute no-show bucket
        await asyncio.gather(scheduler.schedule_periodic(ctx), scheduler.schedule_periodic(other))
        async with db.read() as s:
            rows = await s.execute(select(OutboxMessage.topic, func.count()).group_by(OutboxMessage.topic))
            counts = dict(rows.all())
        assert counts == {"test.every_minute": 2, "test.every_ten_minutes": 1}
    finally:
        await other_db.dispose()


async def test_the_worker_schedules_only_when_the_bucket_changes(ctx, db, clock, two_periodic_jobs):
    seen: dict[str, str] = {}
    assert await scheduler.schedule_periodic(ctx, seen=seen) == 2
    async with db.begin() as s:  # were it to write again, this would come back
        await s.execute(OutboxMessage.__table__.delete())
    assert await scheduler.schedule_periodic(ctx, seen=seen) == 0
    clock.advance(minutes=1)
    assert await scheduler.schedule_periodic(ctx, seen=seen) == 1  # only the one-minute job's bucket moved


def test_bucket_start_is_aligned_in_utc():
    at = dt.datetime(2026, 11, 19, 2, 7, 31, tzinfo=dt.UTC)
    assert scheduler.bucket_start(at, dt.timedelta(minutes=10)) == at.replace(minute=0, second=0)
    assert scheduler.bucket_start(at, dt.timedelta(minutes=1)) == at.replace(second=0)


async def test_booking_sweep_job_records_a_lapsed_hold_as_expired(ctx, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                   day=dt.date(2026, 11, 21), capacity=1)
    account_id, _ = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    async with db.begin() as s:
        booking = await booking_actions.do_hold(s, account_id=account_id, patient_id=patient, slot_id=slots[0], now=now)
    assert booking.state == "held"

    clock.advance(minutes=16)  # past the 15-minute hold
    assert await drain(ctx, config=CONFIG, periodic=True) >= 2  # the sweep, the no-show marker, notices
    async with db.read() as s:
        assert (await s.get(Booking, booking.id)).state == "expired"
        sweep = await s.scalar(select(OutboxMessage).where(OutboxMessage.topic == "booking.sweep_expired_holds"))
    assert sweep.state == "done"


def test_handlers_load_imports_features_and_plugins(monkeypatch, tmp_path):
    (tmp_path / "jobs_plugin_probe.py").write_text(
        "from guahao.outbox.registry import handler\n\n"
        "@handler('test.probe')\nasync def probe(ctx, payload):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GUAHAO_JOB_PLUGINS", "jobs_plugin_probe")
    # setitem on an absent key makes monkeypatch remove the probe's registration afterwards
    monkeypatch.setitem(registry.HANDLERS, "test.probe", None)
    del registry.HANDLERS["test.probe"]
    loaded = handlers.load()
    assert loaded[0] == "guahao.booking.jobs" and loaded[-1] == "jobs_plugin_probe"
    assert "test.probe" in registry.HANDLERS and "booking.sweep_expired_holds" in registry.HANDLERS

    monkeypatch.setenv("GUAHAO_JOB_PLUGINS", "no_such_plugin_module")
    with pytest.raises(ModuleNotFoundError):  # a named plugin must exist; optional features may not
        handlers.load()
