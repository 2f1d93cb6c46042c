"""Rate limits through the `limits` library: Redis when configured, memory otherwise.

Concurrency. A hit is one atomic `acquire_entry` per rule (a Lua script on Redis, a lock-free
step on one event loop in memory), and its answer decides. Testing first and counting after
lets every request that tests before the others count pass: 19 of 20 simultaneous requests
got through a 1/minute rule that way.

Outage. When Redis cannot be reached the limiter falls back to limits kept in this process
(one warning per outage) and tries Redis again after `retry_seconds`. The limits then hold
per process instead of across processes: weaker, but neither unlimited nor an error for the
patient, and a login-code endpoint stays usable while Redis restarts.

In-process windows are our own (`LocalWindows`), not `limits`' MemoryStorage: that storage
sweeps every key through a thread-pool call after each hit, and at release time, with a key
per token, account, patient and address, the sweeps took about a fifth of a worker's CPU
(py-spy, docs/BENCHMARKS.md). `limits` still parses the rules and speaks to Redis.
"""
from __future__ import annotations

import functools
import math
import time
from collections import deque
from collections.abc import Callable

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from guahao.core.errors import RateLimited

log = structlog.get_logger("guahao.ratelimit")
# what a failing Redis raises when not wrapped in StorageError (connection set-up, timeouts)
_OUTAGE = (StorageError, ConnectionError, OSError, TimeoutError)
REDIS_TIMEOUT_SECONDS = 0.5  # a rate limit must not hold a request for long; memory takes over


@functools.lru_cache(maxsize=256)
def _rules(text: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(text))


class LocalWindows:
    """Exact moving windows in this process: per rule and key, the times of the hits still
    inside the window. One event loop and no await inside `hit`, so a hit is atomic.

    Keys whose window has passed are dropped by a sweep every `SWEEP_EVERY` hits, so memory
    follows the keys seen in the last window, and a hit costs O(1) amortised."""

    SWEEP_EVERY = 4096

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._hits: dict[tuple, tuple[float, deque[float]]] = {}
        self._monotonic = monotonic
        self._until_sweep = self.SWEEP_EVERY

    def hit(self, item: RateLimitItem, keys: tuple[str, ...]) -> int | None:
        """Count the hit and return None, or refuse it: whole seconds until one is allowed."""
        now, window = self._monotonic(), float(item.get_expiry())
        # a tuple, not limits' key_for string: building that string was 4 % of a worker's
        # CPU under the rush (four hits per hold request; py-spy, docs/BENCHMARKS.md)
        name = (item.amount, window, *keys)
        entry = self._hits.get(name)
        if entry is None:
            entry = self._hits[name] = (window, deque())
        times = entry[1]
        while times and times[0] <= now - window:
            times.popleft()
        if len(times) >= item.amount:
            return max(1, math.ceil(times[0] + window - now))
        times.append(now)
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._sweep(now)
        return None

    def _sweep(self, now: float) -> None:
        self._until_sweep = self.SWEEP_EVERY
        stale = [name for name, (window, times) in self._hits.items() if not times or times[-1] <= now - window]
        for name in stale:
            del self._hits[name]

    def __len__(self) -> int:
        return len(self._hits)


class RateLimiter:
    def __init__(self, redis_url: str | None = None, *, retry_seconds: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._local = LocalWindows()
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
        for item in _rules(rules):
            shared = self._current()
            if shared is not None:
                try:
                    allowed = await shared.hit(item, *keys)
                    if self._down_until is not None:
                        self._down_until = None
                        log.info("rate_limit_redis_recovered")
                    if not allowed:
                        raise RateLimited(retry_after=await self._retry_after(shared, item, keys))
                    continue
                except _OUTAGE as exc:
                    self._mark_down(exc)
            wait = self._local.hit(item, keys)
            if wait is not None:
                raise RateLimited(retry_after=wait)

    def _current(self) -> MovingWindowRateLimiter | None:
        """Redis when configured and not known to be down; None: this process's windows."""
        if self._shared is None:
            return None
        if self._down_until is not None:
            if self._monotonic() < self._down_until:
                return None
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
