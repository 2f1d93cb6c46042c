"""Injectable time. Domain code takes `now` from a Clock, never from the system clock directly."""
from __future__ import annotations

import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo

UTC = dt.UTC
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)


class FrozenClock:
    """A clock for tests and benchmarks: stands still until moved."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = at.astimezone(UTC)

    def now(self) -> dt.datetime:
        return self._now

    def set(self, at: dt.datetime) -> None:
        self._now = at.astimezone(UTC)

    def advance(self, **delta: float) -> None:
        self._now += dt.timedelta(**delta)


def local_datetime(day: dt.date, time: dt.time, tz: dt.tzinfo) -> dt.datetime:
    """The UTC instant of a wall-clock time on a date in a hospital's zone."""
    return dt.datetime.combine(day, time, tzinfo=tz).astimezone(UTC)
