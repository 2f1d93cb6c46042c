"""A short-lived in-process cache of public availability answers (at most 1 s old), and of
what the public pages show next to them (the catalogue's names, fees and photos: the doctor
and department pages, web/catalog_pages.py), under the same rule.

Around a release most requests are patients refreshing a doctor's or a department's
availability; each answer costs several queries. An answer computed at `now` is reused for
callers whose `now` is within `ttl` after it (the caller's clock decides, so tests use an
injected clock), and never past the next instant at which a state changes by time alone
(a schedule's release instant or its closing time), so "not yet released" turns into
"bookable" on time.

Staleness bound:
- in this process, a committed write to a table availability or those pages are computed from
  (seats, slots, schedules, the catalogue with its fees and photos) empties the cache at once:
  a session that wrote such a table marks itself, and its commit clears every entry
  (`after_commit`, so no reader can put the pre-commit answer back afterwards);
- in other worker processes the entry simply lapses: at most `ttl` (1 s) after the commit;
- a hold lapsing (time passing) shows at most `ttl` late.
Realtime hospitals (the HIS's counts) are never cached. `invalidate()` empties the cache by hand.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

TTL = dt.timedelta(seconds=1)
WATCHED_TABLES = frozenset({"slot_positions", "slots", "schedules", "hospitals", "hospital_rules", "departments",
                            "doctors", "fee_rules", "doctor_photos"})
MAX_ENTRIES = 10_000
_DIRTY = "availability_cache_dirty"

_ttl = TTL
# (database URL, key) -> (computed at, valid until, answer)
_entries: dict[tuple[str, tuple], tuple[dt.datetime, dt.datetime, Any]] = {}


def configure(seconds: float) -> None:
    """Set the lifetime of an entry (0 turns the cache off). At most 1 s: the staleness promise."""
    global _ttl
    _ttl = dt.timedelta(seconds=max(0.0, min(float(seconds), 1.0)))
    _entries.clear()


def invalidate() -> None:
    """Forget every cached answer of this process (a write it cannot see, a test)."""
    _entries.clear()


def _url(owner) -> str:
    """The database an entry belongs to: a session's, or a `Database`'s (its read sessions')."""
    bind = getattr(owner, "bind", None)
    if bind is None:
        bind = owner.read_engine
    return str(bind.url)


def lookup(owner, key: tuple, now: dt.datetime) -> Any | None:
    """The answer cached for `key`, if computed at most `ttl` before `now` and still valid."""
    hit = _entries.get((_url(owner), key))
    if hit is None:
        return None
    computed, until, value = hit
    return value if computed <= now < until else None


def store(owner, key: tuple, now: dt.datetime, value: Any, *, changes_at: list[dt.datetime] = ()) -> None:
    """Keep `value` until now + ttl, or the first of `changes_at` after now if sooner."""
    if _ttl <= dt.timedelta(0):
        return
    until = min([now + _ttl] + [t for t in changes_at if t > now])
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()  # a crude bound: a burst of distinct keys empties it
    _entries[(_url(owner), key)] = (now, until, value)


def _mark(session: Session) -> None:
    session.info[_DIRTY] = True


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if state.is_update or state.is_insert or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in WATCHED_TABLES:
            _mark(state.session)


@event.listens_for(Session, "after_flush")
def _on_flush(session: Session, _context) -> None:
    if session.info.get(_DIRTY):
        return
    for obj in (*session.new, *session.dirty, *session.deleted):
        if getattr(getattr(obj, "__table__", None), "name", None) in WATCHED_TABLES:
            _mark(session)
            return


@event.listens_for(Session, "after_commit")
def _on_commit(session: Session) -> None:
    if session.info.pop(_DIRTY, False):
        _entries.clear()


@event.listens_for(Session, "after_rollback")
def _on_rollback(session: Session) -> None:
    session.info.pop(_DIRTY, None)
