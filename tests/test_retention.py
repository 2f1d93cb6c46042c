"""Retention purges: old housekeeping rows go, rows still needed stay, in bounded batches,
each purge a periodic job of the worker."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from guahao.accounts.models import AuthSession, SmsCode
from guahao.core.idempotency import IdempotencyKey
from guahao.jobs import handlers
from guahao.notifications.models import SentMessage
from guahao.ops import retention
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import HANDLERS, PERIODIC, JobContext
from guahao.payments.models import PaymentNotification, RejectedNotificationCount
from guahao.staff.models import StaffLoginThrottle
from tests.builders import make_account

DAY = dt.timedelta(days=1)


@pytest.fixture
def ctx(db, clock, settings) -> JobContext:
    return JobContext(db=db, clock=clock, settings=settings)


def rule(topic: str) -> retention.Rule:
    return next(r for r in retention.RULES if r.topic == topic)


async def run(ctx: JobContext, topic: str) -> None:
    await HANDLERS[topic](ctx, {})


async def remaining(db, model, label) -> list:
    async with db.read() as s:
        return sorted(await s.scalars(select(label).order_by(model.id)))


async def add(db, *rows) -> None:
    async with db.begin() as s:
        s.add_all(rows)


def test_every_purge_is_an_hourly_job_the_worker_loads():
    loaded = handlers.load()
    assert "guahao.ops.retention" in loaded
    every = {job.topic: job.every for job in PERIODIC}
    for r in retention.RULES:
        assert every[r.topic] == dt.timedelta(hours=1) and r.topic in HANDLERS


def test_the_periods_are_settings_with_audit_friendly_defaults(settings):
    assert (settings.retention_outbox_done_days, settings.retention_idempotency_days,
            settings.retention_sms_code_days, settings.retention_session_days,
            settings.retention_notification_days) == (30, 7, 1, 30, 180)


async def test_finished_outbox_rows_go_after_30_days_dead_letters_and_work_stay(db, clock, ctx):
    now = clock.now()

    def message(key: str, state: str, done_days_ago: float | None, created_days_ago: float = 400):
        return OutboxMessage(topic="t", dedupe_key=key, payload={}, state=state, attempts=1,
                             available_at=now - created_days_ago * DAY, created_at=now - created_days_ago * DAY,
                             done_at=None if done_days_ago is None else now - done_days_ago * DAY)

    await add(db, message("old-done", "done", 31), message("recent-done", "done", 29),
              message("old-dead", "dead", 300), message("old-pending", "pending", None),
              message("old-running", "in_progress", None), message("retried-then-done", "done", 2))

    await run(ctx, "retention.purge_outbox")

    assert await remaining(db, OutboxMessage, OutboxMessage.dedupe_key) == [
        "old-dead", "old-pending", "old-running", "recent-done", "retried-then-done"]


async def test_idempotency_keys_go_after_7_days(db, clock, ctx):
    now = clock.now()
    account_id, _ = await make_account(db, now)

    def key(name: str, days_ago: float):
        return IdempotencyKey(account_id=account_id, key=name, request_hash="h", status_code=201, response={},
                              created_at=now - days_ago * DAY)

    await add(db, key("eight-days", 8), key("seven-days-and-a-bit", 7.01), key("six-days", 6), key("now", 0))

    await run(ctx, "retention.purge_idempotency_keys")

    assert await remaining(db, IdempotencyKey, IdempotencyKey.key) == ["now", "six-days"]


async def test_sms_codes_go_a_day_after_they_expired(db, clock, ctx):
    now = clock.now()

    def code(name: str, expired_days_ago: float):
        expires = now - expired_days_ago * DAY
        return SmsCode(phone_hash=name, code_hash="c", created_at=expires - dt.timedelta(minutes=5),
                       expires_at=expires)

    await add(db, code("two-days", 2), code("a-day-and-a-minute", 1 + 1 / 1440), code("an-hour", 1 / 24),
              code("still-valid", -1 / 288))

    await run(ctx, "retention.purge_sms_codes")

    assert await remaining(db, SmsCode, SmsCode.phone_hash) == ["an-hour", "still-valid"]


async def test_sessions_go_30_days_after_expiry_or_revocation(db, clock, ctx):
    now = clock.now()
    account_id, _ = await make_account(db, now)  # its own live session stays too

    def session(name: str, expires_days: float, revoked_days_ago: float | None = None):
        return AuthSession(token_hash=name, account_id=account_id, created_at=now - 400 * DAY,
                           expires_at=now + expires_days * DAY,
                           revoked_at=None if revoked_days_ago is None else now - revoked_days_ago * DAY)

    await add(db, session("expired-long-ago", -31), session("expired-lately", -29),
              session("revoked-long-ago", 100, revoked_days_ago=31), session("revoked-lately", 100, 1),
              session("live", 10))

    await run(ctx, "retention.purge_sessions")

    names = await remaining(db, AuthSession, AuthSession.token_hash)
    assert "expired-long-ago" not in names and "revoked-long-ago" not in names
    assert {"expired-lately", "revoked-lately", "live"} <= set(names) and len(names) == 4


async def test_notification_logs_go_after_180_days(db, clock, ctx):
    now = clock.now()
    account_id, _ = await make_account(db, now)

    def sent(key: str, days_ago: float, state: str = "sent"):
        at = now - days_ago * DAY
        return SentMessage(dedupe_key=key, template="reminder", account_id=account_id, locale="zh-CN", state=state,
                           attempts=1, created_at=at, updated_at=at, sent_at=at if state == "sent" else None)

    await add(db, sent("old", 181), sent("old-failed", 200, "failed"), sent("half-year", 179), sent("today", 0))

    await run(ctx, "retention.purge_notification_logs")

    assert await remaining(db, SentMessage, SentMessage.dedupe_key) == ["half-year", "today"]


async def test_a_batch_is_bounded_and_the_job_loops_until_done(db, clock, ctx, settings):
    now = clock.now()
    old = now - 40 * DAY
    await add(db, *[OutboxMessage(topic="t", dedupe_key=f"k{i}", payload={}, state="done", attempts=1,
                                  available_at=old, created_at=old, done_at=old) for i in range(7)])
    r = rule("retention.purge_outbox")

    async with db.begin() as s:
        assert await retention.purge_batch(s, r, settings=settings, now=now, limit=3) == 3
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxMessage)) == 4
        # the oldest rows went first
        assert sorted(await s.scalars(select(OutboxMessage.dedupe_key))) == ["k3", "k4", "k5", "k6"]

    small = JobContext(db=db, clock=clock, settings=settings.model_copy(update={"retention_batch": 3}))
    assert await retention.purge(small, r) == 4
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxMessage)) == 0


async def test_the_periods_follow_the_settings(db, clock, settings):
    now = clock.now()
    account_id, _ = await make_account(db, now)
    await add(db, IdempotencyKey(account_id=account_id, key="three-days", request_hash="h", status_code=201,
                                 response={}, created_at=now - 3 * DAY))
    strict = JobContext(db=db, clock=clock, settings=settings.model_copy(update={"retention_idempotency_days": 2}))

    await run(strict, "retention.purge_idempotency_keys")

    assert await remaining(db, IdempotencyKey, IdempotencyKey.key) == []


async def test_login_counters_go_a_day_after_their_window_and_lock(db, clock, ctx):
    now = clock.now()

    def counter(name: str, window_days_ago: float, locked_until_days: float | None = None):
        return StaffLoginThrottle(username=name, failures=5, window_started_at=now - window_days_ago * DAY,
                                  locked_until=None if locked_until_days is None else now + locked_until_days * DAY)

    await add(db, counter("old-window", 2), counter("old-window-old-lock", 3, -2),
              counter("old-window-lock-ended-lately", 3, -0.5), counter("current-window", 0.01),
              counter("locked-now", 2, 0.01))

    await run(ctx, "retention.purge_login_throttles")

    async with db.read() as s:
        names = sorted(await s.scalars(select(StaffLoginThrottle.username)))
    assert names == ["current-window", "locked-now", "old-window-lock-ended-lately"]


async def test_refused_notification_samples_and_counts_go_after_180_days_verified_ones_stay(db, clock, ctx):
    now = clock.now()

    def note(name: str, days_ago: float, verified: bool):
        return PaymentNotification(provider="paysim", notification_id=name, verified=verified,
                                   body_sha256="0" * 64, outcome="signature_invalid" if not verified else "confirmed",
                                   received_at=now - days_ago * DAY)

    await add(db, note("forged-old", 181, False), note("forged-recent", 10, False), note("genuine-old", 400, True),
              RejectedNotificationCount(provider="paysim", reason="signature_invalid", hour=now - 181 * DAY, count=9),
              RejectedNotificationCount(provider="paysim", reason="signature_invalid", hour=now - DAY, count=2))

    await run(ctx, "retention.purge_refused_notifications")

    assert await remaining(db, PaymentNotification, PaymentNotification.notification_id) == [
        "forged-recent", "genuine-old"]
    async with db.read() as s:
        assert list(await s.scalars(select(RejectedNotificationCount.count))) == [2]
