"""Rate limits through the `limits` library: Redis when configured, memory otherwise.

Concurrency. A hit is one atomic `acquire_entry` per rule (a Lua script on Redis, a lock-free
step on one event loop in memory), and its answer decides. Testing first and counting after
lets every request that tests before the others count pass: 19 of 20 simultaneous requests
got through a 1/minute rule that way.

Outage. When Redis cannot be reached the limiter falls back to limits kept in this process
(one warning per outage) and tries Redis again after `retry_seconds`. The limits then hold
per process instead of across processes: weaker, but neither unlimited nor an error for the
patient, and a login-code endpoint stays usable while Redis restarts.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from guahao.core.errors import RateLimited

log = structlog.get_logger("guahao.ratelimit")
# what a failing Redis raises when not wrapped in StorageError (connection set-up, timeouts)
_OUTAGE = (StorageError, ConnectionError, OSError, TimeoutError)
REDIS_TIMEOUT_SECONDS = 0.5  # a rate limit must not hold a request for long; memory takes over


class RateLimiter:
    def __init__(self, redis_url: str | None = None, *, retry_seconds: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url:
            storage = storage_from_string(f"async+{redis_url}", wrap_exceptions=True,
                                          connect_timeout=REDIS_TIMEOUT_SECONDS,
                                          stream_timeout=REDIS_TIMEOUT_SECONDS)
            self._shared = MovingWindowRateLimiter(storage)
        self._retry_seconds = retry_seconds
        self._monotonic = monotonic
        self._down_until: float | None = None  # set while Redis is treated as unreachable

    @property
    def degraded(self) -> bool:
        return self._down_until is not None

    async def hit(self, rules: str, *keys: str) -> None:
        """Count one hit against every rule in `rules` ("1/minute;5/hour"); refuse if over.

        The rules are hit in order and the first refusal stops: earlier rules keep the hit,
        which only makes a client that keeps knocking wait longer."""
        for item in parse_many(rules):
            limiter = self._current()
            try:
                allowed = await limiter.hit(item, *keys)
                if limiter is self._shared and self._down_until is not None:
                    self._down_until = None
                    log.info("rate_limit_redis_recovered")
            except _OUTAGE as exc:
                self._mark_down(exc)
                limiter = self._local
                allowed = await limiter.hit(item, *keys)
            if not allowed:
                raise RateLimited(retry_after=await self._retry_after(limiter, item, keys))

    def _current(self) -> MovingWindowRateLimiter:
        if self._shared is None:
            return self._local
        if self._down_until is not None:
            if self._monotonic() < self._down_until:
                return self._local
            log.info("rate_limit_redis_retry")
        return self._shared

    def _mark_down(self, exc: Exception) -> None:
        if self._down_until is None:
            log.warning("rate_limit_redis_unavailable", error_type=type(exc).__name__,
                        fallback="per-process limits", retry_seconds=self._retry_seconds)
        self._down_until = self._monotonic() + self._retry_seconds

    async def _retry_after(self, limiter: MovingWindowRateLimiter, item: RateLimitItem, keys: tuple[str, ...]) -> int:
        try:
            stats = await limiter.get_window_stats(item, *keys)
        except _OUTAGE:
            return item.get_expiry()
        return max(1, int(stats.reset_time - time.time()))
