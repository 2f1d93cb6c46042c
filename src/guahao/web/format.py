"""Jinja filters: money in yuan, times in the hospital's local time with the date."""
from __future__ import annotations

import datetime as dt

from guahao.catalog import labels
from guahao.core import fees

WEEKDAYS = {"zh-CN": ("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
            "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}


def yuan(fen: int | None) -> str:
    return "¥" + fees.yuan(fen or 0)


def weekday(value: dt.date, locale: str) -> str:
    return WEEKDAYS.get(locale, WEEKDAYS["zh-CN"])[value.weekday()]


def day(value: dt.date, locale: str) -> str:
    """2026-11-21 周六: a visit day always with its weekday."""
    return f"{value:%Y-%m-%d} {weekday(value, locale)}"


def short_day(value: dt.date) -> str:
    return f"{value:%m-%d}"


def when(value: dt.datetime | None, locale: str) -> str:
    """A moment as the hospital's wall clock (values arrive localized), with date and weekday."""
    if value is None:
        return ""
    return f"{value:%Y-%m-%d} {weekday(value, locale)} {value:%H:%M}"


def clock(value: dt.datetime | None) -> str:
    return "" if value is None else f"{value:%H:%M}"


def seconds_until(value: dt.datetime | None, now: dt.datetime) -> int:
    """For the live countdowns: computed from the server's clock, so a phone whose clock is
    wrong still counts down the right amount."""
    if value is None:
        return 0
    return max(0, int((value - now).total_seconds()))


def title_label(code: str, locale: str) -> str:
    return labels.title(code, locale)


def level_label(code: str, locale: str) -> str:
    return labels.registration_level(code, locale)


FILTERS = {"title_label": title_label, "level_label": level_label, "yuan": yuan, "weekday": weekday, "day": day, "short_day": short_day, "when": when, "clock": clock}
