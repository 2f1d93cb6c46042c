"""Database plumbing: declarative base, column types, engines and units of work.

SQLite and PostgreSQL run the same models and migrations. On SQLite every write transaction
starts with BEGIN IMMEDIATE: a deferred transaction that reads and then writes can fail with
SQLITE_BUSY at the upgrade instead of waiting, so writers take the lock up front and wait on
busy_timeout. Reads use a second engine with ordinary deferred transactions (WAL lets them
run beside the writer).
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL; INTEGER on SQLite, where only "INTEGER PRIMARY KEY" is the rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out; SQLite would otherwise drop tzinfo."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect):  # type: ignore[override]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass an aware datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect):  # type: ignore[override]
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class IdMixin:
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)


def _sqlite_pragmas(engine: AsyncEngine, *, immediate: bool) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every SQLite test
        # Let SQLAlchemy, not the driver, issue BEGIN so we can choose its kind.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn):  # pragma: no cover
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@dataclass
class Database:
    """The engines and session factories of one process."""

    url: str
    engine: AsyncEngine
    read_engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    peek_engine: AsyncEngine

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on error. Never shared."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.read_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def peek(self) -> AsyncIterator[AsyncConnection]:
        """A connection for single-statement lookups on the hot path (session tokens,
        idempotency keys): on PostgreSQL in autocommit, so a lookup is one round trip
        instead of BEGIN / SELECT / COMMIT."""
        async with self.peek_engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
        if self.peek_engine.pool is not self.read_engine.pool:
            await self.peek_engine.dispose()


def create_database(url: str, *, pool_size: int = 5, statement_timeout: float = 30.0) -> Database:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=60)
        read_engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=60)
        _sqlite_pragmas(engine, immediate=True)
        _sqlite_pragmas(read_engine, immediate=False)
    else:
        # No pool_pre_ping: it costs a BEGIN/ROLLBACK round trip per checkout, measured as a
        # quarter of a hold's round trips; stale connections are recycled instead.
        # No overflow either: under a rush, overflow connections were opened and closed per
        # request (connect + TLS probe each time); a small fixed pool lets requests queue in
        # the application, which is where DESIGN.md section 10 wants them to wait.
        # Timeouts, so a database that stopped answering gives a clear 503 (core/errors.py
        # database_unavailable) instead of requests hanging: 5 s to connect, and a bound per
        # statement (settings.db_statement_timeout_seconds, 30 s by default).
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=0,
                                     pool_recycle=1800, pool_timeout=60,
                                     connect_args={"timeout": 5, "command_timeout": statement_timeout})
        read_engine = engine
    factory = async_sessionmaker(engine, expire_on_commit=False)
    read_factory = async_sessionmaker(read_engine, expire_on_commit=False)
    if url.startswith("sqlite"):
        peek_engine = read_engine
    else:
        # Its own pool: at 08:00 every request starts with a single-statement lookup (the
        # session token) and most end with one (a sold-out answer), thousands at once. In one
        # shared pool the few hold transactions that can still win queued for a connection
        # behind all of them (measured: the sell-out itself took 13 s of a 17 s rush); with two,
        # a claim waits only for other claims, which the slot's lane keeps to a handful.
        peek_engine = create_async_engine(
            url, pool_size=pool_size, max_overflow=0, pool_recycle=1800, pool_timeout=60,
            connect_args={"timeout": 5, "command_timeout": statement_timeout},
        ).execution_options(isolation_level="AUTOCOMMIT")
    return Database(url, engine, read_engine, factory, read_factory, peek_engine)


async def delete_oldest(session: AsyncSession, model, condition, *, limit: int) -> int:
    """Delete at most `limit` of the oldest rows of `model` matching `condition` (retention).

    The ids are picked first and the delete repeats the condition, so a row that changed in
    between (a dead letter retried, say) is left alone. Ids grow with time, so the oldest rows
    sit at the start of the primary key and no dedicated index is needed."""
    from sqlalchemy import delete, select

    ids = list(await session.scalars(select(model.id).where(condition).order_by(model.id).limit(limit)))
    if not ids:
        return 0
    result = await session.execute(delete(model).where(model.id.in_(ids), condition))
    return result.rowcount or 0


async def insert_many(session: AsyncSession, table, rows: list[dict], *, skip_conflicts_on: list[str] | None = None,
                      ) -> None:
    """Insert many rows (the same keys in each), insert-or-nothing on `skip_conflicts_on` if given.

    PostgreSQL: one `INSERT ... SELECT FROM unnest(one array per column)`: a value shared by
    every row is one parameter of its column's type, the others one array each (integers,
    strings, JSON documents sent as text and cast). Thousands of rows cost one statement,
    measured at a third of the driver's executemany for a draw's 4,900 messages. Elsewhere
    (SQLite, in process, no round trips) and for other varying types: the executemany."""
    from sqlalchemy import JSON, Text, bindparam, cast, func, select
    from sqlalchemy.dialects import postgresql, sqlite

    if not rows:
        return
    names = list(rows[0])
    shared = [n for n in names[1:] if all(r[n] == rows[0][n] for r in rows)]  # the first always varies
    varying = [n for n in names if n not in shared]
    # plain columns only: a TypeDecorator's own conversion (encryption, UTC) needs the executemany
    kinds = {n: Text() if isinstance(table.c[n].type, JSON) else None if isinstance(table.c[n].type, TypeDecorator)
             else {int: BigInteger(), str: Text()}.get(table.c[n].type.python_type) for n in varying}
    if session.get_bind().dialect.name != "postgresql" or None in kinds.values():
        insert = (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)
        await session.execute(insert.on_conflict_do_nothing(index_elements=skip_conflicts_on) if skip_conflicts_on
                              else insert, rows)
        return
    params = {f"a_{n}": [r[n] if not isinstance(table.c[n].type, JSON) or r[n] is None else json.dumps(r[n])
                         for r in rows] for n in varying}
    source = func.unnest(*[bindparam(f"a_{n}", type_=postgresql.ARRAY(kinds[n])) for n in varying]).table_valued(
        *varying).render_derived()
    columns = [cast(source.c[n], table.c[n].type) if isinstance(table.c[n].type, JSON) else source.c[n]
               for n in varying] + [bindparam(f"s_{n}", rows[0][n], type_=table.c[n].type) for n in shared]
    stmt = postgresql.insert(table).from_select(varying + shared, select(*columns).select_from(source))
    if skip_conflicts_on:
        stmt = stmt.on_conflict_do_nothing(index_elements=skip_conflicts_on)
    await session.execute(stmt, params)
