"""停诊 for a doctor's leave (a date range), its preview, and resuming a suspension.

A preview reads what a suspension would do now: the sessions, the bookings it would revoke,
the refunds and the messages (the same outbox topics `booking.notices` writes). The
suspension itself locks every session of the range exclusively, in id order, before
revoking anything, so it keeps the lock order (schedule → seats → booking) across sessions;
then each session goes through `hospital_actions.do_suspend`, the one 停诊 rule.

Resuming (lifting the 停诊) publishes the session again. Bookings the 停诊 revoked stay
revoked: they were refunded and their patients told, so nothing brings them back. Their
seats were freed by the 停诊 itself; on resuming they go to the 候补 queue's head first, in
queue order (the waitlist's promoter, told through the outbox), and only when nobody waits do
they return to open booking.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import hospital_actions, staff_errors
from guahao.booking.lifecycle import Actor
from guahao.booking.models import ACTIVE_STATES, Booking
from guahao.catalog import service as catalog_service
from guahao.core import audit
from guahao.core.errors import NotFound
from guahao.scheduling import seats
from guahao.scheduling import service as scheduling_service

MAX_LEAVE_DAYS = 62


@dataclass
class SessionImpact:
    schedule_id: int
    date: dt.date
    period: str
    status: str
    bookings: int = 0
    paid: int = 0
    refund_total: int = 0


@dataclass
class Impact:
    sessions: list[SessionImpact] = field(default_factory=list)
    notices: Counter = field(default_factory=Counter)

    @property
    def bookings(self) -> int:
        return sum(s.bookings for s in self.sessions)

    @property
    def refunds(self) -> int:
        return sum(s.paid for s in self.sessions)

    @property
    def refund_total(self) -> int:
        return sum(s.refund_total for s in self.sessions)


def _check_range(first: dt.date, last: dt.date) -> None:
    if last < first or (last - first).days + 1 > MAX_LEAVE_DAYS:
        raise staff_errors.SuspensionRangeInvalid(max_days=MAX_LEAVE_DAYS)


async def _sessions(session: AsyncSession, *, hospital_id: int, doctor_id: int, first: dt.date, last: dt.date,
                    periods: list[str] | None, now: dt.datetime):
    """The doctor's sessions of the range that have not ended and are not suspended yet."""
    _check_range(first, last)
    await catalog_service.get_doctor_or_raise(session, doctor_id, hospital_id=hospital_id, include_inactive=True)
    found = await scheduling_service.list_schedules(session, hospital_id, first, last, doctor_id=doctor_id)
    return [s for s in found if s.status != "suspended" and s.ends_at > now and (not periods or s.period in periods)]


async def preview_leave(session: AsyncSession, *, hospital_id: int, doctor_id: int, first: dt.date, last: dt.date,
                        periods: list[str] | None, now: dt.datetime) -> Impact:
    """What `do_suspend_leave` would do now (a read: bookings may still change before it runs)."""
    sessions = await _sessions(session, hospital_id=hospital_id, doctor_id=doctor_id, first=first, last=last,
                               periods=periods, now=now)
    return await _impact(session, sessions, hospital_id=hospital_id, now=now)


async def preview_one(session: AsyncSession, *, schedule_id: int, hospital_id: int | None,
                      now: dt.datetime) -> Impact:
    """What `do_suspend_one` would do now to one session (the back office's confirm step)."""
    schedule = await scheduling_service.get_schedule_or_raise(session, schedule_id, hospital_id=hospital_id)
    sessions = [schedule] if schedule.status != "suspended" and schedule.ends_at > now else []
    return await _impact(session, sessions, hospital_id=schedule.hospital_id, now=now)


async def _impact(session: AsyncSession, sessions, *, hospital_id: int, now: dt.datetime) -> Impact:
    his_mode = await catalog_service.his_mode_of(session, hospital_id)
    impact = Impact()
    by_id = {}
    for s in sessions:
        by_id[s.id] = SessionImpact(schedule_id=s.id, date=s.date, period=s.period, status=s.status)
        impact.sessions.append(by_id[s.id])
    if not by_id:
        return impact
    bookings = await session.scalars(select(Booking).where(Booking.schedule_id.in_(by_id),
                                                           Booking.state.in_(ACTIVE_STATES)))
    for b in bookings:
        if b.state == "held" and b.hold_expires_at is not None and b.hold_expires_at <= now:
            continue  # lapsed: it is expired, not revoked
        item = by_id[b.schedule_id]
        item.bookings += 1
        impact.notices["notify.booking_revoked"] += 1
        if b.state == "confirmed":
            if b.amount_due > 0:
                item.paid += 1
                item.refund_total += b.amount_due
                impact.notices["payment.refund"] += 1
            if his_mode not in (None, "local"):
                impact.notices["his.booking_cancelled"] += 1
    return impact


