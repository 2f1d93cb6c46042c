"""Test harness: every database test runs on SQLite and on PostgreSQL.

Each backend gets a fresh database per test session, migrated with Alembic (the real
migrations, not create_all). Rows are deleted between tests. When PostgreSQL is not
reachable its half is skipped with a clear message, unless GUAHAO_REQUIRE_POSTGRES=1 (set by
.ci/run), which turns the skip into an error.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import secrets
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from guahao import migrations_api
from guahao.app import create_app
from guahao.config import Settings
from guahao.core import crypto, signing
from guahao.core.clock import FrozenClock
from guahao.models import Base

PG_ADMIN_URL = os.environ.get("GUAHAO_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
LOG_FILE = Path(tempfile.gettempdir()) / f"guahao-test-log-{os.getpid()}.log"
TEST_DATA_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
TEST_INDEX_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
# one secret for the run: processes started by tests (servers, workers) must hash session
# tokens with the key the test process used to create them
TEST_SECRET_KEY = secrets.token_urlsafe(32)
# Plaintext personal values the tests wrote; the session end checks the log for them.
SENSITIVE_VALUES: set[str] = set()

os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "guahao-hypothesis"))
crypto.configure(TEST_DATA_KEY, TEST_INDEX_KEY)
signing.configure(TEST_SECRET_KEY)


def remember_sensitive(*values: str) -> None:
    SENSITIVE_VALUES.update(v for v in values if v)


async def _pg_reachable() -> str | None:
    import asyncpg

    dsn = PG_ADMIN_URL.replace("postgresql+asyncpg", "postgresql")
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except Exception as exc:  # any failure means "not here"
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_url_for(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database_url(request, tmp_path_factory):
    """A migrated empty database per backend for the whole session."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "guahao.db"
        url = f"sqlite+aiosqlite:///{path}"
        await asyncio.to_thread(migrations_api.upgrade, url)
        yield url
        return
    problem = await _pg_reachable()
    if problem:
        message = f"PostgreSQL half skipped: not reachable at {PG_ADMIN_URL} ({problem})"
        if os.environ.get("GUAHAO_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " and GUAHAO_REQUIRE_POSTGRES=1")
        pytest.skip(message)
    name = f"guahao_test_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    url = pg_url_for(name)
    try:
        await asyncio.to_thread(migrations_api.upgrade, url)
        yield url
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def backend(database_url) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


@pytest.fixture
def clock() -> FrozenClock:
    # a Thursday morning in Shanghai, well clear of midnight
    return FrozenClock(dt.datetime(2026, 11, 19, 2, 0, tzinfo=dt.UTC))


@pytest.fixture
def settings(database_url) -> Settings:
    return Settings(
        env="test",
        database_url=database_url,
        data_key=TEST_DATA_KEY,
        index_key=TEST_INDEX_KEY,
        secret_key=TEST_SECRET_KEY,
        sms_provider="recording",
        payment_provider="fake",
        log_file=str(LOG_FILE),
        db_pool_size=5,
        # the suite books many times per account and address within a minute; the bot limits
        # themselves are tested with the product's defaults in test_hold_limits.py
        hold_limit_per_account="100000/minute",
        hold_limit_per_address="100000/minute",
    )


@pytest.fixture
async def app(settings, clock):
    application = create_app(settings, clock=clock)
    await _wipe(application.state.db)
    yield application
    await application.state.db.dispose()


@pytest.fixture
def db(app):
    return app.state.db


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _wipe(db) -> None:
    async with db.begin() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(text(f'DELETE FROM "{table.name}"'))


def pytest_sessionfinish(session, exitstatus):
    """I9: no plaintext personal value written by any test may appear in the log."""
    if not LOG_FILE.exists():
        return
    content = LOG_FILE.read_text(encoding="utf-8", errors="replace")
    leaked = sorted(v for v in SENSITIVE_VALUES if v in content)
    LOG_FILE.unlink()
    if leaked:
        print(f"\nPRIVACY FAILURE: {len(leaked)} personal value(s) appear in the test-run log")
        session.exitstatus = 1
