"""A guahao service for the fault benchmarks (overload, bots): a fresh database (scratch
PostgreSQL or a SQLite file), its keys, `uvicorn guahao.asgi:app` with W workers configured
as in production, and a database handle for seeding and checking."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from guahao.bench import seed
from guahao.bench.servers import PG_ADMIN_URL, ScratchPostgres, UvicornServer


@dataclass
class Service:
    db: object  # guahao.core.db.Database
    server: UvicornServer

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def host_header(self) -> str:
        split = urlsplit(self.server.base_url)
        return f"{split.hostname}:{split.port}"

    async def released_slot(self, capacity: int) -> int:
        """A schedule with `capacity` seats in one slot, published and released now."""
        now = dt.datetime.now(dt.UTC)
        _, schedule_id, slot_id = await seed.seed_schedule(self.db, now, capacity=capacity)
        await seed.publish(self.db, schedule_id, now - dt.timedelta(seconds=1), now)
        return slot_id


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@contextlib.asynccontextmanager
async def running(database: str, workers: int, log_dir: Path, env: dict[str, str], *,
                  pg_admin_url: str = PG_ADMIN_URL):
    from guahao import migrations_api
    from guahao.core import crypto, signing
    from guahao.core.db import create_database

    scratch = ScratchPostgres("guahao_bench_faults", pg_admin_url) if database == "postgresql" else None
    url = await scratch.create() if scratch else f"sqlite+aiosqlite:///{log_dir / 'guahao-bench.db'}"
    data_key, index_key, secret_key = _key(), _key(), secrets.token_urlsafe(32)
    crypto.configure(data_key, index_key)
    signing.configure(secret_key)  # the seeded sessions must match the server's key
    server = UvicornServer("guahao.asgi:app", workers=workers, name="guahao", log_dir=log_dir, env={
        "GUAHAO_ENV": "production", "GUAHAO_DATABASE_URL": url, "GUAHAO_DATA_KEY": data_key,
        "GUAHAO_INDEX_KEY": index_key, "GUAHAO_SECRET_KEY": secret_key, "GUAHAO_SMS_PROVIDER": "none",
        "GUAHAO_FACE_CHECK_PROVIDER": "none", "GUAHAO_LOG_JSON": "true", "GUAHAO_PAYSIM_KEY": secrets.token_urlsafe(32),
        "GUAHAO_RUN_JOBS_IN_PROCESS": "true" if database == "sqlite" else "false", "GUAHAO_REDIS_URL": "", **env})
    db = None
    try:
        await asyncio.to_thread(migrations_api.upgrade, url)
        server.start()
        db = create_database(url, pool_size=4)
        await server.wait_ready()
        yield Service(db, server)
    finally:
        if db is not None:
            await db.dispose()
        server.stop()
        if scratch is not None:
            await scratch.drop()
