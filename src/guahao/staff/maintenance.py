"""The maintenance switch: set by the platform operator (audited), or by a file for deploys.

Read on every patient request, so it is cached per process for `CACHE_SECONDS`: a switch
takes effect on every process within that delay, and the database sees one small read per
process per interval, not one per request (the release rush must not pay for it).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core import audit
from guahao.core.db import Database
from guahao.staff.models import MaintenanceWindow

CACHE_SECONDS = 2.0
ROW_ID = 1


@dataclass(frozen=True)
class Maintenance:
    until: dt.datetime | None
    note: str | None
    source: str  # "operator" | "file"


async def read(session: AsyncSession) -> MaintenanceWindow | None:
    return await session.get(MaintenanceWindow, ROW_ID)


async def do_set(session: AsyncSession, *, active: bool, until: dt.datetime | None, note: str | None,
                 staff_id: int, now: dt.datetime) -> MaintenanceWindow:
    row = await read(session)
    if row is None:
        row = MaintenanceWindow(id=ROW_ID)
        session.add(row)
    row.active, row.until, row.note = active, until if active else None, note if active else None
    row.set_by, row.set_at = staff_id, now
    await audit.do_record(session, now=now, action="maintenance.on" if active else "maintenance.off",
                          object_type="platform", object_id="maintenance", staff_id=staff_id,
                          detail={"until": until.isoformat() if until and active else None})
    await session.flush()
    return row


def from_file(path: str) -> Maintenance | None:
    """A deploy script's switch: the file's presence turns maintenance on; it may hold
    {"until": "<ISO time>", "note": "..."}. Unreadable content still means "on"."""
    if not path:
        return None
    file = Path(path)
    if not file.exists():
        return None
    until = note = None
    try:
        data = json.loads(file.read_text(encoding="utf-8") or "{}")
        if data.get("until"):
            until = dt.datetime.fromisoformat(data["until"])
            until = until if until.tzinfo else until.replace(tzinfo=dt.UTC)
        note = str(data["note"])[:200] if data.get("note") else None
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return Maintenance(until=until, note=note, source="file")


class Switch:
    """What the middleware asks: is maintenance on now? (cached, see the module note)"""

    def __init__(self, db: Database, *, file: str = "") -> None:
        self.db, self.file = db, file
        self._checked_at: float | None = None
        self._value: Maintenance | None = None

    def forget(self) -> None:
        self._checked_at = None

    async def current(self, now: dt.datetime, monotonic: float) -> Maintenance | None:
        if self._checked_at is None or monotonic - self._checked_at >= CACHE_SECONDS:
            self._checked_at = monotonic
            try:
                self._value = from_file(self.file) or await self._from_database(now)
            except Exception:  # the database is down: keep the last answer
                # (the request itself will meet the outage and answer 503 for it)
                pass
        return self._value

    async def _from_database(self, now: dt.datetime) -> Maintenance | None:
        async with self.db.read() as session:
            row = await read(session)
        if row is None or not row.active:
            return None
        return Maintenance(until=row.until, note=row.note, source="operator")
