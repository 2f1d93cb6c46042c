"""core.db.insert_many and outbox.enqueue_many built on it (one statement for thousands of
rows on PostgreSQL): every row as given, shared values typed as their column, JSON intact,
conflicts skipped, and typed columns (UTC datetimes) that vary still converted."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from guahao.core.db import insert_many
from guahao.outbox import service as outbox
from guahao.outbox.models import OutboxMessage


async def _rows(db, prefix: str) -> list[OutboxMessage]:
    async with db.read() as s:
        return list(await s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like(f"{prefix}%"))
                                    .order_by(OutboxMessage.id)))


async def test_enqueue_many_writes_each_message_once_in_order(db, clock):
    now = clock.now()
    messages = [{"topic": "t.many", "dedupe_key": f"many:{i}", "payload": {"entry_id": i, "名": "王", "n": None},
                 "hospital_id": None} for i in range(1200)]
    async with db.begin() as s:
        await outbox.enqueue(s, topic="t.many", dedupe_key="many:7", payload={"first": True}, now=now)
        await outbox.enqueue_many(s, messages, now=now)
    async with db.begin() as s:
        await outbox.enqueue_many(s, messages[:3], now=now + dt.timedelta(hours=1))  # all known: nothing
    rows = await _rows(db, "many:")
    assert len(rows) == 1200
    assert rows[0].dedupe_key == "many:7" and rows[0].payload == {"first": True}  # the existing one kept
    assert [r.dedupe_key for r in rows[1:]] == [f"many:{i}" for i in range(1200) if i != 7]
    assert rows[1].payload == {"entry_id": 0, "名": "王", "n": None}
    assert all(r.state == "pending" and r.attempts == 0 and r.available_at == now and r.created_at == now
               for r in rows[1:])


async def test_insert_many_converts_varying_typed_columns_and_a_single_row(db, clock):
    now = clock.now()
    table = OutboxMessage.__table__
    rows = [{"dedupe_key": f"typed:{i}", "topic": "t.typed", "payload": {"i": i}, "state": "pending",
             "attempts": 0, "available_at": now + dt.timedelta(seconds=i), "created_at": now} for i in range(3)]
    async with db.begin() as s:
        await insert_many(s, table, rows)
        await insert_many(s, table, [{**rows[0], "dedupe_key": "typed:single"}])
    got = await _rows(db, "typed:")
    assert [(r.dedupe_key, r.available_at, r.payload) for r in got] == [
        ("typed:0", now, {"i": 0}), ("typed:1", now + dt.timedelta(seconds=1), {"i": 1}),
        ("typed:2", now + dt.timedelta(seconds=2), {"i": 2}), ("typed:single", now, {"i": 0})]
