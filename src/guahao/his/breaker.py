"""A circuit breaker per hospital HIS: after `threshold` consecutive failures to get an answer,
calls fail at once for `cool_down` seconds; then one trial call is let through (half-open),
and its outcome closes the breaker or opens it again.

Our own (about 40 lines) because the maintained breakers do not fit: pybreaker's async support
is Tornado-only and aiobreaker has had no release for years. State is per process: a breaker
only saves a dead HIS from the rush; correctness never depends on it.
"""
from __future__ import annotations

import time
from collections.abc import Callable


class Breaker:
    def __init__(self, *, threshold: int = 5, cool_down: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold, self.cool_down, self._clock = threshold, cool_down, clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.cool_down else "open"

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial call at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def succeeded(self) -> None:
        self._failures, self._opened_at, self._trial_running = 0, None, False

    def failed(self) -> None:
        self._trial_running = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.threshold:
            self._opened_at = self._clock()  # (re)open: a failed trial starts a new cool-down

    def released(self) -> None:
        """A trial call ended without telling us anything about the HIS (e.g. a refusal)."""
        self._trial_running = False
