"""Staff login lockout: after `max_failures` wrong passwords for one username within `window`,
the username is locked for `lock`, from every address and every process (the counter is a
database row, not process memory).

Concurrency. An attempt is counted *before* the password is checked, by one atomic upsert
(`INSERT ... ON CONFLICT (username) DO UPDATE ... RETURNING`): on PostgreSQL the conflicting
row is locked and the SET expressions read its latest committed version; SQLite serialises
writers. Each attempt therefore gets its own position in the window, and only the first
`max_failures` positions may check a password: twenty simultaneous guesses give five
password checks and fifteen refusals, where "check, then count the failure" would let all
twenty try. A correct password deletes the row (the attempt was not a failure after all).
While locked, attempts are still counted (never checked) so the audit can tell how hard
someone knocked; the first attempt after the lock ends starts a fresh window.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, case, delete, literal, not_, null, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core.db import UTCDateTime
from guahao.staff.models import StaffLoginThrottle


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    window: dt.timedelta = dt.timedelta(minutes=15)
    lock: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Attempt:
    position: int  # this attempt's number in the current window
    locked_until: dt.datetime | None
    policy: LockoutPolicy

    @property
    def allowed(self) -> bool:
        """May this attempt check a password?"""
        return self.position <= self.policy.max_failures

    @property
    def locks_on_failure(self) -> bool:
        """A wrong password on this attempt is the one that locks the username."""
        return self.position == self.policy.max_failures


def throttle_key(normalized_username: str) -> str:
    return normalized_username[:64]


async def do_count_attempt(session: AsyncSession, normalized_username: str, *, now: dt.datetime,
                           policy: LockoutPolicy) -> Attempt:
    """Count one login attempt for the username (see the module doc); commit it before the
    password check so concurrent attempts see it."""
    t = StaffLoginThrottle.__table__
    now_b = literal(now, UTCDateTime())
    until_b = literal(now + policy.lock, UTCDateTime())
    active = and_(t.c.locked_until.is_not(None), t.c.locked_until > now_b)
    # a lock that has ended, or a window that has passed, starts over at 1
    fresh = and_(not_(active), or_(t.c.locked_until.is_not(None),
                                   t.c.window_started_at <= literal(now - policy.window, UTCDateTime())))
    position = case((fresh, 1), else_=t.c.failures + 1)
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(t)
        .values(username=throttle_key(normalized_username), failures=1, window_started_at=now,
                locked_until=now + policy.lock if policy.max_failures <= 1 else None)
        .on_conflict_do_update(index_elements=[t.c.username], set_={
            "failures": position,
            "window_started_at": case((fresh, now_b), else_=t.c.window_started_at),
            "locked_until": case((active, t.c.locked_until), (position >= policy.max_failures, until_b),
                                 else_=null()),
        })
        .returning(t.c.failures, t.c.locked_until)
    )
    row = (await session.execute(statement)).one()
    return Attempt(position=row.failures, locked_until=row.locked_until, policy=policy)


async def do_clear(session: AsyncSession, normalized_username: str) -> None:
    """A correct password: forget the failures of this username."""
    await session.execute(delete(StaffLoginThrottle).where(StaffLoginThrottle.username == throttle_key(normalized_username)))


async def purge_stale(session: AsyncSession, *, before: dt.datetime, limit: int) -> int:
    """Retention: counters whose window and lock both ended before `before` mean nothing any
    more (the audit log keeps every lock). Keyed by username, so no id order: any `limit` of
    them per batch."""
    stale = (StaffLoginThrottle.window_started_at < before) & or_(
        StaffLoginThrottle.locked_until.is_(None), StaffLoginThrottle.locked_until < before)
    names = list(await session.scalars(select(StaffLoginThrottle.username).where(stale).limit(limit)))
    if not names:
        return 0
    result = await session.execute(delete(StaffLoginThrottle).where(StaffLoginThrottle.username.in_(names), stale))
    return result.rowcount or 0
