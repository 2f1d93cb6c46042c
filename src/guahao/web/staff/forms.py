"""Turning posted form text into the API's request schemas: the schemas are strict about
types (an int must be an int), and a browser sends only strings, and no field at all for an
unticked checkbox. Shared by the admin, scheduler and operator pages."""
from __future__ import annotations

from typing import Any

from guahao.core.errors import InvalidRequest


def integer(form: dict[str, str], name: str, *, required: bool = True) -> int | None:
    raw = form.get(name, "").strip()
    if not raw:
        if required:
            raise InvalidRequest(field=name)
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidRequest(field=name) from exc


def yuan_to_fen(form: dict[str, str], name: str) -> int:
    """Fees are typed in yuan (12.50) and kept in integer fen."""
    raw = form.get(name, "").strip()
    try:
        value = round(float(raw) * 100)
    except ValueError as exc:
        raise InvalidRequest(field=name) from exc
    return value


def checked(form: dict[str, str], name: str) -> bool:
    return form.get(name) in ("on", "true", "1")


def text(form: dict[str, str], name: str, *, optional: bool = False) -> Any:
    value = form.get(name, "").strip()
    return (value or None) if optional else value
