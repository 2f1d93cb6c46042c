"""Programmatic Alembic: upgrade, downgrade, check and "are we at head?"."""
from __future__ import annotations

import fcntl
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)
# PostgreSQL refusals that mean "the service's transactions were in the way" (migrations/env.py
# makes the migration give way first): lock_not_available, deadlock_detected
GIVE_WAY = {"55P03", "40P01"}
RETRY_FOR_SECONDS = 600.0


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


@contextmanager
def _one_migrator(database_url: str) -> Iterator[None]:
    """On SQLite, one migrating process per database file (an OS file lock beside it; the
    PostgreSQL equivalent is the advisory lock in migrations/env.py)."""
    parsed = make_url(database_url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        yield
        return
    with open(f"{parsed.database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def upgrade(database_url: str, revision: str = "head", *, on_step: Callable[[str], None] | None = None) -> None:
    """Migrate up to `revision`. `on_step` is told each step this call applied ("0016_ops ->
    0017_photo"); a migrator that waited for another and found nothing to do applies none."""
    cfg = alembic_config(database_url)
    if on_step is not None:
        cfg.attributes["on_step"] = lambda step: on_step(
            f"{','.join(step.source_revision_ids) or 'base'} -> {','.join(step.destination_revision_ids)}")
    with _one_migrator(database_url):
        _retry_while_in_the_way(lambda: command.upgrade(cfg, revision))


def _sqlstate(error: BaseException) -> str | None:
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(error, "sqlstate", None)


def _retry_while_in_the_way(run: Callable[[], None], *, for_seconds: float = RETRY_FOR_SECONDS) -> None:
    """Run the upgrade; when it gave way to the service's transactions (a lock it waited for
    too long, or a deadlock it lost on purpose), nothing was applied: pause a little (jittered,
    growing to 2 s) and run it again, for up to `for_seconds`."""
    deadline = time.monotonic() + for_seconds
    pause = 0.05
    while True:
        try:
            run()
            return
        except sa_exc.DBAPIError as error:
            if _sqlstate(error) not in GIVE_WAY or time.monotonic() > deadline:
                raise
            log.warning("migration gave way to running transactions (%s); retrying", _sqlstate(error))
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, 2.0)


def downgrade(database_url: str, revision: str = "-1") -> None:
    command.downgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raise if the models and the migrations disagree (alembic check)."""
    command.check(alembic_config(database_url))


def revision(database_url: str, message: str) -> None:
    command.revision(alembic_config(database_url), message=message, autogenerate=True)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def schema_state(session: AsyncSession) -> str:
    """Where the database's schema stands for this version of the code:

    - "current": at this version's head;
    - "ahead": at a revision this version does not know, i.e. a newer release has run its
      migrations (deploys run `guahao db upgrade` before rolling the processes). Those are
      expand migrations, written so that this version keeps working (docs/OPERATIONS.md), so
      the process stays ready: taking every old process out of the load balancer at the
      moment the new schema lands would turn each deploy into an outage;
    - "behind": an older revision (or none): tables this version needs may be missing.
    """

    def _current(sync_session) -> str | None:
        return MigrationContext.configure(sync_session.connection()).get_current_revision()

    current = await session.run_sync(_current)
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    if current == script.get_current_head():
        return "current"
    if current is None:
        return "behind"
    try:
        known = script.get_revision(current) is not None
    except (CommandError, ResolutionError):  # alembic wraps the one in the other
        known = False
    return "behind" if known else "ahead"
