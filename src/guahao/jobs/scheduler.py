"""Periodic jobs: each one becomes one outbox message per time bucket.

Every worker runs this; the dedupe key `periodic:<topic>:<bucket start>` and an
INSERT ... ON CONFLICT DO NOTHING make the extra schedulers harmless, whatever the number of
processes and however their ticks interleave. Buckets are aligned on the Unix epoch in UTC,
so all processes agree on them. A worker that was down for several buckets enqueues only the
current one: periodic jobs catch up by themselves (they sweep whatever is due).
"""
from __future__ import annotations

import datetime as dt

from guahao.outbox import registry
from guahao.outbox import service as outbox
from guahao.outbox.registry import JobContext

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def bucket_start(now: dt.datetime, every: dt.timedelta) -> dt.datetime:
    return EPOCH + ((now - EPOCH) // every) * every


def dedupe_key(topic: str, start: dt.datetime) -> str:
    return f"periodic:{topic}:{start.astimezone(dt.UTC).isoformat()}"


async def schedule_periodic(ctx: JobContext, *, seen: dict[str, str] | None = None) -> int:
    """Enqueue this bucket's message of every periodic job; returns how many this call inserted.

    `seen` (topic -> last key this process enqueued) spares the database a write per tick:
    only a new bucket costs an INSERT.
    """
    now = ctx.clock.now()
    wanted = []
    for job in registry.PERIODIC:
        start = bucket_start(now, job.every)
        key = dedupe_key(job.topic, start)
        if seen is None or seen.get(job.topic) != key:
            wanted.append((job.topic, key, start))
    if not wanted:
        return 0
    inserted = 0
    async with ctx.db.begin() as session:
        for topic, key, start in wanted:
            inserted += await outbox.enqueue_once(session, topic=topic, dedupe_key=key, now=now,
                                                  payload={"bucket": start.isoformat()})
    if seen is not None:
        seen.update({topic: key for topic, key, _ in wanted})
    return inserted
