"""Network problems (issue 12, 网络问题), with a TCP fault proxy (tests/fault_proxy.py):

- between the patient and guahao: the hold is processed but its answer is lost on the way
  back; the patient's retry with the same Idempotency-Key gets the first answer, and there is
  one booking;
- between guahao and PostgreSQL: the links are cut in the middle of a rush (nothing
  acknowledged is lost, the patients' retries get final answers, the audit passes), and a
  database that stops answering (half-open) gives a 503 after the statement timeout instead
  of a hanging request, after which the pool recovers by itself."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
import pytest
from sqlalchemy import select

from guahao import migrations_api
from guahao.app import create_app
from guahao.bench.servers import ScratchPostgres, UvicornServer
from guahao.booking.models import LIVE_STATES, Booking
from guahao.config import Settings
from guahao.core.clock import SystemClock
from guahao.core.db import create_database
from guahao.ops.invariants import check_all
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital
from tests.conftest import LOG_FILE, PG_ADMIN_URL, TEST_DATA_KEY, TEST_INDEX_KEY, TEST_SECRET_KEY
from tests.fault_proxy import FaultProxy
from tests.test_booking_http_rush import pg_url  # noqa: F401 (fixture: a scratch PostgreSQL database)

pytestmark = pytest.mark.timeout(300)


async def _world(db, patients: int, seats: int, bands: int = 2):
    now = dt.datetime.now(dt.UTC)
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                   day=(now + dt.timedelta(days=3)).date(), capacity=seats, bands=bands)
    people = []
    for _ in range(patients):
        account, token = await make_account(db, now)
        people.append((token, await make_patient(db, now, account)))
    return slots, people


def _hold(client, token, patient, slot, key):
    return client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                       headers={**auth(token), "Idempotency-Key": key})


async def test_a_lost_answer_is_found_again_by_the_retry(pg_url):
    server = UvicornServer("guahao.asgi:app", workers=1, name="guahao", env={
        "GUAHAO_ENV": "test", "GUAHAO_DATABASE_URL": pg_url, "GUAHAO_DATA_KEY": TEST_DATA_KEY,
        "GUAHAO_INDEX_KEY": TEST_INDEX_KEY, "GUAHAO_SECRET_KEY": TEST_SECRET_KEY,
        "GUAHAO_RUN_JOBS_IN_PROCESS": "false", "GUAHAO_SMS_PROVIDER": "recording", "GUAHAO_REDIS_URL": ""})
    server.start()
    db = create_database(pg_url, pool_size=2)
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    try:
        slots, people = await _world(db, 20, 10, bands=1)
        await server.wait_ready()
        proxy.drop_replies = True
        keys = [uuid.uuid4().hex for _ in people]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}", timeout=30) as lossy:
            lost = await asyncio.gather(*(_hold(lossy, t, p, slots[0], k) for (t, p), k in zip(people, keys)),
                                        return_exceptions=True)
        assert all(isinstance(r, httpx.TransportError) for r in lost), lost[:3]
        assert proxy.replies_dropped >= len(people)
        proxy.drop_replies = False
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}", timeout=30) as client:
            first = await asyncio.gather(*(_hold(client, t, p, slots[0], k) for (t, p), k in zip(people, keys)))
            again = await asyncio.gather(*(_hold(client, t, p, slots[0], k) for (t, p), k in zip(people, keys)))
        # the requests were processed while their answers were lost: the retries get those answers
        assert sorted(r.status_code for r in first) == [201] * 10 + [409] * 10
        assert [r.json() for r in first] == [r.json() for r in again]
        booked = {r.json()["id"] for r in first if r.status_code == 201}
        async with db.read() as s:
            live = set(await s.scalars(select(Booking.id).where(Booking.state.in_(LIVE_STATES))))
        assert live == booked
    finally:
        await proxy.stop()
        server.stop()
        await db.dispose()


@pytest.fixture
async def proxied_app():
    """The app talking to a scratch PostgreSQL database through the fault proxy."""
    scratch = ScratchPostgres("guahao_test_net", PG_ADMIN_URL)
    url = await scratch.create()
    await asyncio.to_thread(migrations_api.upgrade, url)
    pg_port = int(url.split("@127.0.0.1:")[1].split("/")[0])
    proxy = await FaultProxy("127.0.0.1", pg_port).start()
    settings = Settings(env="test", database_url=url.replace(f":{pg_port}/", f":{proxy.port}/"),
                        data_key=TEST_DATA_KEY, index_key=TEST_INDEX_KEY, secret_key=TEST_SECRET_KEY,
                        sms_provider="recording", payment_provider="fake", log_file=str(LOG_FILE), db_pool_size=4,
                        run_jobs_in_process=False, db_statement_timeout_seconds=1.0,
                        hold_limit_per_account="100000/minute", hold_limit_per_address="100000/minute")
    app = create_app(settings, clock=SystemClock())
    direct = create_database(url, pool_size=2)
    try:
        yield app, proxy, direct
    finally:
        await app.state.db.dispose()
        await direct.dispose()
        await proxy.stop()
        await scratch.drop()


async def test_links_cut_mid_rush_lose_nothing_acknowledged(proxied_app):
    app, proxy, direct = proxied_app
    slots, people = await _world(direct, 40, 25)
    keys = [uuid.uuid4().hex for _ in people]
    answers: dict[str, tuple[int, dict]] = {}
    unavailable = []
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as client:
        async def patient(i: int) -> None:
            (token, pid), key = people[i], keys[i]
            while True:
                r = await _hold(client, token, pid, slots[i % 2], key)
                answers[key] = (r.status_code, r.json())
                if r.status_code != 503:
                    return
                unavailable.append(r.json()["code"])
                await asyncio.sleep(0.05)

        async def cutter() -> None:
            for _ in range(5):
                await asyncio.sleep(0.02)
                proxy.cut()

        await asyncio.gather(cutter(), *(patient(i) for i in range(len(people))))
    assert unavailable and set(unavailable) == {"database_unavailable"}  # the cuts hit work in flight
    finals = list(answers.values())
    assert {s for s, _ in finals} <= {201, 409}, [b for s, b in finals if s not in (201, 409)][:2]
    booked = {b["id"] for s, b in finals if s == 201}
    async with direct.read() as s:
        live = set(await s.scalars(select(Booking.id).where(Booking.state.in_(LIVE_STATES))))
    assert live == booked and len(booked) == 25
    assert await check_all(direct, now=dt.datetime.now(dt.UTC)) == []


async def test_a_database_that_stops_answering_gives_503_then_recovers(proxied_app):
    app, proxy, direct = proxied_app
    slots, people = await _world(direct, 2, 5)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as client:
        (t1, p1), (t2, p2) = people
        assert (await _hold(client, t1, p1, slots[0], uuid.uuid4().hex)).status_code == 201
        proxy.blackhole = True  # the database's host stops answering; sockets stay open
        # bounded by the statement timeout (1 s here), not hanging: the guard is only a backstop
        stuck = await asyncio.wait_for(_hold(client, t2, p2, slots[0], key := uuid.uuid4().hex), 60)
        assert stuck.status_code == 503 and stuck.json()["code"] == "database_unavailable"
        assert stuck.headers["retry-after"]
        proxy.blackhole = False
        proxy.cut()  # the stuck links are gone; the pool must open new ones by itself
        for _ in range(20):
            again = await _hold(client, t2, p2, slots[0], key)
            if again.status_code != 503:
                break
            await asyncio.sleep(0.2)
        assert again.status_code == 201