async def _audited_suspend(session: AsyncSession, *, schedule_id: int, hospital_id: int | None, reason: str,
                           staff_id: int, now: dt.datetime) -> list[Booking]:
    revoked = await hospital_actions.do_suspend(session, schedule_id=schedule_id, hospital_id=hospital_id,
                                                reason=reason, actor=Actor("staff", staff_id), now=now)
    schedule = await scheduling_service.get_schedule_or_raise(session, schedule_id)
    await audit.do_record(session, now=now, action="schedule.suspend", object_type="schedule", object_id=schedule_id,
                          hospital_id=schedule.hospital_id, staff_id=staff_id,
                          detail={"reason": reason[:200], "revoked": len(revoked)})
    return revoked


async def do_suspend_one(session: AsyncSession, *, schedule_id: int, hospital_id: int | None, reason: str,
                         staff_id: int, now: dt.datetime) -> list[Booking]:
    """停诊 of one session by staff, audited."""
    return await _audited_suspend(session, schedule_id=schedule_id, hospital_id=hospital_id, reason=reason,
                                  staff_id=staff_id, now=now)


async def do_suspend_leave(session: AsyncSession, *, hospital_id: int, doctor_id: int, first: dt.date,
                           last: dt.date, periods: list[str] | None, reason: str, staff_id: int,
                           now: dt.datetime) -> dict[int, list[Booking]]:
    """停诊 of every session of a doctor's leave, in one transaction: {schedule_id: revoked}."""
    sessions = await _sessions(session, hospital_id=hospital_id, doctor_id=doctor_id, first=first, last=last,
                               periods=periods, now=now)
    ids = sorted(s.id for s in sessions)
    for schedule_id in ids:  # every session's lock before any seat or booking lock
        await scheduling_service.lock_schedule(session, schedule_id, exclusive=True)
    return {schedule_id: await _audited_suspend(session, schedule_id=schedule_id, hospital_id=hospital_id,
                                                reason=reason, staff_id=staff_id, now=now)
            for schedule_id in ids}


async def revoked_count(session: AsyncSession, schedule_id: int) -> int:
    """Bookings of the session revoked by 停诊 (they stay revoked when it is lifted)."""
    return await session.scalar(select(func.count()).select_from(Booking).where(
        Booking.schedule_id == schedule_id, Booking.state == "revoked")) or 0


async def do_resume(session: AsyncSession, *, schedule_id: int, hospital_id: int | None, staff_id: int | None,
                    now: dt.datetime) -> int:
    """Lift a 停诊: the session is bookable again. Returns how many bookings the 停诊 revoked;
    they stay revoked (refunded and told). Their freed seats go to the 候补 queue first.

    Locks: the schedule exclusively, first (as 停诊 does), so no hold, confirmation or
    promoter is half-way. The promoter is always asked (`schedule.resumed`), not only when the
    "someone waits" flag is set: an offer revoked by this 停诊 is a live entry that goes back
    to its place once the promoter reads the revocation, and its seat must reach it, not
    whoever books first."""
    schedule = await scheduling_service.lock_schedule(session, schedule_id, exclusive=True)
    if schedule is None or (hospital_id is not None and schedule.hospital_id != hospital_id):
        raise NotFound("schedule")
    if schedule.status != "suspended":
        raise staff_errors.NotSuspended()
    revoked = await revoked_count(session, schedule_id)
    await scheduling_service.mark_resumed(session, schedule_id, now=now)
    # its 候补 queue resumes in its old order, gets the seats the 停诊 freed first, and is told
    await seats.announce_resumed(session, schedule_id=schedule_id, hospital_id=schedule.hospital_id, now=now)
    await audit.do_record(session, now=now, action="schedule.resume", object_type="schedule", object_id=schedule_id,
                          hospital_id=schedule.hospital_id, staff_id=staff_id, detail={"revoked": revoked})
    return revoked
