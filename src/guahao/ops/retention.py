"""Retention: housekeeping rows are deleted once nothing needs them any more.

Seven kinds of rows grow with traffic and hold nothing an audit needs after a while. Each has one
rule (what may go, as a SQL condition on the row) and one periodic job that applies it:

| table              | goes when                                            | setting (days)               |
|--------------------|------------------------------------------------------|------------------------------|
| `outbox`           | `done` for N days; `dead` and unfinished rows stay    | retention_outbox_done_days   |
| `idempotency_keys` | created N days ago                                   | retention_idempotency_days   |
| `sms_codes`        | expired N days ago                                   | retention_sms_code_days      |
| `auth_sessions`    | expired, or revoked, N days ago                      | retention_session_days       |
| `sent_messages`    | last touched N days ago                              | retention_notification_days  |
| `staff_login_throttles` | window and lock both over a day ago             | (fixed: 1 day)               |
| refused payment notifications | sampled rows and hourly counts, N days old | retention_notification_days  |

The records audits rely on are elsewhere and are never purged here: bookings and their
events, payments, refunds, notifications of the provider, the staff audit log. docs/ARCHITECTURE.md
explains the choice of each period.

Deletes go in batches of `retention_batch` rows, one short transaction each, so a purge
never holds many row locks or a long transaction next to the booking traffic. Each table's
condition lives with the feature that owns it (a `purge_*` function taking the cutoff and
the batch size, built on `core.db.delete_oldest`); this module only holds the schedule and
the periods.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.accounts import service as accounts_service
from guahao.config import Settings
from guahao.core import idempotency
from guahao.notifications import service as notifications_service
from guahao.outbox import service as outbox_service
from guahao.outbox.registry import JobContext, handler, periodic
from guahao.payments import rejections
from guahao.staff import lockout

log = structlog.get_logger("guahao.retention")
EVERY = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Rule:
    topic: str
    # the owner's purge: (session, before=cutoff, limit=batch) -> rows deleted
    purge: Callable[..., Awaitable[int]]
    # how many days a row is kept, from the settings
    days: Callable[[Settings], int]


RULES: tuple[Rule, ...] = (
    Rule("retention.purge_outbox", outbox_service.purge_done, lambda s: s.retention_outbox_done_days),
    Rule("retention.purge_idempotency_keys", idempotency.purge, lambda s: s.retention_idempotency_days),
    Rule("retention.purge_sms_codes", accounts_service.purge_sms_codes, lambda s: s.retention_sms_code_days),
    Rule("retention.purge_sessions", accounts_service.purge_sessions, lambda s: s.retention_session_days),
    Rule("retention.purge_notification_logs", notifications_service.purge_sent,
         lambda s: s.retention_notification_days),
    # a login-failure counter matters for its window and lock (minutes); a day is plenty
    Rule("retention.purge_login_throttles", lockout.purge_stale, lambda s: 1),
    # refused (forged or broken) payment notifications: samples and hourly counts, kept as
    # long as the SMS log; verified notifications are never purged
    Rule("retention.purge_refused_notifications", rejections.purge, lambda s: s.retention_notification_days),
)


async def purge_batch(session: AsyncSession, rule: Rule, *, settings: Settings, now: dt.datetime,
                      limit: int) -> int:
    """Delete at most `limit` of the oldest rows `rule` lets go; returns how many went."""
    return await rule.purge(session, before=now - dt.timedelta(days=rule.days(settings)), limit=limit)


async def purge(ctx: JobContext, rule: Rule) -> int:
    """Apply `rule` batch by batch until a batch comes back short; returns the rows deleted.
    `now` is read once, so rows that age while the job runs wait for the next run."""
    now, limit, total = ctx.clock.now(), ctx.settings.retention_batch, 0
    while True:
        async with ctx.db.begin() as session:
            done = await purge_batch(session, rule, settings=ctx.settings, now=now, limit=limit)
        total += done
        if done < limit:
            break
    if total:
        log.info("retention_purged", topic=rule.topic, rows=total)
    return total


def _register(rule: Rule) -> None:
    async def run(ctx: JobContext, payload: dict) -> None:
        await purge(ctx, rule)

    run.__name__ = rule.topic.replace(".", "_")
    periodic(rule.topic, EVERY)
    handler(rule.topic)(run)


for _rule in RULES:
    _register(_rule)
