"""Migrations that run while the previous version serves (issue 12, 系统维护; docs/OPERATIONS.md,
"Deploys and migrations"). A deploy runs `guahao db upgrade` first and rolls the processes
after, so for a while the previous release serves a database at the new head:

- the newest migrations only expand: every table and column the previous revision had is still
  there, and no column was added to an existing table that an old INSERT could not fill
  (NOT NULL without a server default);
- the previous release itself (its code from git, the commit before the newest migration was
  added) serves holds and reads before, during and after the upgrade with no failure, and every
  hold it acknowledged is a live booking;
- /readyz of a process stays ready when the schema is ahead of it (a newer release's expand
  migration) and says not ready when it is behind.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from guahao import migrations_api
from guahao.bench import seed
from guahao.bench.overload import live_booking_ids
from guahao.bench.servers import UvicornServer
from guahao.core.db import create_database
from tests.conftest import TEST_DATA_KEY, TEST_INDEX_KEY, TEST_SECRET_KEY, _pg_admin, _pg_reachable, pg_url_for

REPO = Path(__file__).resolve().parents[1]
NEWEST = 3  # how many of the newest migrations must be expand-only
SEED = """
import asyncio, datetime as dt, json, os
from guahao.bench import seed
from guahao.core import crypto, signing
from guahao.core.db import create_database

async def main():
    crypto.configure(os.environ["GUAHAO_DATA_KEY"], os.environ["GUAHAO_INDEX_KEY"])
    signing.configure(os.environ["GUAHAO_SECRET_KEY"])
    db = create_database(os.environ["GUAHAO_DATABASE_URL"], pool_size=2)
    now = dt.datetime.now(dt.UTC)
    _, schedule_id, slot_id = await seed.seed_schedule(db, now, capacity=400)
    await seed.publish(db, schedule_id, now - dt.timedelta(seconds=1), now)
    clients = await seed.seed_clients(db, 400, now)
    await db.dispose()
    print(json.dumps({"slot": slot_id, "clients": [[c.token, c.patient_id] for c in clients]}))

