"""Migrations run up, down and up again, and agree with the models, on both databases."""
import asyncio
import uuid

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from guahao import migrations_api
from tests.conftest import _pg_admin, _pg_reachable, pg_url_for


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    return names


async def _cycle(url: str) -> None:
    await asyncio.to_thread(migrations_api.upgrade, url)
    assert "patients" in await _tables(url)
    await asyncio.to_thread(migrations_api.check, url)  # raises if models and migrations disagree
    await asyncio.to_thread(migrations_api.downgrade, url, "base")
    assert await _tables(url) <= {"alembic_version"}
    await asyncio.to_thread(migrations_api.upgrade, url)
    await asyncio.to_thread(migrations_api.check, url)


async def test_sqlite_upgrade_downgrade_upgrade_and_check(tmp_path):
    await _cycle(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


async def test_postgresql_upgrade_downgrade_upgrade_and_check():
    problem = await _pg_reachable()
    if problem:
        import os

        message = f"PostgreSQL half skipped: {problem}"
        if os.environ.get("GUAHAO_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    name = f"guahao_mig_{uuid.uuid4().hex[:10]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        await _cycle(pg_url_for(name))
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
