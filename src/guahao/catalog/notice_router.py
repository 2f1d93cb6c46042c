"""Hospital notices over HTTP: the staff's (platform operator, and the hospital's own admin;
every write audited, in catalog/staff_router.py's style) and the patients' read of the
active ones. The model and its actions are in catalog/notices.py.

Times: a `valid_from` / `valid_until` sent without an offset is the hospital's wall clock
(what an admin types in a form); answers carry the hospital's offset, like every API time.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, Field

from guahao.catalog import notices, service
from guahao.core import audit
from guahao.core.deps import ClockDep, CurrentStaff, Db, StaffPrincipal
from guahao.core.localtime import localize

router = APIRouter(tags=["catalog: notices"])
HospitalId = Annotated[int, Path(ge=1, le=2**63 - 1)]
NoticeId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ADMIN = "hospital_admin"


class NoticeCreate(BaseModel):
    title: str = Field(min_length=1, max_length=notices.TITLE_MAX)
    body: str = Field(min_length=1, max_length=notices.BODY_MAX)
    valid_from: dt.datetime | None = Field(default=None, description="from now when omitted; without an offset, "
                                                                     "the hospital's local time")
    valid_until: dt.datetime | None = Field(default=None, description="open-ended when omitted (exclusive)")
    pinned: bool = Field(default=False, description="shown first, and on the home page")


class NoticeUpdate(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=notices.TITLE_MAX)
    body: str | None = Field(default=None, min_length=1, max_length=notices.BODY_MAX)
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = Field(default=None, description="send null to make it open-ended")
    pinned: bool | None = None


class NoticeRead(BaseModel):
    id: int
    hospital_id: int
    title: str
    body: str
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    pinned: bool
    active: bool = Field(description="shown to patients now")
    created_at: dt.datetime
    updated_at: dt.datetime


def _instant(value: dt.datetime | None, zone: dt.tzinfo) -> dt.datetime | None:
    if value is None:
        return None
    return (value.replace(tzinfo=zone) if value.tzinfo is None else value).astimezone(dt.UTC)


def _read(n: notices.HospitalNotice, now: dt.datetime) -> NoticeRead:
    active = n.removed_at is None and n.valid_from <= now and (n.valid_until is None or now < n.valid_until)
    return NoticeRead(id=n.id, hospital_id=n.hospital_id, title=n.title, body=n.body, valid_from=n.valid_from,
                      valid_until=n.valid_until, pinned=n.pinned, active=active, created_at=n.created_at,
                      updated_at=n.updated_at)


def _scope(staff: StaffPrincipal) -> int | None:
    return None if staff.is_operator else staff.hospital_id


async def _audit(session, staff: StaffPrincipal, now: dt.datetime, action: str, notice, detail: dict) -> None:
    await audit.do_record(session, now=now, action=action, object_type="hospital_notice", object_id=notice.id,
                          hospital_id=notice.hospital_id, staff_id=staff.staff_id, detail=detail)


@router.post("/api/v1/staff/hospitals/{hospital_id}/notices", response_model=NoticeRead,
             status_code=status.HTTP_201_CREATED)
async def publish_notice(hospital_id: HospitalId, data: NoticeCreate, staff: CurrentStaff, db: Db,
                         clock: ClockDep) -> NoticeRead:
    """Publish a notice on the hospital's page (operator, that hospital's admin); audited."""
    staff.require(ADMIN)
    staff.ensure_hospital(hospital_id)
    now = clock.now()
    async with db.begin() as session:
        await service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        zone = await service.zone_of(session, hospital_id)
        notice = await notices.do_publish(
            session, hospital_id=hospital_id, title=data.title, body=data.body,
            valid_from=_instant(data.valid_from, zone) or now, valid_until=_instant(data.valid_until, zone),
            pinned=data.pinned, staff_id=staff.staff_id, now=now)
        await _audit(session, staff, now, "notice.publish", notice, {"title": notice.title, "pinned": notice.pinned})
    return localize(_read(notice, now), zone)


@router.get("/api/v1/staff/hospitals/{hospital_id}/notices", response_model=list[NoticeRead])
async def staff_notices(hospital_id: HospitalId, staff: CurrentStaff, db: Db, clock: ClockDep) -> list[NoticeRead]:
    """Every notice of the hospital, past and future ones too (removed ones not)."""
    staff.require(ADMIN)
    staff.ensure_hospital(hospital_id)
    now = clock.now()
    async with db.read() as session:
        rows = await notices.list_for_hospital(session, hospital_id)
        zone = await service.zone_of(session, hospital_id)
    return localize([_read(n, now) for n in rows], zone)


@router.patch("/api/v1/staff/notices/{notice_id}", response_model=NoticeRead)
async def update_notice(notice_id: NoticeId, data: NoticeUpdate, staff: CurrentStaff, db: Db,
                        clock: ClockDep) -> NoticeRead:
    """Change a notice's text, validity or pinning; audited."""
    staff.require(ADMIN)
    now = clock.now()
    async with db.begin() as session:
        notice = await notices.get_or_raise(session, notice_id, hospital_id=_scope(staff))
        zone = await service.zone_of(session, notice.hospital_id)
        changes = data.model_dump(exclude_unset=True)
        for name in ("valid_from", "valid_until"):
            if name in changes:
                changes[name] = _instant(changes[name], zone)
        if changes.get("valid_from", notice.valid_from) is None:
            changes.pop("valid_from")
        for name in ("title", "body", "pinned"):
            if name in changes and changes[name] is None:
                changes.pop(name)
        diff = await notices.do_update(session, notice, changes, now=now)
        # old and new values of the short fields; the body only as "changed" (it may be long)
        detail = {k: [str(old), str(new)] for k, (old, new) in diff.items() if k != "body"}
        await _audit(session, staff, now, "notice.update", notice,
                     detail | ({"body": "changed"} if "body" in diff else {}))
    return localize(_read(notice, now), zone)


@router.delete("/api/v1/staff/notices/{notice_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_notice(notice_id: NoticeId, staff: CurrentStaff, db: Db, clock: ClockDep) -> Response:
    """Take a notice down; audited."""
    staff.require(ADMIN)
    now = clock.now()
    async with db.begin() as session:
        notice = await notices.get_or_raise(session, notice_id, hospital_id=_scope(staff))
        await notices.do_remove(session, notice, now=now)
        await _audit(session, staff, now, "notice.remove", notice, {"title": notice.title})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api/v1/hospitals/{hospital_id}/notices", response_model=list[NoticeRead], tags=["catalog"])
async def hospital_notices(hospital_id: HospitalId, db: Db, clock: ClockDep) -> list[NoticeRead]:
    """The hospital's notices patients see now (停诊 notices are the schedules' own), pinned first."""
    now = clock.now()
    async with db.read() as session:
        await service.get_hospital_or_raise(session, hospital_id)
        rows = await notices.active(session, [hospital_id], now)
        zone = await service.zone_of(session, hospital_id)
    return localize([_read(n, now) for n in rows], zone)
