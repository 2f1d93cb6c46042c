"""Two `guahao serve` instances started at the same moment on one empty database (issue 12,
系统维护: `serve` no longer races to migrate on start): both come up ready, and each migration
ran exactly once (alembic logs every step it runs; the two outputs together name each step
once), because the second migrator waits for the first's lock and then finds nothing to do.
tests/test_migrate_race.py races the migrator function itself with more processes."""
from __future__ import annotations

import os
import re
import uuid

import pytest

from guahao import migrations_api
from tests.conftest import _pg_admin, _pg_reachable, pg_url_for
from tests.serve_support import Service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        return
    problem = await _pg_reachable()
    if problem:
        if os.environ.get("GUAHAO_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL half: not reachable ({problem})")
        pytest.skip(f"PostgreSQL half skipped: not reachable ({problem})")
    name = f"guahao_serve_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url_for(name)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_serve_instances_starting_at_once_migrate_once(empty_url, tmp_path):
    services = []
    for i in range(2):
        directory = tmp_path / f"instance-{i}"
        directory.mkdir()
        services.append(Service(directory, GUAHAO_DATABASE_URL=empty_url))
    try:
        for svc in services:
            svc.serve("--workers", "2")
        for svc in services:
            svc.wait_healthy(path="/readyz", timeout=240)  # four uvicorn workers booting on a busy machine
        # `serve` runs `db upgrade`, which says each step it applied, or that there was none
        outputs = [svc.output() for svc in services]
        steps = [m for out in outputs for m in re.findall(r"^migrated (.+ -> .+)$", out, re.M)]
        assert steps, outputs
        assert len(steps) == len(set(steps)), steps  # no step ran twice
        assert steps[0].startswith("base -> ") and steps[-1].endswith(f"-> {migrations_api.head_revision()}")
        assert sum("database schema already up to date" in out for out in outputs) == 1, outputs
    finally:
        for svc in services:
            svc.kill()
