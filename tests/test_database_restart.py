"""PostgreSQL restarted in the middle of a rush (issue 12, 数据库连接错误).

A private cluster (tests/pg_private.py, never the machine's shared server) is stopped for a
moment and started again while 60 patients keep booking. Requests during the outage get a
clear 503 `database_unavailable` with Retry-After (never a 500, never a hang); /readyz turns
red and green again; the pools recover without restarting the app; after retrying the 503s
with their own Idempotency-Keys, the 201 answers are exactly the live bookings, and the
invariant audit passes."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
import pytest
from sqlalchemy import select

from guahao import migrations_api
from guahao.app import create_app
from guahao.booking.models import LIVE_STATES, Booking
from guahao.config import Settings
from guahao.core.clock import SystemClock
from guahao.ops.invariants import check_all
from tests import pg_private
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital
from tests.conftest import LOG_FILE, TEST_DATA_KEY, TEST_INDEX_KEY, TEST_SECRET_KEY

pytestmark = pytest.mark.timeout(300)
PATIENTS = 60
SEATS = 40


@pytest.fixture
async def cluster():
    why = pg_private.available()
    if why:
        pytest.skip(f"PostgreSQL half skipped: no private cluster possible ({why})")
    pg = pg_private.PrivateCluster()
    await asyncio.to_thread(pg.start)
    try:
        import asyncpg

        conn = await asyncpg.connect(pg.admin_url.replace("postgresql+asyncpg", "postgresql"))
        await conn.execute('CREATE DATABASE "guahao"')
        await conn.close()
        await asyncio.to_thread(migrations_api.upgrade, pg.url_for("guahao"))
        yield pg
    finally:
        await asyncio.to_thread(pg.remove)


async def _rush_client(client, token, patient, slot, answers, stop: asyncio.Event) -> None:
    """One patient: tries to book until booked, refused for good, or the test stops."""
    key = uuid.uuid4().hex
    while not stop.is_set():
        r = await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                              headers={**auth(token), "Idempotency-Key": key})
        answers.append((key, r.status_code, r.headers.get("retry-after"), r.json()))
        if r.status_code != 503:
            return
        await asyncio.sleep(0.05)  # the patient's app retries the same request (same key)


async def test_a_restart_mid_rush_loses_nothing_and_recovers_by_itself(cluster):
    url = cluster.url_for("guahao")
    settings = Settings(env="test", database_url=url, data_key=TEST_DATA_KEY, index_key=TEST_INDEX_KEY,
                        secret_key=TEST_SECRET_KEY, sms_provider="recording", payment_provider="fake",
                        log_file=str(LOG_FILE), db_pool_size=5, run_jobs_in_process=False,
                        # the patients retry every 50 ms through the outage
                        hold_limit_per_account="100000/minute", hold_limit_per_address="100000/minute")
    app = create_app(settings, clock=SystemClock())
    db = app.state.db
    now = dt.datetime.now(dt.UTC)
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                   day=(now + dt.timedelta(days=3)).date(), capacity=SEATS, bands=4)
    people = []
    for _ in range(PATIENTS):
        account, token = await make_account(db, now)
        people.append((token, await make_patient(db, now, account)))

    answers: list = []
    ready: list[int] = []
    stop = asyncio.Event()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as client:
        async def watch_ready() -> None:
            while not stop.is_set():
                ready.append((await client.get("/readyz")).status_code)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_ready())
        first = [asyncio.create_task(_rush_client(client, t, p, slots[i % len(slots)], answers, stop))
                 for i, (t, p) in enumerate(people[:20])]
        await asyncio.gather(*first)  # some booked before the outage
        await asyncio.to_thread(cluster.stop, "fast")  # the database goes away ...
        rest = [asyncio.create_task(_rush_client(client, t, p, slots[i % len(slots)], answers, stop))
                for i, (t, p) in enumerate(people[20:])]
        await asyncio.sleep(1.5)
        await asyncio.to_thread(cluster.start)  # ... and comes back; the app is not restarted
        await asyncio.wait_for(asyncio.gather(*rest), 120)
        await asyncio.sleep(0.3)
        stop.set()
        await watcher

    statuses = {status for _k, status, _r, _b in answers}
    assert statuses <= {201, 409, 503}, [b for _k, s, _r, b in answers if s not in (201, 409, 503)][:3]
    unavailable = [(r, b) for _k, s, r, b in answers if s == 503]
    assert unavailable, "no request met the outage"
    assert all(r == "5" and b["code"] == "database_unavailable" for r, b in unavailable)
    assert 503 in ready and ready[-1] == 200 and ready[0] == 200
    # every patient got a final answer after the restart (their retries succeeded)
    final = {}
    for key, status, _r, body in answers:
        final[key] = (status, body)
    assert all(s in (201, 409) for s, _b in final.values())
    booked = {b["id"] for s, b in final.values() if s == 201}
    async with db.read() as s:
        live = set(await s.scalars(select(Booking.id).where(Booking.state.in_(LIVE_STATES))))
    assert live == booked and len(booked) == SEATS
    assert await check_all(db, now=dt.datetime.now(dt.UTC)) == []
    await db.dispose()


def test_only_an_unreachable_database_is_a_503():
    """Bugs stay 500s (and are logged with their trace); only reachability problems are 503s."""
    from sqlalchemy import exc as sa_exc

    from guahao.core.errors import database_unavailable

    assert database_unavailable(ConnectionRefusedError(111, "refused"))
    assert database_unavailable(sa_exc.OperationalError("SELECT 1", {}, Exception("server closed")))
    wrapped = sa_exc.DBAPIError("SELECT 1", {}, Exception("x"))
    wrapped.orig.__cause__ = ConnectionResetError()
    assert database_unavailable(wrapped)
    import asyncpg  # seen in a fault run: the driver's error reached the handler unwrapped
    assert database_unavailable(asyncpg.InterfaceError("connection is closed"))
    deadlock = sa_exc.DBAPIError("INSERT", {}, Exception("x"))  # seen during a migration
    deadlock.orig.__cause__ = asyncpg.DeadlockDetectedError("deadlock detected")
    assert database_unavailable(deadlock)
    assert not database_unavailable(ValueError("a bug"))
    assert not database_unavailable(FileNotFoundError(2, "missing template"))
    assert not database_unavailable(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
