"""The scheduling domain: periods, bands, capacity split, visit numbers, release and state.

Pure functions over dates, wall-clock times and aware instants; no database, no clock.
Instants are UTC; wall-clock times are in the hospital's zone and are converted with
`core.clock.local_datetime`, so a hospital in another zone needs no code change.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from guahao.catalog.rules import DEFAULT_CLINIC_HOURS, Rules, period_windows  # the one rules type
from guahao.core.clock import local_datetime
from guahao.scheduling.errors import InvalidBands

Period = Literal["morning", "afternoon", "evening", "all_day"]
Granularity = Literal["day", "half_day", "time_band"]
SlotState = Literal["suspended", "not_yet_released", "closed", "full", "bookable"]

# Wall-clock windows of the periods: the platform's default hours. A hospital may set its own
# (`Rules.period_windows`); every function below takes the hospital's table as `windows`
# and falls back to this one.
Windows = dict[str, tuple[dt.time, dt.time]]
PERIOD_WINDOWS: Windows = period_windows(DEFAULT_CLINIC_HOURS)
PERIOD_ORDER = ("morning", "all_day", "afternoon", "evening")
# An all-day clinic is booked as its two halves (and its default bands skip the lunch break).
ALL_DAY_HALVES = ("morning", "afternoon")
DEFAULT_BAND_MINUTES = 30
MAX_BANDS = 48
# Precedence of the states, most decisive first; `schedule_state` reports the first present.
STATE_PRECEDENCE: tuple[SlotState, ...] = ("suspended", "not_yet_released", "closed", "full", "bookable")


@dataclass(frozen=True)
class Band:
    start: dt.time
    end: dt.time

    def as_strings(self) -> list[str]:
        return [self.start.strftime("%H:%M"), self.end.strftime("%H:%M")]


@dataclass(frozen=True)
class SlotPlan:
    """One slot to create: a band of one pool, its capacity and its first visit number."""

    pool: str
    start: dt.time
    end: dt.time
    capacity: int
    first_visit_no: int

    @property
    def visit_numbers(self) -> range:
        return range(self.first_visit_no, self.first_visit_no + self.capacity)


# --- bands ------------------------------------------------------------------------------

def _parse_hhmm(value: object) -> dt.time:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise InvalidBands(reason=f"{value!r} is not HH:MM")
    try:
        return dt.time(int(value[:2]), int(value[3:]))
    except ValueError:
        raise InvalidBands(reason=f"{value!r} is not HH:MM") from None


def parse_bands(period: str, raw: list, windows: Windows | None = None) -> list[Band]:
    """Validate explicit bands: HH:MM pairs, inside the period, ascending, non-overlapping."""
    if len(raw) > MAX_BANDS:
        raise InvalidBands(reason=f"at most {MAX_BANDS} bands")
    opens, closes = (windows or PERIOD_WINDOWS)[period]
    bands: list[Band] = []
    for item in raw:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise InvalidBands(reason=f"{item!r} is not a [start, end] pair")
        band = Band(_parse_hhmm(item[0]), _parse_hhmm(item[1]))
        if band.start >= band.end:
            raise InvalidBands(reason=f"{item[0]}-{item[1]} ends before it starts")
        if band.start < opens or band.end > closes:
            raise InvalidBands(reason=f"{item[0]}-{item[1]} is outside the {period} period")
        if bands and band.start < bands[-1].end:
            raise InvalidBands(reason=f"{item[0]}-{item[1]} overlaps or precedes the band before it")
        bands.append(band)
    return bands


def _add_minutes(t: dt.time, minutes: int) -> dt.time:
    full = dt.datetime.combine(dt.date(2000, 1, 1), t) + dt.timedelta(minutes=minutes)
    return full.time()


def even_bands(opens: dt.time, closes: dt.time, minutes: int = DEFAULT_BAND_MINUTES) -> list[Band]:
    bands, start = [], opens
    while start < closes:
        end = min(_add_minutes(start, minutes), closes)
        if end <= start:  # wrapped past midnight: the window ends the day
            end = closes
        bands.append(Band(start, end))
        start = end
    return bands


def period_band(period: str, windows: Windows | None = None) -> Band:
    return Band(*(windows or PERIOD_WINDOWS)[period])


def bands_for(period: str, granularity: str, explicit: list | None = None,
              windows: Windows | None = None) -> list[Band]:
    """The bands of a schedule under the hospital's granularity.

    day: one band, the whole period. half_day: the period itself, except that an all-day
    clinic is split into its morning and afternoon halves. time_band: the explicit bands, or
    30-minute bands across the period (an all-day clinic across its two halves, so no band
    falls in the lunch break).
    """
    windows = windows or PERIOD_WINDOWS
    if granularity == "day":
        return [period_band(period, windows)]
    if granularity == "half_day":
        if period == "all_day":
            return [period_band(half, windows) for half in ALL_DAY_HALVES]
        return [period_band(period, windows)]
    if granularity != "time_band":
        raise ValueError(f"unknown granularity {granularity!r}")
    if explicit:
        return parse_bands(period, explicit, windows)
    if period == "all_day":
        return [b for half in ALL_DAY_HALVES for b in even_bands(*windows[half])]
    return even_bands(*windows[period])


# --- capacity and visit numbers ---------------------------------------------------------

def split_capacity(total: int, parts: int) -> list[int]:
    """Split as evenly as possible; the earlier bands take the remainder (10 / 3 = 4, 3, 3)."""
    if parts <= 0:
        raise ValueError("at least one band is needed")
    if total < 0:
        raise ValueError("capacity cannot be negative")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def plan_slots(bands: list[Band], platform_capacity: int, onsite_capacity: int) -> list[SlotPlan]:
    """Slots for every band and pool, numbered for the doctor's queue.

    Visit numbers run through the bands in time order; inside a band the platform positions
    come first, then the onsite ones; contiguous, from 1. Every slot is created, even with
    capacity 0, so the bands survive a later change of capacities.
    """
    ordered = sorted(bands, key=lambda b: b.start)
    platform = split_capacity(platform_capacity, len(ordered))
    onsite = split_capacity(onsite_capacity, len(ordered))
    plans, next_no = [], 1
    for band, p, o in zip(ordered, platform, onsite, strict=True):
        plans.append(SlotPlan("platform", band.start, band.end, p, next_no))
        next_no += p
        plans.append(SlotPlan("onsite", band.start, band.end, o, next_no))
        next_no += o
    return plans


# --- instants ---------------------------------------------------------------------------

def period_bounds(day: dt.date, period: str, tz: dt.tzinfo,
                  windows: Windows | None = None) -> tuple[dt.datetime, dt.datetime]:
    opens, closes = (windows or PERIOD_WINDOWS)[period]
    return local_datetime(day, opens, tz), local_datetime(day, closes, tz)


def band_bounds(day: dt.date, band: Band, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    return local_datetime(day, band.start, tz), local_datetime(day, band.end, tz)


def release_instant(day: dt.date, rules: Rules) -> dt.datetime:
    """When a date's schedules open: `release_days_ahead` days before, at `release_time` local."""
    return local_datetime(day - dt.timedelta(days=rules.release_days_ahead), rules.release_time, rules.tz)


def closing_instant(starts_at: dt.datetime, close_minutes_before_start: int) -> dt.datetime:
    return starts_at - dt.timedelta(minutes=close_minutes_before_start)


def local_today(now: dt.datetime, tz: dt.tzinfo) -> dt.date:
    return now.astimezone(tz).date()


# --- availability state -----------------------------------------------------------------

def slot_state(now: dt.datetime, schedule_status: str, release_at: dt.datetime,
               closes_at: dt.datetime, remaining: int) -> SlotState:
    """The public state of a slot, in precedence order.

    Draft schedules have no public state: callers must treat them as missing (404), so this
    refuses them rather than invent one.
    """
    if schedule_status == "draft":
        raise ValueError("draft schedules are never shown publicly")
    if schedule_status == "suspended":
        return "suspended"
    if now < release_at:
        return "not_yet_released"
    if now >= closes_at:
        return "closed"
    if remaining <= 0:
        return "full"
    return "bookable"


def schedule_state(states: list[SlotState]) -> SlotState:
    """Bookable if any slot is; otherwise the most informative state present."""
    if "bookable" in states:
        return "bookable"
    for state in STATE_PRECEDENCE:
        if state in states:
            return state
    return "full"
