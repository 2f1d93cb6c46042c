"""The operator's API for a hospital's HIS connection (URL, our platform id, pool, key).

Only the platform operator writes it; a hospital's own staff may read a masked view of
theirs; staff of another hospital get 404, as for a missing hospital (I8). The key is
write-only: it is in no answer, log line or audit row (the audit row says whether it was
replaced). Switching the hospital's `his_mode` is the catalog's hospital update, which
refuses a mode that needs a connection before one is set here (catalog/his_mode.py).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from sqlalchemy import select

from guahao.catalog import service as catalog_service
from guahao.core import audit
from guahao.core.deps import ClockDep, CurrentStaff, Db
from guahao.core.errors import NotFound
from guahao.core.localtime import localize
from guahao.his import connections
from guahao.his.models import HisConnection
from guahao.his.schemas import HisConnectionRead, HisConnectionUpdate

router = APIRouter(prefix="/api/v1/staff/hospitals", tags=["HIS: operator"])

OPERATOR = "platform_operator"
_AUDITED = ("base_url", "platform", "pool", "timeout_ms", "cache_ms")


def _masked(read: HisConnectionRead) -> HisConnectionRead:
    """The hospital's own staff see where their HIS is reached (scheme and host), not the path."""
    parts = urlsplit(read.base_url)
    return read.model_copy(update={"base_url": f"{parts.scheme}://{parts.hostname or ''}"})


@router.get("/{hospital_id}/his-connection", response_model=HisConnectionRead)
async def get_his_connection(hospital_id: int, staff: CurrentStaff, db: Db) -> HisConnectionRead:
    """The hospital's HIS connection without its key (`key_set` only); the hospital's own
    staff get the address as scheme and host."""
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        conn = await connections.get_connection(session, hospital_id)
        if conn is None:
            raise NotFound("his_connection")
        read = connections.read_of(conn)
        zone = await catalog_service.zone_of(session, hospital_id)
    return localize(read if staff.is_operator else _masked(read), zone)


@router.put("/{hospital_id}/his-connection", response_model=HisConnectionRead)
async def put_his_connection(hospital_id: int, data: HisConnectionUpdate, staff: CurrentStaff, db: Db,
                             clock: ClockDep) -> HisConnectionRead:
    """Create or replace the hospital's HIS connection (platform operator only). Every field
    is given each time, the key included: a PUT replaces the whole connection."""
    staff.require(OPERATOR)
    now = clock.now()
    async with db.begin() as session:
        await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        old = await session.scalar(select(HisConnection).where(HisConnection.hospital_id == hospital_id)
                                   .with_for_update())
        before = {name: getattr(old, name) for name in _AUDITED} if old is not None else {}
        old_key = old.key if old is not None else None
        conn = await connections.do_set_connection(session, hospital_id, data, now=now)
        after = {name: getattr(conn, name) for name in _AUDITED}
        detail: dict[str, Any] = {name: [before.get(name), value] for name, value in after.items()
                                  if before.get(name) != value}
        detail["key_replaced"] = old_key is not None and old_key != data.key.lower()
        detail["created"] = old is None
        await audit.do_record(session, now=now, action="his_connection.set", object_type="his_connection",
                              object_id=hospital_id, hospital_id=hospital_id, staff_id=staff.staff_id, detail=detail)
        zone = await catalog_service.zone_of(session, hospital_id)
    return localize(connections.read_of(conn), zone)
