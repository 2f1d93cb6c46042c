"""Switching a hospital's HIS mode (`local` / `synced` / `realtime`): when it is allowed.

A booking lives its whole life under the mode it was taken in: a realtime hold is locked at
the HIS, a synced confirmation is written back, a local one never reaches the HIS. Switching
while bookings are live would leave them half in one world and half in the other (a write-back
for an order the HIS never saw, a HIS lock nobody releases), so the switch is refused while
the hospital has live bookings (held and unexpired, or confirmed): `his_mode_locked`. A mode
that talks to the HIS needs the hospital's HIS connection first: `his_connection_missing`.

Both questions belong to features above catalog (bookings; the HIS connection), so catalog
owns the two small ports below and `providers.py` wires the answers (booking's `queries`,
the HIS feature's `connections`), as for `patients.service.LiveBookings`.

Concurrency: `hospital_has_live_bookings` first takes the hospital's open schedules
exclusively (schedule is first in the lock order), so holds already past their schedule share
lock finish before the count, and later ones wait. The hospital row itself is not locked
first: a hold takes its schedule, then (inserting its booking, whose foreign key names the
hospital) a key-share lock on the hospital row, so a switch holding the hospital and waiting
for a schedule would deadlock with it. On PostgreSQL a hold whose context SELECT was already
waiting on one of those schedule locks reads the mode of its own statement snapshot (READ
COMMITTED does not re-read joined rows of a row that was only locked); that window is the
length of the switch's transaction. SQLite serialises writers.
"""
from __future__ import annotations

import datetime as dt
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core.errors import GuahaoError

HIS_MODES_WITH_CONNECTION = ("synced", "realtime")


class HospitalBookings(Protocol):
    """Asked of booking (above catalog): does the hospital have live bookings now?"""

    async def hospital_has_live_bookings(self, session: AsyncSession, hospital_id: int, *,
                                         now: dt.datetime) -> bool: ...


class HisConnections(Protocol):
    """Asked of the HIS integration (above catalog): has the hospital a HIS connection?"""

    async def has_connection(self, session: AsyncSession, hospital_id: int) -> bool: ...


class HisModeLocked(GuahaoError):
    code, status = "his_mode_locked", 409
    zh = "该医院仍有未结束的预约(锁号中或已确认),不能切换 HIS 对接模式;请待这些预约结束后再切换。"
    en = ("This hospital still has live bookings (held or confirmed); its HIS mode cannot be switched until "
          "they have ended.")


class HisConnectionMissing(GuahaoError):
    code, status = "his_connection_missing", 409
    zh = "该医院尚未配置 HIS 连接,请先设置连接再切换到{mode}模式。"
    en = "This hospital has no HIS connection yet; set one up before switching to {mode} mode."


def check_new_hospital(his_mode: str) -> None:
    """A new hospital cannot have a connection yet: it starts `local` and switches later."""
    if his_mode in HIS_MODES_WITH_CONNECTION:
        raise HisConnectionMissing(mode=his_mode)


async def check_switch(session: AsyncSession, hospital_id: int, new_mode: str, *, now: dt.datetime,
                       bookings: HospitalBookings | None, connections: HisConnections | None) -> None:
    """Refuse switching to `new_mode` (the caller knows the mode changes). Both ports are
    required: without them nobody could answer safely."""
    if bookings is None or connections is None:
        raise RuntimeError("switching a HIS mode needs the bookings and HIS connection ports (providers.py)")
    if new_mode in HIS_MODES_WITH_CONNECTION and not await connections.has_connection(session, hospital_id):
        raise HisConnectionMissing(mode=new_mode)
    if await bookings.hospital_has_live_bookings(session, hospital_id, now=now):
        raise HisModeLocked()
