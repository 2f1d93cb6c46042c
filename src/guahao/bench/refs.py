"""The references' table and the raw-driver reference: the claim statement issued directly
from the bench process, no HTTP, no framework.

Each reference rush claims its own `bench_seat` row, so the runs do not disturb each other.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator

from guahao.bench.bare_app import CLAIM_PG, CLAIM_SQLITE, CREATE_TABLE
from guahao.bench.loadgen import Answer, Run

SOLD_OUT_BODY = b'{"code":"slot_sold_out"}'


async def prepare_seats_pg(dsn: str, seats: dict[int, int]) -> None:
    """Create `bench_seat` and set each seat id to (capacity, taken = 0)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(CREATE_TABLE)
        await conn.executemany("INSERT INTO bench_seat (id, capacity, taken) VALUES ($1, $2, 0) "
                               "ON CONFLICT (id) DO UPDATE SET capacity = excluded.capacity, taken = 0",
                               list(seats.items()))
    finally:
        await conn.close()


async def taken_pg(dsn: str, seat_id: int) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT taken FROM bench_seat WHERE id = $1", seat_id)
    finally:
        await conn.close()


def _sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def prepare_seats_sqlite(path: str, seats: dict[int, int]) -> None:
    conn = _sqlite(path)
    try:
        conn.execute(CREATE_TABLE)
        conn.executemany("INSERT INTO bench_seat (id, capacity, taken) VALUES (?, ?, 0) "
                         "ON CONFLICT (id) DO UPDATE SET capacity = excluded.capacity, taken = 0",
                         list(seats.items()))
    finally:
        conn.close()


def taken_sqlite(path: str, seat_id: int) -> int:
    conn = _sqlite(path)
    try:
        return conn.execute("SELECT taken FROM bench_seat WHERE id = ?", (seat_id,)).fetchone()[0]
    finally:
        conn.close()


def _answer(i: int, taken: int | None, sent: float, done: float) -> Answer:
    if taken is None:
        return Answer(i, 409, SOLD_OUT_BODY, sent, done)
    return Answer(i, 201, b"", sent, done)


async def raw_pg(dsn: str, seat_id: int, requests: int, *, concurrency: int, pool_size: int) -> Run:
    """`requests` claims by `concurrency` tasks sharing an asyncpg pool of `pool_size`."""
    import asyncpg

    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
    try:
        await pool.fetchval("SELECT 1")
        answers: list[Answer | None] = [None] * requests
        order: Iterator[int] = iter(range(requests))

        async def worker() -> None:
            perf = time.perf_counter
            for i in order:
                sent = perf()
                try:
                    taken = await pool.fetchval(CLAIM_PG, seat_id)
                    answers[i] = _answer(i, taken, sent, perf())
                except Exception as exc:
                    answers[i] = Answer(i, 0, b"", sent, perf(), error=f"{type(exc).__name__}: {exc}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Run(answers=[a for a in answers if a is not None], t0=t0)
    finally:
        await pool.close()


def raw_sqlite(path: str, seat_id: int, requests: int) -> Run:
    """`requests` claim transactions one after the other on one connection (the one writer)."""
    conn = _sqlite(path)
    perf = time.perf_counter
    answers = []
    try:
        t0 = perf()
        for i in range(requests):
            sent = perf()
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(CLAIM_SQLITE, (seat_id,)).fetchone()
            conn.execute("COMMIT")
            answers.append(_answer(i, None if row is None else row[0], sent, perf()))
        return Run(answers=answers, t0=t0)
    finally:
        conn.close()
