"""Core statements sent by asyncpg itself, on the few hottest paths of a release rush.

SQLAlchemy's execution path (parameter processing, result metadata, the greenlet hop) cost
more CPU than the round trip of a one-row statement; profiled under the rush it was the
largest share of a sold-out answer (docs/BENCHMARKS.md). A statement is still written as
SQLAlchemy Core, compiled once for asyncpg, and sent on a connection of the pool with its
parameters in the compiled order. PostgreSQL only; callers keep the SQLAlchemy path for
SQLite.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class Compiled:
    sql: str
    order: tuple[str, ...]
    fixed: dict[str, Any]  # the statement's own literals (SQLAlchemy made them parameters)

    @classmethod
    def of(cls, statement) -> Compiled:
        compiled = statement.compile(dialect=pg_asyncpg.dialect())
        fixed = {name: bind.value for name, bind in compiled.binds.items() if bind.value is not None}
        return cls(compiled.string, tuple(compiled.positiontup or ()), fixed)


async def fetchrow(conn: AsyncConnection, statement: Compiled, params: dict[str, Any]):
    """The first row (an asyncpg Record) or None. `conn` must be ours alone (db.peek())."""
    values = {**statement.fixed, **params}
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    try:
        return await driver.fetchrow(statement.sql, *[values[name] for name in statement.order])
    except Exception as exc:
        # SQLAlchemy's own path would see a lost connection and drop it from the pool; sent
        # past it, we must, or every later checkout gets the dead one (a database restart,
        # a network cut: tests/test_database_restart.py, tests/test_network_faults.py)
        if driver.is_closed() or isinstance(exc, _LOST):
            await conn.invalidate(exc)
        raise


def _lost_kinds() -> tuple[type[BaseException], ...]:
    kinds: tuple[type[BaseException], ...] = (ConnectionError, OSError, TimeoutError)
    try:
        import asyncpg
    except ImportError:  # an install without PostgreSQL never sends here
        return kinds
    return (*kinds, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


_LOST = _lost_kinds()


def json_value(value):
    """A json column as asyncpg hands it over (text, no codec registered) made Python."""
    return json.loads(value) if isinstance(value, str | bytes) else value
