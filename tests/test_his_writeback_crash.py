"""Our worker killed in the crash window of a HIS write-back: a `guahao worker` process has the
HIS (a real simulator process) confirm a booking, and is SIGKILLed before our database records
the answer. Another worker takes the job over after its lease: the HIS answers the repeated
lock and confirm with the same order and visit number, so there is exactly one confirmation
at the HIS and our booking records its visit number (I6)."""
from __future__ import annotations

import asyncio
import signal
import time

import pytest

from guahao.his.client import order_id_for
from tests.his_records_support import fresh_his_clients  # noqa: F401 (fixture)
from tests.his_support import his_sim  # noqa: F401 (fixture)
from tests.his_synced_support import (
    BAND,
    booking,
    confirmed,
    his_orders,
    platform_slot,
    synced_world,
    visit_numbers_given,
)
from tests.test_jobs_processes import Workers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def workers(db, database_url, tmp_path):
    w = Workers(database_url, tmp_path)
    w.env.update({"GUAHAO_JOB_PLUGINS": "tests.his_crash_plugin", "HISCRASH_DIR": str(tmp_path)})
    yield w
    w.kill_all()


async def test_worker_killed_between_the_his_confirm_and_recording_it_confirms_once(
        client, db, clock, his_sim, workers, tmp_path):
    await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    booking_id, _, _ = await confirmed(db, clock, slot.id)

    workers.env["HISCRASH_STALL"] = "1"
    first = workers.start(lease=3)
    marker = tmp_path / "his_confirmed"
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text().endswith("\n")):
        if time.monotonic() > deadline or first.poll() is not None:
            pytest.fail(f"the worker never confirmed at the HIS:\n{workers.output()}")
        await asyncio.sleep(0.05)
    order_id, visit_no = marker.read_text().split()
    # the crash window: the HIS has confirmed, our books do not know it yet
    assert order_id == order_id_for(booking_id)
    assert [o[1] for o in his_orders(his_sim)] == ["confirmed"]
    assert (await booking(db, booking_id)).his_state is None
    assert await workers.stop(first, signal.SIGKILL) == -signal.SIGKILL

    workers.env["HISCRASH_STALL"] = "0"
    workers.start(lease=3)

    async def recorded() -> bool:
        return (await booking(db, booking_id)).his_state == "confirmed"

    await workers.until(recorded, timeout=90, what="the write-back to be recorded by the second worker")
    row = await booking(db, booking_id)
    assert row.his_visit_no == int(visit_no)  # the same visit number the first call got
    assert [o[1:3] for o in his_orders(his_sim)] == [("confirmed", int(visit_no))]
    assert visit_numbers_given(his_sim) == 1
