"""Hospital-side booking changes: 停诊 (suspension), check-in, completion, no-shows."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import actions as booking_actions
from guahao.booking import errors, lifecycle, notices, restrictions
from guahao.booking.lifecycle import Actor
from guahao.booking.models import ACTIVE_STATES, Booking
from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.core.errors import NotFound
from guahao.scheduling import seats
from guahao.scheduling import service as scheduling_service


async def do_suspend(session: AsyncSession, *, schedule_id: int, hospital_id: int | None, reason: str,
                     actor: Actor, now: dt.datetime) -> list[Booking]:
    """停诊: the schedule stops selling and every active booking becomes revoked, with refund
    and notification messages in the outbox. Returns the revoked bookings. Always succeeds
    for a schedule the caller may reach.

    Locks: the schedule row exclusively first (holds, confirmations and cancellations take it
    shared, so none of them is half-way while we run), then the seats of its active bookings;
    after waiting for them the bookings are read again and those that ended meanwhile (the
    sweeper expired a hold, say) are skipped."""
    schedule = await scheduling_service.lock_schedule(session, schedule_id, exclusive=True)
    if schedule is None or (hospital_id is not None and schedule.hospital_id != hospital_id):
        raise NotFound("schedule")
    if schedule.status == "suspended":
        return []
    await scheduling_service.mark_suspended(session, schedule.id, reason=reason, now=now)
    await seats.announce_suspended(session, schedule_id=schedule.id, hospital_id=schedule.hospital_id, now=now)
    his_mode = await catalog_service.his_mode_of(session, schedule.hospital_id)
    active = select(Booking).where(Booking.schedule_id == schedule.id, Booking.state.in_(ACTIVE_STATES))
    ids = list(await session.scalars(active.with_only_columns(Booking.id).order_by(Booking.id)))
    await seats.lock_seats_of(session, ids)
    live = list(await session.scalars(active.order_by(Booking.id).execution_options(populate_existing=True)))
    revoked = []
    for booking in live:
        if booking.state == "held" and booking.hold_expires_at is not None and booking.hold_expires_at <= now:
            await lifecycle.apply(session, booking, "expire", actor=Actor.system(), now=now, reason="hold_deadline")
            await notices.after_transition(session, booking, now=now, his_mode=his_mode)
            continue
        was_paid = booking.state == "confirmed"
        await lifecycle.apply(session, booking, "suspend", actor=actor, now=now, reason=reason)
        await notices.after_transition(session, booking, now=now, his_mode=his_mode, was_paid=was_paid)
        revoked.append(booking)
    await seats.release(session, [b.id for b in live])
    return revoked


async def find_for_hospital(session: AsyncSession, *, hospital_id: int | None, booking_id: int | None = None,
                            booking_code: str | None = None) -> Booking:
    query = select(Booking)
    if booking_id is not None:
        query = query.where(Booking.id == booking_id)
    if booking_code is not None:
        if hospital_id is None:
            raise NotFound("booking")
        query = query.where(Booking.booking_code == booking_code)
    if hospital_id is not None:
        query = query.where(Booking.hospital_id == hospital_id)
    booking = await session.scalar(query)
    if booking is None:
        raise NotFound("booking")
    return booking


async def do_check_in(session: AsyncSession, booking: Booking, *, actor: Actor, now: dt.datetime) -> Booking:
    """签到: a confirmed booking, on its visit day (hospital time), before its period ends."""
    schedule = await scheduling_service.get_schedule_or_raise(session, booking.schedule_id)
    zone = await catalog_service.zone_of(session, booking.hospital_id)
    if booking.state != "confirmed" or now.astimezone(zone).date() != booking.visit_date or now >= schedule.ends_at:
        raise errors.CheckInRefused()
    await lifecycle.apply(session, booking, "check_in", actor=actor, now=now)
    return booking


async def do_complete(session: AsyncSession, booking: Booking, *, actor: Actor, now: dt.datetime) -> Booking:
    await lifecycle.apply(session, booking, "complete", actor=actor, now=now)
    return booking


async def do_mark_no_shows(session: AsyncSession, *, now: dt.datetime, limit: int = 500) -> int:
    """爽约: confirmed bookings whose period is over without a check-in. Each is a strike,
    counted under the person's row lock (as cancellations are), so two strikes at once
    neither miss nor double a restriction."""
    due = list(await session.scalars(
        select(Booking.id)
        .where(Booking.state == "confirmed", Booking.schedule_id.in_(scheduling_service.ended_schedule_ids(now)))
        .order_by(Booking.id).limit(limit)
    ))
    marked = 0
    for booking_id in due:
        found = await session.get_one(Booking, booking_id)
        await booking_actions.lock_person(session, found.person_id, hospital_id=found.hospital_id, now=now)
        booking = await session.get_one(Booking, booking_id, populate_existing=True)
        if booking.state != "confirmed":
            continue  # checked in or cancelled while we waited
        await lifecycle.apply(session, booking, "miss", actor=Actor.system(), now=now, reason="not_checked_in",
                              strike_at=now)
        his_mode = await catalog_service.his_mode_of(session, booking.hospital_id)
        await notices.after_transition(session, booking, now=now, his_mode=his_mode)
        rules = await hospital_rules.get_rules(session, booking.hospital_id)
        await restrictions.after_strike(session, person_id=booking.person_id, hospital_id=booking.hospital_id,
                                        rules=rules, now=now)
        marked += 1
    return marked
