"""Retention: housekeeping rows are deleted once nothing needs them any more.

Five tables grow with traffic and hold nothing an audit needs after a while. Each has one
rule (what may go, as a SQL condition on the row) and one periodic job that applies it:

| table              | goes when                                            | setting (days)               |
|--------------------|------------------------------------------------------|------------------------------|
| `outbox`           | `done` for N days; `dead` and unfinished rows stay    | retention_outbox_done_days   |
| `idempotency_keys` | created N days ago                                   | retention_idempotency_days   |
| `sms_codes`        | expired N days ago                                   | retention_sms_code_days      |
| `auth_sessions`    | expired, or revoked, N days ago                      | retention_session_days       |
| `sent_messages`    | last touched N days ago                              | retention_notification_days  |

The records audits rely on are elsewhere and are never purged here: bookings and their
events, payments, refunds, notifications of the provider, the staff audit log. docs/ARCHITECTURE.md
explains the choice of each period.

Deletes go in batches of `retention_batch` rows, one short transaction each, so a purge
never holds many row locks or a long transaction next to the booking traffic. A batch picks
the oldest ids that match and deletes them with the condition repeated, so a row that
changed between the two statements (a dead letter retried, say) is left alone. Ids grow
with time, so the oldest rows come first and each batch finds its rows at the start of the
primary key without a dedicated index.

This module is the one place that deletes from these tables besides their own features;
it only ever deletes rows its rules describe.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.accounts.models import AuthSession, SmsCode
from guahao.config import Settings
from guahao.core.idempotency import IdempotencyKey
from guahao.notifications.models import SentMessage
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import JobContext, handler, periodic

log = structlog.get_logger("guahao.retention")
EVERY = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Rule:
    topic: str
    model: Any
    # which rows may go, given the settings and the current time
    condition: Callable[[Settings, dt.datetime], ColumnElement[bool]]


def _days(n: int) -> dt.timedelta:
    return dt.timedelta(days=n)


def _outbox(s: Settings, now: dt.datetime) -> ColumnElement[bool]:
    # only `done`: a dead letter stays until an operator has handled it (retried, it becomes
    # done and ages from then); pending and running messages are still work
    return (OutboxMessage.state == "done") & (OutboxMessage.done_at < now - _days(s.retention_outbox_done_days))


def _idempotency(s: Settings, now: dt.datetime) -> ColumnElement[bool]:
    return IdempotencyKey.created_at < now - _days(s.retention_idempotency_days)


def _sms_codes(s: Settings, now: dt.datetime) -> ColumnElement[bool]:
    return SmsCode.expires_at < now - _days(s.retention_sms_code_days)


def _sessions(s: Settings, now: dt.datetime) -> ColumnElement[bool]:
    cutoff = now - _days(s.retention_session_days)
    return or_(AuthSession.expires_at < cutoff, AuthSession.revoked_at < cutoff)


def _sent_messages(s: Settings, now: dt.datetime) -> ColumnElement[bool]:
    return SentMessage.updated_at < now - _days(s.retention_notification_days)


RULES: tuple[Rule, ...] = (
    Rule("retention.purge_outbox", OutboxMessage, _outbox),
    Rule("retention.purge_idempotency_keys", IdempotencyKey, _idempotency),
    Rule("retention.purge_sms_codes", SmsCode, _sms_codes),
    Rule("retention.purge_sessions", AuthSession, _sessions),
    Rule("retention.purge_notification_logs", SentMessage, _sent_messages),
)


async def purge_batch(session: AsyncSession, rule: Rule, *, settings: Settings, now: dt.datetime,
                      limit: int) -> int:
    """Delete at most `limit` of the oldest rows `rule` lets go; returns how many went."""
    condition = rule.condition(settings, now)
    ids = list(await session.scalars(select(rule.model.id).where(condition).order_by(rule.model.id).limit(limit)))
    if not ids:
        return 0
    result = await session.execute(delete(rule.model).where(rule.model.id.in_(ids), condition))
    return result.rowcount or 0


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
