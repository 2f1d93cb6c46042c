"""Group commit of sold-out answers on the embedded SQLite default.

SQLite has one writer at a time, and recording a sold-out answer as its key's answer is a
write. With one write transaction per answer, the few hold transactions that can still win
queued behind thousands of sold-out answers for the write lock at 08:00: in the rush of
docs/BENCHMARKS.md the sell-out itself took 15 s on SQLite against 3 s on PostgreSQL. Here
the answers that arrive while a write is running wait for the next one and are recorded
together, each by its own statement, in one transaction: a hold waits for at most one batch.
Each request still answers only after the transaction holding its answer committed, so an
answer given is an answer kept (I7). PostgreSQL has no single writer and does not need this.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from guahao.core.db import Database

MAX_BATCH = 200  # statements per transaction: the write lock is held for a few ms at most


class AnswerBatch:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: list[tuple[Callable[[Any], Awaitable[Any]], asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def run(self, statement: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run `statement(session)` in the next batch's transaction; its result once committed.
        A failed batch fails each of its requests with the error (the caller falls back)."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((statement, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                async with self._db.begin() as session:
                    results = [await statement(session) for statement, _ in batch]
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)
