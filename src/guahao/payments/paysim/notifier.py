"""Delivers the sandbox's notifications to the merchant's callback URL, like a real
provider: asynchronously, signed afresh at each attempt, retried on WeChat Pay's schedule
until a 2xx answer, then given up. Deliveries are concurrent and unordered."""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from contextlib import suppress

import httpx

from guahao.payments import wire
from guahao.payments.paysim.ledger import Ledger

# seconds before attempt 2, 3, ... (WeChat Pay: 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h)
SCHEDULE = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)


class Notifier:
    def __init__(self, ledger: Ledger, key: str, *, retry_scale: float = 1.0, poll_seconds: float = 0.05,
                 concurrency: int = 32, timeout: float = 10.0) -> None:
        self.ledger, self.key = ledger, key
        self.retry_scale, self.poll_seconds = retry_scale, poll_seconds
        self.sem = asyncio.Semaphore(concurrency)
        self.timeout = timeout
        self.inflight: set[str] = set()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.client: httpx.AsyncClient | None = None

    def next_in(self, attempts_done: int) -> float | None:
        if attempts_done > len(SCHEDULE):
            return None
        return SCHEDULE[attempts_done - 1] * self.retry_scale

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=self.timeout, limits=httpx.Limits(max_connections=64))
        self.task = asyncio.create_task(self._run(), name="paysim-notifier")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        if self.client is not None:
            await self.client.aclose()

    async def _run(self) -> None:
        while True:
            for row in self.ledger.due_notifications(200, self.inflight):
                self.inflight.add(row["id"])
                asyncio.create_task(self._deliver(row))
            self.wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_seconds)

    async def _deliver(self, row) -> None:
        try:
            body = bytes(row["body"])
            headers = wire.sign(self.key, body, at=dt.datetime.fromtimestamp(time.time(), dt.UTC))
            copies = self.ledger.switches.duplicate
            results = await asyncio.gather(*(self._post(row["notify_url"], headers, body) for _ in range(copies)))
            delivered = any(200 <= r < 300 for r in results if isinstance(r, int))
            status = ",".join(str(r) for r in results)
            self.ledger.record_attempt(row["id"], delivered=delivered, status=status, headers=headers,
                                       next_in=None if delivered else self.next_in(row["attempts"] + 1))
        finally:
            self.inflight.discard(row["id"])
            self.wake.set()

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> int | str:
        async with self.sem:
            try:
                response = await self.client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                return type(exc).__name__
            return response.status_code
