"""A draw's allocation SIGKILLed mid-chunk, then run again: the same ranks, the same winners,
one booking per winner, the seats intact (I1, I2) (SQLite and PostgreSQL)."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from guahao.draw import allocation
from guahao.draw import entries as draw_entries
from tests.conftest import TEST_DATA_KEY, TEST_INDEX_KEY
from tests.draw_support import ROOT, bookings_of, draw_row, draw_world, entries, patients, verify


async def _wait_for(path, proc, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the worker ended early: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            raise AssertionError("the worker never reached the crash point")
        await asyncio.sleep(0.05)


async def test_sigkill_mid_allocation_then_rerun_gives_the_same_result(client, db, clock, database_url, tmp_path,
                                                                       monkeypatch):
    world = await draw_world(db, clock, capacity=12, bands=2)
    people = await patients(db, clock, 20)
    clock.set(world.release_at)
    for _t, account_id, patient in people:
        async with db.begin() as s:
            await draw_entries.do_enter(s, account_id=account_id, patient_id=patient, schedule_id=world.schedule_id,
                                        waitlist_opt_in=False, arrived_at=clock.now(), now=clock.now())
    clock.set((await draw_row(db, world)).result_at)
    # the worker ranks and commits, decides chunk 1 (5 winners), then dies 3 decisions into chunk 2
    monkeypatch.setattr(allocation, "CHUNK", 5)
    env = {**os.environ, "GUAHAO_DATA_KEY": TEST_DATA_KEY, "GUAHAO_INDEX_KEY": TEST_INDEX_KEY,
           "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    script = ("import runpy, sys; from guahao.draw import allocation; allocation.CHUNK = 5; "
              "sys.argv = ['w'] + sys.argv[1:]; runpy.run_module('tests.draw_crash_worker', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", script, database_url, str(world.draw_id), clock.now().isoformat(),
                             str(tmp_path), "8"], env=env, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        await _wait_for(tmp_path / "stalled", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    halfway = await entries(db, world)
    assert sum(e.outcome is not None for e in halfway) == 5  # chunk 2 died with its transaction
    ranks = [(e.id, e.rank) for e in halfway]
    assert len(await bookings_of(db, world.schedule_id)) == 5

    assert await allocation.run(db, world.draw_id, now_fn=clock.now) == "allocated"
    done = await entries(db, world)
    assert [(e.id, e.rank) for e in done] == ranks
    assert [e.outcome for e in done] == ["won"] * 12 + ["lost"] * 8
    booked = await bookings_of(db, world.schedule_id)
    assert sorted(b.id for b in booked) == sorted(e.booking_id for e in done if e.outcome == "won")
    assert sorted(b.visit_no for b in booked) == list(range(1, 13))
    record = (await client.get(f"/api/v1/schedules/{world.schedule_id}/draw/audit")).json()
    assert verify(record, tmp_path).returncode == 0
