"""Staff users: creation, password login (argon2), lookups."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.staff.models import StaffUser


async def get(session: AsyncSession, staff_id: int) -> StaffUser | None:
    return await session.get(StaffUser, staff_id)
