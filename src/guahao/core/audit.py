"""The audit log: who did what to which object (rule edits, staff creation, reveals, exports).

It lives in core because every feature writes to it (catalog, scheduling, staff, booking,
jobs); owning it in one feature would make all the others depend on that one.

Other features record through `do_record` inside their own unit of work, so the audit row
commits or rolls back with the change it describes. `detail` holds ids, codes and old/new
values, never personal data in plain text.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

DETAIL_MAX = 1000  # the column's length


class AuditEntry(IdMixin, Base):
    """Who did what to which object: rule edits, reveals, exports, restriction lifts."""

    __tablename__ = "audit_log"

    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    staff_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff_users.id", ondelete="SET NULL"))
    account_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="SET NULL"))
    hospital_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(String(1000), default="")


def _dump(detail: dict[str, Any]) -> str:
    text = json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str, separators=(",", ":"))
    if len(text) > DETAIL_MAX:  # keep the row rather than fail the change it describes
        text = json.dumps({"truncated": text[: DETAIL_MAX - 40]}, ensure_ascii=False)[:DETAIL_MAX]
    return text


def load_detail(entry: AuditEntry) -> dict[str, Any]:
    try:
        value = json.loads(entry.detail) if entry.detail else {}
    except ValueError:
        return {"text": entry.detail}
    return value if isinstance(value, dict) else {"value": value}


async def do_record(session: AsyncSession, *, now: dt.datetime, action: str, object_type: str,
                    object_id: int | str, hospital_id: int | None = None, staff_id: int | None = None,
                    account_id: int | None = None, detail: dict[str, Any] | None = None) -> AuditEntry:
    entry = AuditEntry(at=now, staff_id=staff_id, account_id=account_id, hospital_id=hospital_id, action=action,
                       object_type=object_type, object_id=str(object_id), detail=_dump(detail or {}))
    session.add(entry)
    await session.flush()
    return entry


async def list_entries(session: AsyncSession, *, hospital_id: int | None, limit: int,
                       before_id: int | None = None, action: str | None = None) -> list[AuditEntry]:
    """Newest first; keyset pagination on id (`before_id` = the last id of the previous page)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if hospital_id is not None:
        query = query.where(AuditEntry.hospital_id == hospital_id)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return list(await session.scalars(query))
