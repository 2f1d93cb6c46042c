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

One computation per key at a time (`shared`). When an entry lapses, every poller arriving
before its recomputation finishes would otherwise recompute it too: under the browse storm
that was hundreds of identical reads per second and worker at each turn of a second, and the
slower they made each other the more of them missed (docs/BENCHMARKS.md). A miss that finds the
same key being computed, in the same generation (no write committed in this process since
it started) and whose `now` would accept that result from the cache anyway, awaits it instead.
A computation that started before a commit in this process never stores its result (the
generation moved on), so "a commit empties the cache at once" holds against in-flight reads too.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
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
# bumped by every clear: a result computed in an older generation is not stored
_generation = 0
# (database URL, key) -> (generation, started at `now`, the computation's future)
_flights: dict[tuple[str, tuple], tuple[int, dt.datetime, asyncio.Future]] = {}


def configure(seconds: float) -> None:
    """Set the lifetime of an entry (0 turns the cache off). At most 1 s: the staleness promise."""
    global _ttl
    _ttl = dt.timedelta(seconds=max(0.0, min(float(seconds), 1.0)))
    _clear()


def invalidate() -> None:
    """Forget every cached answer of this process (a write it cannot see, a test)."""
    _clear()


def _clear() -> None:
    global _generation
    _generation += 1
    _entries.clear()


def generation() -> int:
    """Pass it to `store` from before the reads of what is stored."""
    return _generation


class _Abandoned(Exception):
    """The computation a miss was waiting for was cancelled (its client went away)."""


async def shared(owner, key: tuple, now: dt.datetime, make: Callable[[], Awaitable[Any]],
                 shareable: Callable[[Any], bool] = lambda _value: True) -> Any:
    """The cached answer for `key`, else `make()`'s, computed once for every concurrent miss
    that may take it (see the module docstring). `make` stores its result itself; a result
    that is not `shareable` (one the caller changes in place) is not handed to the waiters,
    who then compute their own."""
    while True:
        hit = lookup(owner, key, now)
        if hit is not None:
            return hit
        name = (_url(owner), key)
        flight = _flights.get(name)
        if flight is None or flight[0] != _generation or not flight[1] <= now < flight[1] + _ttl:
            break
        try:
            return await asyncio.shield(flight[2])
        except _Abandoned:
            continue
    future = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, even with no waiter
    _flights[name] = (_generation, now, future)
    try:
        value = await make()
    except asyncio.CancelledError:
        future.set_exception(_Abandoned())
        raise
    except BaseException as exc:
        future.set_exception(exc)
        raise
    else:
        if shareable(value):
            future.set_result(value)
        else:
            future.set_exception(_Abandoned())
        return value
    finally:
        if _flights.get(name, (None, None, None))[2] is future:
            del _flights[name]


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


def store(owner, key: tuple, now: dt.datetime, value: Any, *, changes_at: list[dt.datetime] = (),
          since: int | None = None) -> None:
    """Keep `value` until now + ttl, or the first of `changes_at` after now if sooner; not when
    a write committed in this process after generation `since` (read before it)."""
    if _ttl <= dt.timedelta(0) or (since is not None and since != _generation):
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
        _clear()


@event.listens_for(Session, "after_rollback")
def _on_rollback(session: Session) -> None:
    session.info.pop(_DIRTY, None)
