"""The admission gate in front of the hold transaction during a release rush.

Two things keep the database calm when thousands of patients press "book" at 08:00:
- a negative cache: once a claim finds a slot full, the slot is remembered as full for at
  most one second, and requests for it are answered `slot_sold_out` without touching the
  database. Per process in memory, and shared through Redis when configured. A stale "full"
  lasts at most a second; a stale "available" is harmless because the database decides.
- a per-slot limit on concurrent claim transactions in this process: the rest wait here, in
  the application, instead of queuing on the hot rows in the database.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from guahao.core import metrics

FULL_TTL_SECONDS = 1.0


class SoldOutGate:
    def __init__(self, redis_url: str | None = None, *, per_slot_concurrency: int = 2, max_slots: int = 50_000) -> None:
        self._full: OrderedDict[int, float] = OrderedDict()
        self._sems: dict[int, tuple[asyncio.Semaphore, int]] = {}
        self._per_slot = per_slot_concurrency
        self._max = max_slots
        self._redis = None
        if redis_url:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError

            # one immediate retry on a broken connection: after Redis restarts, the first
            # command on a pooled connection fails, and without the retry that "full" mark was
            # lost (tests/test_redis_loss.py); a Redis that is really down refuses at once
            self._redis = aioredis.from_url(redis_url, socket_timeout=0.2, socket_connect_timeout=0.2,
                                            retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])

    @metrics.counted_gate
    async def known_full(self, slot_id: int) -> bool:
        until = self._full.get(slot_id)
        if until is not None:
            if until > time.monotonic():
                return True
            self._full.pop(slot_id, None)
        if self._redis is not None:
            try:
                # remember another process's "full" only for what is left of its TTL, so a
                # mark is answered at most FULL_TTL_SECONDS after it was made, wherever
                left_ms = await self._redis.pttl(f"guahao:full:{slot_id}")
                if left_ms > 0:
                    self._remember(slot_id, ttl=left_ms / 1000)
                    return True
            except Exception:  # Redis is an optimisation: without it the database decides
                return False
        return False

    async def mark_full(self, slot_id: int) -> None:
        self._remember(slot_id)
        if self._redis is not None:
            try:
                await self._redis.set(f"guahao:full:{slot_id}", 1, px=int(FULL_TTL_SECONDS * 1000))
            except Exception:
                pass

    async def forget(self, slot_id: int) -> None:
        """A seat came back (cancellation): let requests through again at once."""
        self._full.pop(slot_id, None)
        if self._redis is not None:
            try:
                await self._redis.delete(f"guahao:full:{slot_id}")
            except Exception:
                pass

    def _remember(self, slot_id: int, ttl: float = FULL_TTL_SECONDS) -> None:
        self._full[slot_id] = time.monotonic() + min(ttl, FULL_TTL_SECONDS)
        self._full.move_to_end(slot_id)
        while len(self._full) > self._max:
            self._full.popitem(last=False)

    def slot_lane(self, slot_id: int) -> _Lane:
        return _Lane(self, slot_id)


class _Lane:
    """`async with gate.slot_lane(slot_id):` limits concurrent claim transactions per slot."""

    def __init__(self, gate: SoldOutGate, slot_id: int) -> None:
        self._gate, self._slot_id = gate, slot_id

    async def __aenter__(self) -> None:
        sem, users = self._gate._sems.get(self._slot_id, (None, 0))
        if sem is None:
            sem = asyncio.Semaphore(self._gate._per_slot)
        self._gate._sems[self._slot_id] = (sem, users + 1)
        self._sem = sem
        try:
            await sem.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc) -> None:
        self._sem.release()
        self._leave()

    def _leave(self) -> None:
        sem, users = self._gate._sems[self._slot_id]
        if users <= 1:
            del self._gate._sems[self._slot_id]
        else:
            self._gate._sems[self._slot_id] = (sem, users - 1)