asyncio.run(main())
"""
pytestmark = pytest.mark.timeout(300)


def _chain() -> list[str]:
    """Revision ids from base to head."""
    script = ScriptDirectory.from_config(migrations_api.alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'expand.db'}"
        return
    problem = await _pg_reachable()
    if problem:
        if os.environ.get("GUAHAO_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL half: not reachable ({problem})")
        pytest.skip(f"PostgreSQL half skipped: not reachable ({problem})")
    name = f"guahao_expand_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url_for(name)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _schema(url: str) -> dict[str, dict[str, dict]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            def read(sync_conn):
                insp = inspect(sync_conn)
                return {t: {c["name"]: c for c in insp.get_columns(t)} for t in insp.get_table_names()
                        if t != "alembic_version"}
            return await conn.run_sync(read)
    finally:
        await engine.dispose()


async def test_the_newest_migrations_only_expand(empty_url):
    chain = _chain()
    await asyncio.to_thread(migrations_api.upgrade, empty_url, chain[-NEWEST - 1])
    before = await _schema(empty_url)
    problems = []
    for revision in chain[-NEWEST:]:
        await asyncio.to_thread(migrations_api.upgrade, empty_url, revision)
        after = await _schema(empty_url)
        for table, columns in before.items():
            if table not in after:
                problems.append(f"{revision}: dropped table {table}")
                continue
            for name, column in columns.items():
                new = after[table].get(name)
                if new is None:
                    problems.append(f"{revision}: dropped column {table}.{name}")
                elif column["nullable"] and not new["nullable"]:
                    problems.append(f"{revision}: {table}.{name} became NOT NULL")
            for name, column in after[table].items():
                if name not in columns and not column["nullable"] and column.get("default") is None:
                    problems.append(f"{revision}: {table}.{name} added NOT NULL without a server default")
        before = after
    assert problems == [], "contract steps belong in a later release (docs/OPERATIONS.md)"


def _previous_release(tmp_path: Path) -> tuple[Path, str]:
    """The code of the commit before the newest migration file was added, and that version's
    head revision. Needs the git history of the checkout (CI has it)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.fail("this test needs the git history of the checkout (git and .git)")
    head = migrations_api.head_revision()
    versions = REPO / "src/guahao/migrations/versions"
    [newest] = [p for p in versions.glob("*.py") if re.search(rf"^revision = ['\"]{head}['\"]", p.read_text(), re.M)]
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "-1", "--", str(newest)], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not added:
        pytest.fail(f"{newest.name} is not committed yet: commit it, then run this test")
    target = tmp_path / "previous"
    target.mkdir()
    archive = subprocess.run(["git", "archive", f"{added}^", "src"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    old_head = subprocess.run(
        [sys.executable, "-c", "from guahao.migrations_api import head_revision; print(head_revision())"],
        env={**os.environ, "PYTHONPATH": str(target / "src")}, capture_output=True, text=True, check=True,
        cwd=tmp_path).stdout.strip()
    return target / "src", old_head


async def test_the_previous_release_serves_while_the_database_migrates_to_head(empty_url, tmp_path):
    old_src, old_head = _previous_release(tmp_path)
    assert old_head in _chain()[:-1], (old_head, _chain()[-3:])
    await asyncio.to_thread(migrations_api.upgrade, empty_url, old_head)
    db = create_database(empty_url, pool_size=2)
    server = UvicornServer("guahao.asgi:app", workers=1, name="previous", log_dir=tmp_path, env={
        "PYTHONPATH": str(old_src), "GUAHAO_ENV": "test", "GUAHAO_DATABASE_URL": empty_url,
        "GUAHAO_DATA_KEY": TEST_DATA_KEY, "GUAHAO_INDEX_KEY": TEST_INDEX_KEY, "GUAHAO_SECRET_KEY": TEST_SECRET_KEY,
        "GUAHAO_RUN_JOBS_IN_PROCESS": "false", "GUAHAO_SMS_PROVIDER": "recording", "GUAHAO_REDIS_URL": "",
        "GUAHAO_HOLD_LIMIT_PER_ADDRESS": "1000000/minute"})
    try:
        # seeded by the previous release's own code: today's models may name columns its schema lacks
        seeded = json.loads(subprocess.run([sys.executable, "-c", SEED], env=server.env, cwd=tmp_path,
                                           capture_output=True, text=True, check=True).stdout)
        slot_id = seeded["slot"]
        clients = iter(seed.Client(token, patient) for token, patient in seeded["clients"])
        server.start()
        await server.wait_ready()
        answers: list[httpx.Response] = []
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            async def visit() -> None:
                c = next(clients)
                auth = {"Authorization": f"Bearer {c.token}"}
                answers.append(await http.post("/api/v1/bookings", json={"slot_id": slot_id, "patient_id": c.patient_id},
                                               headers={**auth, "Idempotency-Key": uuid.uuid4().hex}))
                answers.append(await http.get("/api/v1/bookings", headers=auth))
                answers.append(await http.get("/api/v1/hospitals"))

            for _ in range(10):
                await visit()
            upgrade = asyncio.create_task(asyncio.to_thread(migrations_api.upgrade, empty_url))
            during = 0
            while not upgrade.done() or during < 5:  # at least a few visits overlap the upgrade
                await asyncio.gather(*(visit() for _ in range(4)))
                during += 1
            await upgrade
            for _ in range(10):
                await visit()
        failures = [(r.request.method, r.request.url.path, r.status_code, r.text[:200]) for r in answers
                    if r.status_code not in (200, 201)]
        assert failures == [], server.log_tail()
        acknowledged = {r.json()["id"] for r in answers if r.status_code == 201}
        assert acknowledged == await live_booking_ids(db, slot_id)
        async with db.read() as s:
            assert await migrations_api.schema_state(s) == "current"
    finally:
        server.stop()
        await db.dispose()


async def test_readiness_is_kept_when_the_schema_is_ahead_and_refused_when_behind(client, db):
    chain = _chain()

    async def stamp(revision: str) -> None:
        async with db.begin() as s:
            await s.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})

    try:
        await stamp("9999_from_a_newer_release")
        ahead = await client.get("/readyz")
        assert ahead.status_code == 200 and ahead.json()["schema"] == "ahead"
        await stamp(chain[-2])
        behind = await client.get("/readyz")
        assert behind.status_code == 503 and behind.json()["code"] == "not_ready"
    finally:
        await stamp(chain[-1])
    current = await client.get("/readyz")
    assert current.status_code == 200 and current.json()["schema"] == "current"


class _Refused(Exception):
    def __init__(self, sqlstate: str) -> None:
        self.sqlstate = sqlstate


def _dbapi_error(sqlstate: str) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("ALTER TABLE schedules ...", None, _Refused(sqlstate))


def test_an_upgrade_that_gave_way_to_the_service_is_run_again():
    calls = []

    def run() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise _dbapi_error("55P03" if len(calls) == 1 else "40P01")

    migrations_api._retry_while_in_the_way(run)
    assert len(calls) == 3


def test_an_upgrade_that_failed_for_another_reason_is_not_retried():
    calls = []

    def run() -> None:
        calls.append(1)
        raise _dbapi_error("42P07")  # duplicate_table: a real defect, retrying cannot help

    with pytest.raises(sa_exc.DBAPIError):
        migrations_api._retry_while_in_the_way(run)
    assert calls == [1]


def test_an_upgrade_kept_out_gives_up_after_its_deadline():
    calls = []

    def run() -> None:
        calls.append(1)
        raise _dbapi_error("55P03")

    with pytest.raises(sa_exc.DBAPIError):
        migrations_api._retry_while_in_the_way(run, for_seconds=0.2)
    assert len(calls) >= 2
