"""What the HIS feature answers for the features below it (wired in `providers.py`).

- `catalog.his_mode.HisConnections`: `has_connection` (a mode that talks to the HIS needs one).
- `booking.records_step.MedicalRecords`: `guahao.his.records` itself (`cached`, `look_up`).
"""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.his import connections


async def has_connection(session: AsyncSession, hospital_id: int) -> bool:
    return await connections.get_connection(session, hospital_id) is not None
