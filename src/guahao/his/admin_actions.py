"""The operator's write of a hospital's HIS connection with its audit row, called by the JSON
route (his/admin_router.py) and the back-office onboarding page alike. The key is never in
the audit row: it says only whether the key was replaced."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog import service as catalog_service
from guahao.core import audit
from guahao.his import connections
from guahao.his.models import HisConnection
from guahao.his.schemas import HisConnectionUpdate

_AUDITED = ("base_url", "platform", "pool", "timeout_ms", "cache_ms")


async def do_replace_connection(session: AsyncSession, hospital_id: int, data: HisConnectionUpdate, *,
                                now: dt.datetime, staff_id: int) -> connections.Connection:
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
                          object_id=hospital_id, hospital_id=hospital_id, staff_id=staff_id, detail=detail)
    return conn
