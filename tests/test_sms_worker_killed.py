"""A job worker SIGKILLed in the middle of an SMS send (issue 12, 服务器故障): a real
`guahao worker` process hands a booking message to the SMS gateway (a sandbox process), the
gateway accepts it, and the worker dies before our database records it sent. The next worker
takes the message over once its send lease lapsed and sends it again under the same out id
(our dedupe key); the gateway drops the repeat. So the patient gets every message exactly
once, nothing queued is lost, and the database ends with every message `sent`."""
from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from guahao.core.clock import SHANGHAI
from guahao.notifications.models import SentMessage
from guahao.outbox.models import OutboxMessage
from tests.booking_builders import make_schedule
from tests.builders import make_department, make_doctor, make_hospital
from tests.paysim_fixture import free_port, python_server
from tests.test_jobs_processes import Workers
from tests.test_notifications import book, new_account

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
BOOKINGS = 4


@pytest.fixture
def gateway():
    port = free_port()
    with python_server(f"from tests.sms_sandbox import create_app; import uvicorn; "
                       f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')",
                       port, "the SMS sandbox") as url:
        yield url


@pytest.fixture
async def world(db, clock):
    """Bookings ahead of the real time: the worker process runs its periodic jobs (no-show
    marking among them) on the real clock, not on the test's."""
    clock.set(dt.datetime.now(dt.UTC))
    now = clock.now()
    hid = await make_hospital(db, now, sms_to_patient_phone=False)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                   day=now.astimezone(SHANGHAI).date() + dt.timedelta(days=2), capacity=8, bands=8)
    account_id, _ = await new_account(db, now)
    return {"slots": slots, "account": account_id}


@pytest.fixture
def workers(db, database_url, tmp_path, gateway):
    w = Workers(database_url, tmp_path)
    w.env.update({"GUAHAO_JOB_PLUGINS": "tests.sms_crash_plugin", "SMSCRASH_URL": gateway,
                  "SMSCRASH_DIR": str(tmp_path), "SMSCRASH_LEASE": "2"})
    yield w
    w.kill_all()


async def _gateway_log(gateway: str) -> dict:
    async with httpx.AsyncClient(base_url=gateway) as http:
        return (await http.get("/admin/messages")).json()


async def _wait_marker(path: Path, workers: Workers, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().endswith("\n"):
        if time.monotonic() > deadline:
            pytest.fail(f"the worker never reached the gateway:\n{workers.output()}")
        for proc in workers.procs:
            if proc.poll() is not None:
                pytest.fail(f"the worker exited with {proc.returncode}:\n{workers.output()}")
        await asyncio.sleep(0.05)
    return path.read_text().strip()


async def _sent_rows(db) -> dict[str, str]:
    async with db.read() as s:
        return dict((await s.execute(select(SentMessage.dedupe_key, SentMessage.state))).all())


async def test_an_sms_send_killed_after_the_gateway_accepted_it_reaches_the_patient_once(
        db, clock, world, workers, gateway, tmp_path):
    booked = [await book(db, clock, world, slot=i) for i in range(BOOKINGS)]
    wanted = {f"booking_confirmed:{b}" for b in booked}
    before = {m["out_id"] for m in (await _gateway_log(gateway))["received"]}
    assert not before & wanted

    workers.env["SMSCRASH_STALL"] = "1"
    first = workers.start(lease=3, concurrency=1)
    caught = await _wait_marker(tmp_path / "gateway_accepted", workers, 60)
    assert caught in wanted
    # the crash window: the gateway has the message, our books say it is being sent
    assert (await _sent_rows(db))[caught] == "sending"
    assert await workers.stop(first, signal.SIGKILL) == -signal.SIGKILL

    workers.env["SMSCRASH_STALL"] = "0"
    workers.start(lease=3)

    async def all_sent() -> bool:
        rows = await _sent_rows(db)
        return all(rows.get(key) == "sent" for key in wanted)

    await workers.until(all_sent, timeout=90, what="every booking message to be recorded sent")
    log = await _gateway_log(gateway)
    requests = Counter(m["out_id"] for m in log["received"] if m["out_id"] in wanted)
    delivered = Counter(m["out_id"] for m in log["delivered"] if m["out_id"] in wanted)
    assert delivered == dict.fromkeys(wanted, 1)  # every message reached the phone, once
    assert requests[caught] == 2  # the killed attempt and the take-over; the gateway dropped the repeat
    assert all(requests[key] == 1 for key in wanted - {caught})
    async with db.read() as s:
        attempts = await s.scalar(select(SentMessage.attempts).where(SentMessage.dedupe_key == caught))
        states = set(await s.scalars(select(OutboxMessage.state)
                                     .where(OutboxMessage.topic == "notify.booking_confirmed")))
    assert attempts == 2
    assert states <= {"done", "in_progress"}  # nothing left queued or dead
