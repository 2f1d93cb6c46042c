"""Alembic environment: async engines, batch mode on SQLite, our naming convention."""
from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from guahao.models import Base

config = context.config
target_metadata = Base.metadata
# One migrator at a time on PostgreSQL, whichever machine it runs on: every `guahao serve`
# migrates on start, and several starting together must not race to create the same tables.
# The lock is taken inside the migration transaction, before Alembic reads the current
# version, so a second migrator waits, then finds the database at head and does nothing.
# (SQLite is one file on one machine: migrations_api holds a file lock instead.)
MIGRATION_LOCK_KEY = 0x67756168616F  # "guahao"
# A migration that runs while the previous release serves (expand/contract) must never make a
# patient's transaction fail. Its ALTERs and foreign keys take table locks the service's
# transactions also need, in whatever order the migration files happen to touch the tables, so
# a hold holding `schedules` and waiting for `bookings` can close a cycle with the migration.
# So the migration is always the one that gives way: it waits for a table lock at most
# LOCK_TIMEOUT and, as superuser, checks for deadlocks after DEADLOCK_TIMEOUT (the waiter that
# runs the check first is the victim; the service's sessions keep PostgreSQL's 1 s). Either
# error rolls the whole upgrade back, and migrations_api.upgrade retries it after a pause.
LOCK_TIMEOUT = "300ms"
DEADLOCK_TIMEOUT = "50ms"


def _configure(connection) -> None:
    on_step = config.attributes.get("on_step")  # migrations_api.upgrade(..., on_step=...)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        on_version_apply=(lambda *, step, **_: on_step(step)) if on_step else None,
    )


def _run_sync(connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            # after the advisory lock: a second migrator waits for the first as long as it takes
            connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            if connection.execute(text("SELECT current_setting('is_superuser')")).scalar() == "on":
                connection.execute(text(f"SET LOCAL deadlock_timeout = '{DEADLOCK_TIMEOUT}'"))
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"))
    async with engine.connect() as connection:
        await connection.run_sync(_run_sync)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
    else:
        asyncio.run(_run_async())
