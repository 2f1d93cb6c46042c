"""Real worker processes: killed with SIGKILL mid-job, stopped with SIGTERM, and two of them
sharing one queue. The workers run tests/jobs_worker.py (run_worker, the code of
`guahao worker`) with the test-only handlers of tests/jobs_plugin.py, on the session's test
database; their handlers write what they did to files in JOBTEST_DIR."""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from guahao.outbox import service as outbox
from guahao.outbox.models import OutboxMessage
from tests.conftest import LOG_FILE, TEST_DATA_KEY, TEST_INDEX_KEY

REPO = Path(__file__).resolve().parents[1]
UTC = dt.UTC
pytestmark = pytest.mark.slow


class Workers:
    def __init__(self, database_url: str, directory: Path) -> None:
        self.directory = directory
        self.env = {**os.environ, "GUAHAO_ENV": "test", "GUAHAO_DATABASE_URL": database_url,
                    "GUAHAO_DATA_KEY": TEST_DATA_KEY, "GUAHAO_INDEX_KEY": TEST_INDEX_KEY,
                    "GUAHAO_SECRET_KEY": secrets.token_urlsafe(32), "GUAHAO_SMS_PROVIDER": "recording",
                    "GUAHAO_LOG_FILE": str(LOG_FILE), "GUAHAO_JOB_PLUGINS": "tests.jobs_plugin",
                    "JOBTEST_DIR": str(directory),
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.procs: list[subprocess.Popen] = []

    def start(self, *, lease: float, concurrency: int = 4) -> subprocess.Popen:
        log = open(self.directory / f"worker-{len(self.procs)}.out", "wb")  # noqa: SIM115
        env = {**self.env, "JOBTEST_LEASE_SECONDS": str(lease), "JOBTEST_POLL_SECONDS": "0.05",
               "GUAHAO_JOB_CONCURRENCY": str(concurrency)}
        proc = subprocess.Popen([sys.executable, "-m", "tests.jobs_worker"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.directory.glob("worker-*.out")))

    async def until(self, predicate, *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await predicate():
                return
            for proc in self.procs:
                if proc.poll() not in (None, -signal.SIGKILL):
                    pytest.fail(f"a worker exited with {proc.returncode} while waiting for {what}:\n{self.output()}")
            await asyncio.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}:\n{self.output()}")

    async def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"worker did not stop within {timeout}s:\n{self.output()}")
            await asyncio.sleep(0.05)
        return proc.returncode

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def lines(self, name: str = "executions.log") -> list[list[str]]:
        path = self.directory / name
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def workers(db, database_url, tmp_path):  # `db`: the app fixture wiped the tables
    w = Workers(database_url, tmp_path)
    yield w
    w.kill_all()


async def _enqueue(db, topic: str, key: str, payload: dict) -> int:
    now = dt.datetime.now(UTC)  # the workers run on the system clock
    async with db.begin() as s:
        await outbox.enqueue(s, topic=topic, dedupe_key=key, payload=payload, now=now)
    async with db.read() as s:
        return await s.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key))


async def _get(db, message_id: int) -> OutboxMessage:
    async with db.read() as s:
        return await s.get(OutboxMessage, message_id)


async def test_sigkilled_worker_job_runs_again_after_its_lease_and_its_effect_happens_once(db, workers):
    mid = await _enqueue(db, "test.crash_once", "crash:1", {"key": "k1", "stall_seconds": 120})
    first = workers.start(lease=3)
    # the handler did its effect and is now stalling before the worker records the job done
    await workers.until(lambda: _async([l[:2] for l in workers.lines()].count(["effect", "k1"]) == 1),
                        timeout=60, what="the first run's effect")
    claimed = await _get(db, mid)
    assert (claimed.state, claimed.attempts) == ("in_progress", 1)

    assert await workers.stop(first, signal.SIGKILL) == -signal.SIGKILL
    lease_end = (await _get(db, mid)).locked_until  # as the heartbeat last left it
    second = workers.start(lease=3)

    async def done():
        return (await _get(db, mid)).state == "done"

    await workers.until(done, timeout=60, what="the job to run again")
    starts = [float(l[2]) for l in workers.lines() if l[:2] == ["start", "k1"]]
    assert len(starts) == 2  # it ran twice ...
    assert starts[1] > lease_end.timestamp()  # ... the second time only after the lease lapsed
    m = await _get(db, mid)
    assert (m.state, m.attempts) == ("done", 2)
    async with db.read() as s:  # ... and its effect happened once
        effects = await s.scalar(select(func.count()).where(OutboxMessage.dedupe_key == "effect:k1"))
    assert effects == 1
    assert await workers.stop(second) == 0


async def test_sigterm_lets_the_running_job_finish_before_the_worker_exits(db, workers):
    mid = await _enqueue(db, "test.slow", "slow:1", {"key": "s1", "seconds": 1.5})
    proc = workers.start(lease=30)
    await workers.until(lambda: _async(any(l[:2] == ["start", "s1"] for l in workers.lines())),
                        timeout=60, what="the job to start")
    assert await workers.stop(proc, signal.SIGTERM) == 0
    assert any(l[:2] == ["end", "s1"] for l in workers.lines())
    m = await _get(db, mid)
    assert (m.state, m.attempts) == ("done", 1)


async def test_two_worker_processes_deliver_every_job_once(db, workers, backend):
    count = 2000
    a, b = workers.start(lease=120), workers.start(lease=120)
    await workers.until(lambda: _async(len(list(workers.directory.glob("ready-*"))) == 2), timeout=60,
                        what="both workers to start")
    now = dt.datetime.now(UTC)
    keys = [f"r{i}" for i in range(count)]
    async with db.begin() as s:  # one commit: both workers find the whole queue at once
        await s.execute(insert(OutboxMessage.__table__), [
            {"topic": "test.record", "dedupe_key": f"record:{k}", "payload": {"key": k}, "state": "pending",
             "attempts": 0, "available_at": now, "created_at": now} for k in keys])

    async def all_done():
        async with db.read() as s:
            return await s.scalar(select(func.count()).where(OutboxMessage.topic == "test.record",
                                                             OutboxMessage.state == "done")) == count

    await workers.until(all_done, timeout=300, what=f"{count} jobs on {backend}")
    assert await workers.stop(a) == 0 and await workers.stop(b) == 0

    runs: collections.Counter[str] = collections.Counter()
    per_worker = {}
    for path in workers.directory.glob("record-*.log"):
        done_here = path.read_text().split()
        per_worker[path.name] = len(done_here)
        runs.update(done_here)
    assert set(runs) == set(keys)  # none lost
    assert max(runs.values()) == 1  # none twice
    assert len(per_worker) == 2 and min(per_worker.values()) > 0, per_worker  # both took a share
    async with db.read() as s:
        states = (await s.execute(select(OutboxMessage.state, OutboxMessage.attempts, func.count())
                                  .where(OutboxMessage.topic == "test.record")
                                  .group_by(OutboxMessage.state, OutboxMessage.attempts))).all()
    assert states == [("done", 1, count)]  # no retry, no lapsed lease


async def _async(value):
    return value
