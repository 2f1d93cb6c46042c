"""Overload at three times capacity (issue 12, 访问量过大), through a real server on each
database: the capacity of one process admitting 4 holds at a time is measured with a closed
loop, then holds arrive at three times that rate whatever happens to the earlier ones (an
open loop, `guahao.bench.overload`, the code of `guahao bench overload`). Every request is
answered before the client gives up: a hold, or an immediate 503 `overloaded` with
Retry-After and a message in the caller's language; the holds acknowledged are exactly the
live bookings, nothing refused was booked, and the invariants hold. No time is asserted: the
outcome is."""
from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx
import pytest

from guahao import migrations_api
from guahao.bench import loadgen, seed
from guahao.bench.overload import Shot, acknowledged_ids, hold_requests, live_booking_ids, open_loop
from guahao.bench.servers import UvicornServer
from guahao.core.db import create_database
from guahao.ops.invariants import check_all
from tests.conftest import TEST_DATA_KEY, TEST_INDEX_KEY, TEST_SECRET_KEY
from tests.test_booking_http_rush import pg_url  # a scratch PostgreSQL database, used by service_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
# the probe keeps exactly the admission bound in flight: the process is saturated, none refused
PROBE, CONNECTIONS, SECONDS, CLIENT_TIMEOUT = 80, 4, 2.0, 30.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def service_url(request, tmp_path):
    if request.param == "postgresql":
        async for url in pg_url.__wrapped__():
            yield url
        return
    url = f"sqlite+aiosqlite:///{tmp_path / 'overload.db'}"
    await asyncio.to_thread(migrations_api.upgrade, url)
    yield url


@pytest.fixture
def server(service_url, tmp_path):
    srv = UvicornServer("guahao.asgi:app", workers=1, name="guahao", log_dir=tmp_path, env={
        "GUAHAO_ENV": "test", "GUAHAO_DATABASE_URL": service_url, "GUAHAO_DATA_KEY": TEST_DATA_KEY,
        "GUAHAO_INDEX_KEY": TEST_INDEX_KEY, "GUAHAO_SECRET_KEY": TEST_SECRET_KEY,
        "GUAHAO_RUN_JOBS_IN_PROCESS": "false", "GUAHAO_SMS_PROVIDER": "recording", "GUAHAO_REDIS_URL": "",
        "GUAHAO_ADMISSION_LIMITS": "hold=4", "GUAHAO_DB_POOL_SIZE": "2",
        "GUAHAO_HOLD_LIMIT_PER_ADDRESS": "1000000/minute"})  # every patient comes from 127.0.0.1
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def _released_slot(db, capacity: int) -> int:
    now = dt.datetime.now(dt.UTC)
    _, schedule_id, slot_id = await seed.seed_schedule(db, now, capacity=capacity)
    await seed.publish(db, schedule_id, now - dt.timedelta(seconds=1), now)
    return slot_id


async def test_three_times_capacity_is_answered_in_time_and_loses_no_booking(service_url, server):
    db = create_database(service_url, pool_size=2)
    try:
        await server.wait_ready()
        host = f"127.0.0.1:{server.port}"
        probe_slot, warm_slot = await _released_slot(db, PROBE), await _released_slot(db, 2 * CONNECTIONS)
        clients = await seed.seed_clients(db, PROBE + 2 * CONNECTIONS, dt.datetime.now(dt.UTC))
        probe = await loadgen.fire("127.0.0.1", server.port, hold_requests(host, probe_slot, clients[:PROBE]),
                                   connections=CONNECTIONS, start_wall=0,
                                   warmup=hold_requests(host, warm_slot, clients[PROBE:]))
        assert {a.status for a in probe.answers} <= {201, 503}, server.log_tail()
        booked = sum(a.status == 201 for a in probe.answers)
        capacity = booked / max(max(a.done for a in probe.answers) - probe.t0, 1e-3)

        count = max(40, int(3 * capacity * SECONDS))
        slot = await _released_slot(db, count)  # a seat for everyone: every admitted hold is a real claim
        clients = await seed.seed_clients(db, count, dt.datetime.now(dt.UTC))
        shots: list[Shot] = await open_loop("127.0.0.1", server.port, hold_requests(host, slot, clients),
                                            3 * capacity, timeout=CLIENT_TIMEOUT)
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            ready = await http.get("/readyz")

        assert [s.error for s in shots if s.status == 0] == []  # answered before the client gave up
        statuses = {s.status for s in shots}
        assert statuses <= {201, 503}, (statuses, server.log_tail())
        refused = [s for s in shots if s.status == 503]
        assert refused, "three times the capacity never reached the admission bound"
        assert {s.code for s in refused} == {"overloaded"}
        assert all(s.retry_after and int(s.retry_after) >= 1 for s in refused)
        for s in refused:  # requests alternate zh-CN and en (hold_requests)
            detail = json.loads(s.body)["detail"]
            assert ("请" in detail) if s.index % 2 == 0 else ("try again" in detail), detail
        assert ready.status_code == 200
        # zero lost bookings: every 201 is a live booking and nothing refused was booked
        assert acknowledged_ids(shots) == await live_booking_ids(db, slot)
        assert acknowledged_ids(probe.answers) == await live_booking_ids(db, probe_slot)
        assert await check_all(db, now=dt.datetime.now(dt.UTC)) == []
    finally:
        await db.dispose()
