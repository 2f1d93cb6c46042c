"""`guahao serve` migrates on start; several starting together must not race (issue 12).

Six processes run the upgrade at the same instant (a barrier after their imports) on a fresh
database of each kind: all succeed and the database is at head, once. Without the lock
(migrations/env.py advisory lock on PostgreSQL, migrations_api file lock on SQLite) the
PostgreSQL half fails: concurrent CREATE TABLEs of the same names collide."""
from __future__ import annotations

import asyncio
import multiprocessing
import uuid

import pytest
from sqlalchemy import text

from guahao import migrations_api
from guahao.core.db import create_database
from tests.conftest import _pg_admin, _pg_reachable, pg_url_for

MIGRATORS = 4


def _migrate(url: str, barrier, results) -> None:
    barrier.wait(timeout=60)
    try:
        migrations_api.upgrade(url)
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {str(exc)[:300]}")


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"
        return
    if await _pg_reachable():
        pytest.skip("PostgreSQL half skipped: not reachable (the main suite reports it)")
    name = f"guahao_migrate_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url_for(name)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_simultaneous_migrators_leave_one_database_at_head(empty_url):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(MIGRATORS), ctx.Queue()
    procs = [ctx.Process(target=_migrate, args=(empty_url, barrier, results)) for _ in range(MIGRATORS)]
    for p in procs:
        p.start()
    outcomes = [await asyncio.to_thread(results.get, True, 120) for _ in procs]
    for p in procs:
        p.join(30)
    assert outcomes == ["ok"] * MIGRATORS, outcomes
    db = create_database(empty_url)
    try:
        async with db.read() as s:
            versions = list(await s.scalars(text("SELECT version_num FROM alembic_version")))
    finally:
        await db.dispose()
    assert versions == [migrations_api.head_revision()]
