"""Runs a draw's allocation in its own process and stalls mid-chunk so the test can SIGKILL it.

    python -m tests.draw_crash_worker <database url> <draw id> <now iso> <marker dir> <decisions>

After `decisions` entries have their hold (the last ones not committed: the chunk's
transaction is still open, holds and seats included; a chunk writes its outcomes at its end)
it writes `stalled` in the marker directory and sleeps until killed. Keys come from GUAHAO_DATA_KEY / GUAHAO_INDEX_KEY.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from pathlib import Path

from guahao.core import crypto
from guahao.core.db import create_database
from guahao.draw import allocation


async def main(url: str, draw_id: int, now: dt.datetime, marker: Path, decisions: int) -> None:
    crypto.configure(os.environ["GUAHAO_DATA_KEY"], os.environ["GUAHAO_INDEX_KEY"])
    real = allocation._hold_for
    seen = 0

    async def hold_then_stall(*args, **kwargs):
        nonlocal seen
        answer = await real(*args, **kwargs)
        seen += 1
        if seen == decisions:
            (marker / "stalled").write_text("1")
            await asyncio.sleep(3600)  # the test SIGKILLs us here
        return answer

    allocation._hold_for = hold_then_stall
    db = create_database(url, pool_size=2)
    await allocation.run(db, draw_id, now_fn=lambda: now)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), dt.datetime.fromisoformat(sys.argv[3]), Path(sys.argv[4]),
                     int(sys.argv[5])))
