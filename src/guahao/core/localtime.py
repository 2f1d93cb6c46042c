"""Times in API answers: always the hospital's wall clock, with its offset.

The database and the domain keep instants in UTC; a patient or a front desk reads
"13:30", not "05:30Z". Every route that answers with times passes its response through
`localize` with the zone of the hospital the answer is about (or the platform's default zone
when it is about no hospital), so there is one conversion in the code base instead of one
`astimezone` per field. `localize` walks response models, lists and dicts, so nested
records (a booking's patient, a payment's refund) are converted too.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from guahao.core.clock import SHANGHAI

T = TypeVar("T")


def localize(value: T, zone: dt.tzinfo) -> T:
    """A copy of `value` with every datetime in it expressed in `zone` (same instant)."""
    return _convert(value, zone)


def _convert(value: Any, zone: dt.tzinfo) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # never expected: the UTCDateTime column refuses naive values
            raise ValueError("naive datetime in a response")
        return value.astimezone(zone)
    if isinstance(value, BaseModel):
        return value.model_copy(update={name: _convert(getattr(value, name), zone)
                                        for name in type(value).model_fields})
    if isinstance(value, list):
        return [_convert(item, zone) for item in value]
    if isinstance(value, tuple):
        return tuple(_convert(item, zone) for item in value)
    if isinstance(value, dict):
        return {key: _convert(item, zone) for key, item in value.items()}
    return value


def zone(name: str | None) -> ZoneInfo:
    """The zone called `name`; the platform default (China) when a record has none."""
    return ZoneInfo(name) if name else SHANGHAI
