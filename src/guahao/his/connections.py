"""Hospital HIS connections: stored (encrypted key), read, and turned into cached clients.

`client_for` keeps one `HisClient` per hospital per process, rebuilt when the row's
`updated_at` changes, so its connection pool and circuit breaker live across requests.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.his.breaker import Breaker
from guahao.his.client import HisClient
from guahao.his.models import HisConnection
from guahao.his.schemas import HisConnectionRead, HisConnectionUpdate


@dataclass(frozen=True)
class Connection:
    hospital_id: int
    base_url: str
    platform: str
    pool: str
    timeout_ms: int
    cache_ms: int
    updated_at: dt.datetime


# hospital -> (the row version, address and event loop the client was made for, the client)
_clients: dict[int, tuple[tuple[dt.datetime, str, str, int], HisClient]] = {}


async def get_connection(session: AsyncSession, hospital_id: int) -> Connection | None:
    row = await session.scalar(select(HisConnection).where(HisConnection.hospital_id == hospital_id))
    if row is None:
        return None
    return Connection(hospital_id=row.hospital_id, base_url=row.base_url, platform=row.platform, pool=row.pool,
                      timeout_ms=row.timeout_ms, cache_ms=row.cache_ms, updated_at=row.updated_at)


def read_of(conn: Connection) -> HisConnectionRead:
    return HisConnectionRead(hospital_id=conn.hospital_id, base_url=conn.base_url, platform=conn.platform,
                             pool=conn.pool, key_set=True, timeout_ms=conn.timeout_ms, cache_ms=conn.cache_ms,
                             updated_at=conn.updated_at)


async def do_set_connection(session: AsyncSession, hospital_id: int, data: HisConnectionUpdate, *,
                            now: dt.datetime) -> Connection:
    """Create or replace a hospital's connection (the caller audits it; the key is never logged)."""
    row = await session.scalar(select(HisConnection).where(HisConnection.hospital_id == hospital_id)
                               .with_for_update())
    if row is None:
        row = HisConnection(hospital_id=hospital_id)
        session.add(row)
    row.base_url, row.platform, row.pool = str(data.base_url).rstrip("/"), data.platform, data.pool
    row.key, row.timeout_ms, row.cache_ms, row.updated_at = data.key.lower(), data.timeout_ms, data.cache_ms, now
    await session.flush()
    conn = await get_connection(session, hospital_id)
    assert conn is not None
    return conn


async def client_for(session: AsyncSession, hospital_id: int) -> HisClient | None:
    """The hospital's HIS client, or None when it has no connection. A read; call it before
    (not inside) the transaction that records what the HIS said."""
    row = await session.scalar(select(HisConnection).where(HisConnection.hospital_id == hospital_id))
    if row is None:
        return None
    # an httpx client serves one loop; the address is part of the version too, so a row
    # rewritten within one clock tick (tests with a frozen clock) never gets a stale client
    version = (row.updated_at, row.base_url, row.platform, id(asyncio.get_running_loop()))
    cached = _clients.get(hospital_id)
    if cached is not None and cached[0] == version:
        return cached[1]
    client = HisClient(row.base_url, row.platform, bytes.fromhex(row.key), timeout=row.timeout_ms / 1000,
                       breaker=Breaker(), hospital_id=hospital_id)
    _clients[hospital_id] = (version, client)
    if cached is not None and cached[0][-1] == version[-1]:
        await cached[1].aclose()  # (a client of another loop is left to the collector)
    return client


async def close_all() -> None:
    """Close every cached client (at shutdown, and between tests that change event loops)."""
    while _clients:
        _, (_, client) = _clients.popitem()
        await client.aclose()
