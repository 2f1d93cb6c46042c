"""Rate limits through the `limits` library: Redis when configured, memory otherwise."""
from __future__ import annotations

import time

from limits import parse_many
from limits.aio.storage import MemoryStorage
from limits.storage import storage_from_string
from limits.aio.strategies import MovingWindowRateLimiter

from guahao.core.errors import RateLimited


class RateLimiter:
    def __init__(self, redis_url: str | None = None) -> None:
        storage = storage_from_string(f"async+{redis_url}") if redis_url else MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, rules: str, *keys: str) -> None:
        """Count one hit against every rule in `rules` ("1/minute;5/hour"); refuse if over."""
        for item in parse_many(rules):
            if not await self._limiter.test(item, *keys):
                stats = await self._limiter.get_window_stats(item, *keys)
                retry_after = max(1, int(stats.reset_time - time.time()))
                raise RateLimited(retry_after=retry_after)
        for item in parse_many(rules):
            await self._limiter.hit(item, *keys)
