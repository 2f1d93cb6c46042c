"""Realtime mode (DESIGN.md section 6): the hospital's HIS decides every hold and says what
is left. Implements two ports of the domain, wired in `providers.py`:
- `booking.his_hold.HisHolds`: lock a number for a booking, resolving an unknown outcome;
- `scheduling.availability.HisAvailability`: remaining numbers per HIS band, cached briefly.

Every call here is made with no database transaction open (the connection is read first, in
a short read of its own). How each client failure (his/client.py) becomes an answer:

| lock call | answer |
|---|---|
| the order, locked | locked |
| refused POOL_FULL / SESSION_CANCELLED | refused: the pool has nothing for us (`slot_sold_out`) |
| refused otherwise (unknown band, pool not sold, order conflict) | unavailable: a set-up fault, nothing locked |
| unavailable (not sent, 5xx, breaker open) | unavailable: nothing happened there |
| outcome unknown (timeout, answer lost) or a bad answer | ask `get_order`, up to `resolve_tries` times: locked → locked; not found → unknown (a lock delayed in the network may still land; the release job cancels it when it does); still no answer → unknown |
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass

import structlog

from guahao.booking import his_hold
from guahao.booking.his_hold import LockAnswer
from guahao.core.db import Database
from guahao.his import connections
from guahao.his.client import (
    HisBadAnswer,
    HisClient,
    HisError,
    HisOrder,
    HisOutcomeUnknown,
    HisRefused,
    HisUnavailable,
    order_id_for,
)
from guahao.scheduling.availability import HisCounts

log = structlog.get_logger("guahao.his.realtime")

SOLD_OUT_CODES = ("POOL_FULL", "SESSION_CANCELLED")


def _of_order(order: HisOrder, calls: int) -> LockAnswer:
    if order.state in ("locked", "confirmed"):
        return LockAnswer(his_hold.LOCKED, order.state, calls)
    # expired or cancelled there: nothing is held for us
    return LockAnswer(his_hold.UNAVAILABLE, f"order_{order.state}", calls)


async def _client(db: Database, hospital_id: int) -> tuple[HisClient | None, str | None, int]:
    async with db.read() as session:
        conn = await connections.get_connection(session, hospital_id)
        client = await connections.client_for(session, hospital_id)
    if conn is None or client is None:
        return None, None, 0
    return client, conn.pool, conn.cache_ms


class RealtimeHolds:
    """`booking.his_hold.HisHolds` over the hospital's HIS client."""

    def __init__(self, *, resolve_tries: int = 3, resolve_pause: float = 0.2) -> None:
        self.resolve_tries, self.resolve_pause = resolve_tries, resolve_pause

    async def lock(self, db: Database, *, hospital_id: int, booking_id: int, band_id: str,
                   minutes: float) -> LockAnswer:
        client, pool, _ = await _client(db, hospital_id)
        if client is None or pool is None:
            return LockAnswer(his_hold.UNAVAILABLE, "no_connection", 0)
        order_id = order_id_for(booking_id)
        try:
            return _of_order(await client.lock(order_id, band_id, pool, minutes), 1)
        except HisRefused as exc:
            outcome = his_hold.REFUSED if exc.code in SOLD_OUT_CODES else his_hold.UNAVAILABLE
            return LockAnswer(outcome, exc.code, 1)
        except HisUnavailable as exc:
            return LockAnswer(his_hold.UNAVAILABLE, exc.code, 1)
        except (HisOutcomeUnknown, HisBadAnswer) as exc:
            log.warning("his_lock_unknown", hospital_id=hospital_id, booking_id=booking_id, error=exc.code)
        return await self._resolve(client, order_id, hospital_id=hospital_id)

    async def _resolve(self, client: HisClient, order_id: str, *, hospital_id: int) -> LockAnswer:
        """The lock may or may not have happened: the order's state at the HIS says which."""
        calls = 1
        for attempt in range(self.resolve_tries):
            if attempt:
                await asyncio.sleep(self.resolve_pause * attempt)
            calls += 1
            try:
                return _of_order(await client.get_order(order_id), calls)
            except HisRefused as exc:
                if exc.code == "ORDER_NOT_FOUND":
                    # not there now; a lock still on its way may land later, so the caller
                    # releases it through the outbox like any other unknown outcome
                    return LockAnswer(his_hold.UNKNOWN, "not_found_yet", calls)
                return LockAnswer(his_hold.UNKNOWN, exc.code, calls)
            except HisError as exc:
                log.info("his_order_query_failed", hospital_id=hospital_id, attempt=attempt + 1, error=exc.code)
        return LockAnswer(his_hold.UNKNOWN, "unresolved", calls)


@dataclass
class _Cached:
    counts: HisCounts
    fetched: float  # monotonic


class RealtimeAvailability:
    """`scheduling.availability.HisAvailability`: remaining per band from the HIS, cached per
    hospital and date range for the connection's `cache_ms` (default 2 s), so a page storm
    asks the HIS at most once per cache period per process. `as_of` says when it was asked."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, dt.date, dt.date], _Cached] = {}
        self._inflight: dict[tuple[int, dt.date, dt.date], asyncio.Future] = {}

    async def remaining(self, db: Database, *, hospital_id: int, first: dt.date, last: dt.date,
                        now: dt.datetime) -> HisCounts | None:
        """None: the HIS cannot say now (down, breaker open, garbage, no connection)."""
        client, pool, cache_ms = await _client(db, hospital_id)
        if client is None or pool is None:
            return None
        key = (hospital_id, first, last)
        hit = self._cache.get(key)
        if hit is not None and (time.monotonic() - hit.fetched) * 1000 < cache_ms:
            return hit.counts
        if key in self._inflight:  # one call per key at a time; the others share its answer
            return await asyncio.shield(self._inflight[key])
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        counts = None
        try:
            counts = await self._ask(client, pool, first, last, now, hospital_id=hospital_id)
        finally:
            self._inflight.pop(key, None)
            future.set_result(counts)
        if counts is not None:
            self._cache[key] = _Cached(counts, time.monotonic())
            if len(self._cache) > 10_000:
                self._cache.clear()
        return counts

    @staticmethod
    async def _ask(client: HisClient, pool: str, first: dt.date, last: dt.date, now: dt.datetime, *,
                   hospital_id: int) -> HisCounts | None:
        try:
            sessions = await client.availability(first, last)
        except HisError as exc:
            log.info("his_availability_unavailable", hospital_id=hospital_id, error=exc.code)
            return None
        by_band: dict[str, int] = {}
        for session in sessions:
            for band in session.bands:
                for p in band.pools:
                    if p.pool == pool:
                        by_band[band.band_id] = 0 if session.state != "open" else p.remaining
        return HisCounts(by_band=by_band, as_of=now)
