"""黑名单: strikes (cancellations the hospital counts, see Rules.strike_cancellations, and
no-shows) in a rolling window bar a person from online booking at a hospital for a while.
Staff can lift a restriction, audited.

Strikes are recorded and counted under the person's row lock (booking.actions.lock_person),
so two strikes at the same moment are counted one after the other."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking.models import Booking, Restriction
from guahao.core import audit
from guahao.core.errors import NotFound
from guahao.outbox import service as outbox


async def active_until(session: AsyncSession, *, person_id: int, hospital_id: int, now: dt.datetime) -> dt.datetime | None:
    return await session.scalar(
        select(func.max(Restriction.until)).where(
            Restriction.person_id == person_id, Restriction.hospital_id == hospital_id,
            Restriction.lifted_at.is_(None), Restriction.until > now)
    )


def active_until_subquery(person_id, *, hospital_id: int, now: dt.datetime):
    """The latest running restriction's end for the outer query's person (a scalar subquery).

    `person_id` is the outer query's person-id column (patients.service.lock_person hands
    it over), so booking builds the subquery without reading the persons table itself; every
    table but restrictions is correlated to that outer query."""
    return (select(func.max(Restriction.until)).where(
        Restriction.person_id == person_id, Restriction.hospital_id == hospital_id,
        Restriction.lifted_at.is_(None), Restriction.until > now)
        .correlate_except(Restriction).scalar_subquery())


async def strikes_counted(session: AsyncSession, *, person_id: int, hospital_id: int, rules,
                          now: dt.datetime) -> int:
    """Strikes in the rolling window that an earlier restriction has not already answered
    (those before its start do not count again)."""
    window_start = now - dt.timedelta(days=rules.restriction_window_days)
    last_start = await session.scalar(
        select(func.max(Restriction.starts_at)).where(Restriction.person_id == person_id,
                                                      Restriction.hospital_id == hospital_id))
    since = max(window_start, last_start) if last_start is not None else window_start
    return await session.scalar(
        select(func.count()).select_from(Booking).where(
            Booking.person_id == person_id, Booking.hospital_id == hospital_id, Booking.strike_at > since)
    ) or 0


async def after_strike(session: AsyncSession, *, person_id: int, hospital_id: int, rules, now: dt.datetime) -> Restriction | None:
    """Called in the transaction that recorded a strike, under the person's row lock:
    restrict when the threshold is reached."""
    if await active_until(session, person_id=person_id, hospital_id=hospital_id, now=now) is not None:
        return None
    strikes = await strikes_counted(session, person_id=person_id, hospital_id=hospital_id, rules=rules, now=now)
    if strikes < rules.restriction_threshold:
        return None
    restriction = Restriction(person_id=person_id, hospital_id=hospital_id, starts_at=now,
                              until=now + dt.timedelta(days=rules.restriction_days), strikes=strikes,
                              reason="repeated_cancellations_or_no_shows")
    session.add(restriction)
    await session.flush()
    await outbox.enqueue(session, topic="notify.restriction_applied", dedupe_key=f"notify.restriction_applied:{restriction.id}",
                         payload={"restriction_id": restriction.id, "person_id": person_id, "hospital_id": hospital_id,
                                  "until": restriction.until.isoformat()}, now=now, hospital_id=hospital_id)
    return restriction


async def list_for_hospital(session: AsyncSession, hospital_id: int, *, active_only: bool, now: dt.datetime) -> list[Restriction]:
    query = select(Restriction).where(Restriction.hospital_id == hospital_id)
    if active_only:
        query = query.where(Restriction.lifted_at.is_(None), Restriction.until > now)
    return list(await session.scalars(query.order_by(Restriction.id.desc()).limit(200)))


async def do_lift(session: AsyncSession, *, restriction_id: int, staff_id: int, hospital_id: int | None,
                  reason: str, now: dt.datetime) -> Restriction:
    restriction = await session.get(Restriction, restriction_id)
    if restriction is None or (hospital_id is not None and restriction.hospital_id != hospital_id):
        raise NotFound("restriction")
    if restriction.lifted_at is None:
        restriction.lifted_at, restriction.lifted_by, restriction.lift_reason = now, staff_id, reason
        await audit.do_record(session, now=now, action="restriction.lift", object_type="restriction",
                                    object_id=restriction.id, hospital_id=restriction.hospital_id,
                                    staff_id=staff_id, detail={"reason": reason})
    return restriction
