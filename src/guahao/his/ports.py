"""What the HIS feature answers for the features below it (wired in `providers.py`).

- `catalog.his_mode.HisConnections`: `has_connection` (a mode that talks to the HIS needs one).
- `booking.records_step.MedicalRecords`: `guahao.his.records` itself (`cached`, `look_up`).
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core.db import Database
from guahao.his import connections
from guahao.his.models import HisConnection


async def has_connection(session: AsyncSession, hospital_id: int) -> bool:
    return await connections.get_connection(session, hospital_id) is not None


async def hospitals_connected_to(db: Database, base_url: str) -> list[int]:
    """The hospitals whose HIS connection points at `base_url` (`guahao serve` asks this
    about the embedded simulator before it starts one)."""
    async with db.read() as session:
        return list(await session.scalars(select(HisConnection.hospital_id)
                                          .where(HisConnection.base_url == base_url.rstrip("/"))
                                          .order_by(HisConnection.hospital_id)))
