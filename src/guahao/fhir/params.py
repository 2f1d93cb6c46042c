"""Search and operation parameters: FHIR's syntax in, our ids and dates out.

Unknown or malformed values are refused with the API's `invalid_request` (422), naming the
field, never guessed at."""
from __future__ import annotations

import datetime as dt
from typing import Any

from guahao.core.errors import InvalidRequest
from guahao.fhir import mapping

MAX_COUNT = 200
DEFAULT_COUNT = 50
MAX_DAYS = 31


def count(value: str | None, *, default: int = DEFAULT_COUNT) -> int:
    if value is None:
        return default
    if not value.isdigit():
        raise InvalidRequest(field="_count")
    return min(int(value), MAX_COUNT)


def offset(value: str | None) -> int:
    if value is None:
        return 0
    if not value.isdigit() or int(value) > 100_000:
        raise InvalidRequest(field="_offset")
    return int(value)


def ids(value: str | None, field: str = "_id") -> list[int] | None:
    """`_id=1,2` → [1, 2]; an id that is not ours matches nothing, rather than erroring."""
    if value is None:
        return None
    return [int(v) for v in value.split(",") if v.strip().isdigit()]


def reference(value: str | None, resource_type: str, field: str) -> int | None:
    if value is None:
        return None
    found = mapping.ref_id(value, resource_type)
    if found is None:
        raise InvalidRequest(field=field)
    return found


def date_range(values: list[str], today: dt.date, field: str, *, default_days: int = 8) -> tuple[dt.date, dt.date]:
    """`date=2026-11-21`, or `date=ge2026-11-21&date=le2026-11-25` (also gt / lt / eq, and
    dateTimes, of which the date counts); default today and the next week; at most 31 days."""
    first, last = today, None
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2] in ("eq", "ge", "le", "gt", "lt", "sa", "eb") else ("eq", raw)
        try:
            day = dt.date.fromisoformat(text[:10])
        except ValueError:
            raise InvalidRequest(field=field) from None
        if prefix == "eq":
            first = last = day
        elif prefix in ("ge", "sa", "gt"):
            first = day + dt.timedelta(days=1) if prefix == "gt" and len(text) == 10 else day
        else:
            last = day - dt.timedelta(days=1) if prefix == "lt" and len(text) == 10 else day
    last = last or first + dt.timedelta(days=default_days - 1)
    if last < first or (last - first).days >= MAX_DAYS:
        raise InvalidRequest(field=field, max_days=MAX_DAYS)
    return first, last


def token(value: str | None) -> str | None:
    """`system|code` or `code` → code."""
    if value is None:
        return None
    return value.split("|")[-1]


def parameters(body: Any) -> dict[str, list[dict[str, Any]]]:
    """A Parameters resource → name → its parameter entries (a name may repeat)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest(field="Parameters")
    found: dict[str, list[dict[str, Any]]] = {}
    for item in body.get("parameter") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidRequest(field="parameter")
        found.setdefault(item["name"], []).append(item)
    return found


def value_of(item: dict[str, Any]) -> Any:
    """The parameter's value[x] (a Reference gives its `reference`), or its `resource`."""
    if "resource" in item:
        return item["resource"]
    for key, value in item.items():
        if key.startswith("value"):
            if key == "valueReference" and isinstance(value, dict):
                return value.get("reference")
            return value
    return None


def first_of(found: dict[str, list[dict[str, Any]]], *names: str) -> Any:
    """The first value among IHE's name and its Argonaut aliases."""
    for name in names:
        for item in found.get(name, []):
            value = value_of(item)
            if value is not None:
                return value
    return None


def all_of(found: dict[str, list[dict[str, Any]]], *names: str) -> list[Any]:
    return [v for name in names for v in (value_of(i) for i in found.get(name, [])) if v is not None]
