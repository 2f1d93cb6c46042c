"""A promoter process for the stampede test: runs `do_promote` for one schedule ROUNDS times,
each in its own transaction, at a fixed instant, and prints how many offers it made.

    python -m tests.waitlist_promoter_proc <schedule id> <now iso> <rounds>
(database and keys from GUAHAO_* variables, as `guahao worker` reads them).

With WAITLIST_PAUSE_BEFORE_COMMIT=1 it makes its offers, prints "offered <n>" and then sleeps
inside the open transaction: the crash test SIGKILLs it there."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys

from guahao.config import Settings
from guahao.core import crypto
from guahao.core.db import create_database
from guahao.waitlist import promote


async def main(schedule_id: int, now: dt.datetime, rounds: int) -> int:
    settings = Settings()
    crypto.configure_from(settings)
    db = create_database(settings.database_url, pool_size=2)
    made = 0
    try:
        for _ in range(rounds):
            async with db.begin() as session:
                made += len(await promote.do_promote(session, schedule_id=schedule_id, now=now))
                if os.environ.get("WAITLIST_PAUSE_BEFORE_COMMIT") == "1":
                    print(f"offered {made}", flush=True)
                    await asyncio.sleep(600)  # killed here, before the commit
            await asyncio.sleep(0.005)
    finally:
        await db.dispose()
    return made


if __name__ == "__main__":
    print(asyncio.run(main(int(sys.argv[1]), dt.datetime.fromisoformat(sys.argv[2]), int(sys.argv[3]))), flush=True)
