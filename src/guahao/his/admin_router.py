"""The operator's API for a hospital's HIS connection (URL, our platform id, pool, key).

Only the platform operator writes it; a hospital's own staff may read a masked view of
theirs; staff of another hospital get 404, as for a missing hospital (I8). The key is
write-only: it is in no answer, log line or audit row (the audit row says whether it was
replaced). Switching the hospital's `his_mode` is the catalog's hospital update, which
refuses a mode that needs a connection before one is set here (catalog/his_mode.py).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter

from guahao.catalog import service as catalog_service
from guahao.core.deps import ClockDep, CurrentStaff, Db
from guahao.core.errors import NotFound
from guahao.core.localtime import localize
from guahao.his import admin_actions, connections
from guahao.his.schemas import HisConnectionRead, HisConnectionUpdate

router = APIRouter(prefix="/api/v1/staff/hospitals", tags=["HIS: operator"])

OPERATOR = "platform_operator"


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
    async with db.begin() as session:
        conn = await admin_actions.do_replace_connection(session, hospital_id, data, now=clock.now(),
                                                         staff_id=staff.staff_id)
        zone = await catalog_service.zone_of(session, hospital_id)
    return localize(connections.read_of(conn), zone)
