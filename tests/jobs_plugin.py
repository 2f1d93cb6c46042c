"""Test-only job handlers for the worker-process tests (loaded with
GUAHAO_JOB_PLUGINS=tests.jobs_plugin). They write what they did to files in JOBTEST_DIR with
single O_APPEND writes, which survive a SIGKILL of the process."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from guahao.outbox import service as outbox
from guahao.outbox.registry import JobContext, handler

DIR = Path(os.environ.get("JOBTEST_DIR", "."))


def _append(name: str, line: str) -> None:
    fd = os.open(DIR / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _starts(key: str) -> int:
    path = DIR / "executions.log"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.split()[:2] == ["start", key])


@handler("test.crash_once")
async def crash_once(ctx: JobContext, payload: dict) -> None:
    """Does its effect, then (on its first run only) stalls long enough to be killed before the
    worker records it done. The effect is an outbox row with a dedupe key: idempotent."""
    key = payload["key"]
    first = _starts(key) == 0
    _append("executions.log", f"start {key} {time.time():.6f} {os.getpid()}")
    async with ctx.db.begin() as session:
        await outbox.enqueue_once(session, topic="test.effect", dedupe_key=f"effect:{key}",
                                  payload={"key": key}, now=ctx.clock.now())
    _append("executions.log", f"effect {key} {time.time():.6f} {os.getpid()}")
    if first:
        await asyncio.sleep(float(payload.get("stall_seconds", 120)))


@handler("test.effect")
async def effect(ctx: JobContext, payload: dict) -> None:
    """The follow-up message the effect row is; nothing to do."""


@handler("test.slow")
async def slow(ctx: JobContext, payload: dict) -> None:
    _append("executions.log", f"start {payload['key']} {time.time():.6f} {os.getpid()}")
    await asyncio.sleep(float(payload["seconds"]))
    _append("executions.log", f"end {payload['key']} {time.time():.6f} {os.getpid()}")


@handler("test.record")
async def record(ctx: JobContext, payload: dict) -> None:
    await asyncio.sleep(0.002)  # a little work, so that both workers get a share
    _append(f"record-{os.getpid()}.log", payload["key"])


if os.environ.get("JOBTEST_DIR"):
    _append(f"ready-{os.getpid()}", "ready")
