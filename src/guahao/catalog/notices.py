"""Hospital notices (医院公告) other than 停诊: what a hospital tells its patients (a changed
entrance, holiday hours, a vaccination clinic), each with a validity window and a pin.

The 停诊 notices come from suspended schedules (booking/notices.py); these are free text the
hospital writes. Staff write them (the platform operator, and the hospital's own admin), every
write audited by the router; patients see the active ones, pinned first, on the hospital page
and on home. "Active" is decided in the hospital's time zone by comparing instants: a notice
is valid from `valid_from` (inclusive) to `valid_until` (exclusive, open when NULL), both
stored in UTC from the local times the staff typed.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, IdMixin, UTCDateTime
from guahao.core.errors import GuahaoError, NotFound

TITLE_MAX = 60
BODY_MAX = 2000
ACTIVE_LIMIT = 20  # what a page shows at most; a hospital with more is asked to prune


class HospitalNotice(IdMixin, Base):
    __tablename__ = "hospital_notices"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(TITLE_MAX * 2))
    body: Mapped[str] = mapped_column(String(BODY_MAX * 2))
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_hospital_notices_hospital_valid", "hospital_id", "valid_from"),)


class NoticeWindowInvalid(GuahaoError):
    code, status = "notice_window_invalid", 422
    zh = "公告的结束时间必须晚于开始时间。"
    en = "A notice must end after it starts."


def _check_window(valid_from: dt.datetime, valid_until: dt.datetime | None) -> None:
    if valid_until is not None and valid_until <= valid_from:
        raise NoticeWindowInvalid()


async def do_publish(session: AsyncSession, *, hospital_id: int, title: str, body: str, valid_from: dt.datetime,
                     valid_until: dt.datetime | None, pinned: bool, staff_id: int | None,
                     now: dt.datetime) -> HospitalNotice:
    _check_window(valid_from, valid_until)
    notice = HospitalNotice(hospital_id=hospital_id, title=title.strip(), body=body.strip(), valid_from=valid_from,
                            valid_until=valid_until, pinned=pinned, created_by=staff_id, created_at=now,
                            updated_at=now)
    session.add(notice)
    await session.flush()
    return notice


async def get_or_raise(session: AsyncSession, notice_id: int, *, hospital_id: int | None) -> HospitalNotice:
    """A live notice; `hospital_id` None for the operator. Another hospital's notice answers
    404 like a missing one (I8)."""
    notice = await session.get(HospitalNotice, notice_id)
    if notice is None or notice.removed_at is not None or (hospital_id is not None
                                                           and notice.hospital_id != hospital_id):
        raise NotFound("notice")
    return notice


async def do_update(session: AsyncSession, notice: HospitalNotice, changes: dict, *, now: dt.datetime) -> dict:
    """Apply the changed fields; returns {field: [old, new]} for the audit row."""
    diff = {}
    for name, value in changes.items():
        if isinstance(value, str):
            value = value.strip()
        old = getattr(notice, name)
        if old != value:
            diff[name] = [old, value]
            setattr(notice, name, value)
    _check_window(notice.valid_from, notice.valid_until)
    notice.updated_at = now
    await session.flush()
    return diff


async def do_remove(session: AsyncSession, notice: HospitalNotice, *, now: dt.datetime) -> None:
    """Kept as a row (the audit log points at it); gone from every page."""
    notice.removed_at = now
    notice.updated_at = now
    await session.flush()


async def list_for_hospital(session: AsyncSession, hospital_id: int) -> list[HospitalNotice]:
    """Every live notice of the hospital, past and future too (the staff's list)."""
    rows = await session.scalars(select(HospitalNotice).where(
        HospitalNotice.hospital_id == hospital_id, HospitalNotice.removed_at.is_(None))
        .order_by(HospitalNotice.pinned.desc(), HospitalNotice.valid_from.desc(), HospitalNotice.id.desc()))
    return list(rows)


async def active(session: AsyncSession, hospital_ids: list[int], now: dt.datetime) -> list[HospitalNotice]:
    """The notices patients see now: started, not ended, not removed; pinned first, newest next."""
    if not hospital_ids:
        return []
    rows = await session.scalars(select(HospitalNotice).where(
        HospitalNotice.hospital_id.in_(hospital_ids), HospitalNotice.removed_at.is_(None),
        HospitalNotice.valid_from <= now,
        (HospitalNotice.valid_until.is_(None)) | (HospitalNotice.valid_until > now))
        .order_by(HospitalNotice.pinned.desc(), HospitalNotice.valid_from.desc(), HospitalNotice.id.desc())
        .limit(ACTIVE_LIMIT))
    return list(rows)
