"""The promoter: a freed seat goes to the head of the schedule's 候补 queue as an offer (a hold
with the waitlist's pay window), never to whoever refreshes at the right moment.

Exactly once, no overtaking, across any number of API and worker processes:
- every run holds the schedule row exclusively (the first lock of the order schedule →
  person → seats → booking), so promoters of one schedule take turns; a run that waited
  re-reads everything after the lock and finds only what is left to do, so a duplicate
  delivery of a job, or many processes promoting at once, equal one serial run;
- the head is the waiting entry with the lowest position, read under that lock;
- the offer is booking's own hold (`do_hold` with `offer_until`): every rule of a hold is
  checked, the person is locked, and the seat claim is the same single statement;
- the entry moves waiting → offered with a guarded UPDATE; a seat holds one booking id;
- open holds cannot take the seat meanwhile: while anyone waits, the schedule's
  `waitlist_waiting` flag makes their seat claim find nothing (scheduling.seats.claim).
An ineligible head (restricted, already booked that department that day, no longer
verified...) is skipped with the refusal's code as reason and told; the next one is tried in
the same run, inside a savepoint so the refused attempt leaves nothing behind.

Lazy expiry frees a seat at a hold's deadline with no transaction, so the promoter books
itself (an outbox message with `available_at`) at each offer's deadline and at the next
running hold's deadline while anyone waits; a periodic sweep is the safety net.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import actions as booking_actions
from guahao.booking import errors as booking_errors
from guahao.booking import queries as booking_queries
from guahao.booking.records_step import RecordLookupNeeded
from guahao.core.errors import GuahaoError
from guahao.scheduling import seats
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import entries
from guahao.waitlist import rules as waitlist_rules
from guahao.waitlist.models import WaitlistEntry

# refusals that concern the schedule, not the head: nobody can be offered a seat now
_SCHEDULE_REFUSALS = (booking_errors.BookingClosed, booking_errors.ScheduleSuspended,
                      booking_errors.ScheduleNotPublished, booking_errors.NotYetReleased,
                      booking_errors.SlotNotBookable, booking_errors.SlotSoldOut)
_PAID = ("confirmed", "checked_in", "completed", "no_show")

OFFER = "notify.waitlist_offer"
SKIPPED = "notify.waitlist_skipped"
CLOSED = "notify.waitlist_closed"


async def do_promote(session: AsyncSession, *, schedule_id: int, now: dt.datetime) -> list[WaitlistEntry]:
    """Offer every free seat of the schedule to its queue, in order. Returns the entries
    offered a seat by this run (empty when another run did it first)."""
    schedule = await scheduling_service.lock_schedule(session, schedule_id, exclusive=True)
    if schedule is None:
        return []
    return await promote_locked(session, schedule, now)


async def promote_locked(session: AsyncSession, schedule, now: dt.datetime) -> list[WaitlistEntry]:
    """`do_promote` for a caller that already holds the schedule exclusively."""
    rules = await waitlist_rules.get_rules(session, schedule.hospital_id)
    await reconcile_offers(session, schedule, now, rules=rules)
    offered: list[WaitlistEntry] = []
    await _close_due(session, schedule.id, now)
    if schedule.status == "published":  # 停诊: the queue is suspended, entries keep their places
        offered = await _offer_free_seats(session, schedule, rules, now)
    if await entries.sync_flag(session, schedule.id):
        deadlines = await seats.hold_deadlines(session, schedule.id, now)
        if deadlines:  # the next seat to free by itself: be there when it does
            await entries.promote_at(session, schedule.id, schedule.hospital_id, deadlines[0], now)
    return offered


async def _head(session: AsyncSession, schedule_id: int) -> WaitlistEntry | None:
    return await session.scalar(
        select(WaitlistEntry).where(WaitlistEntry.schedule_id == schedule_id, WaitlistEntry.state == "waiting")
        .order_by(WaitlistEntry.position).limit(1).execution_options(populate_existing=True))


async def _offer_free_seats(session: AsyncSession, schedule, rules: waitlist_rules.Rules,
                            now: dt.datetime) -> list[WaitlistEntry]:
    offered = []
    while (head := await _head(session, schedule.id)) is not None:
        slot_id = await seats.first_free_platform_slot(session, schedule.id, now)
        if slot_id is None:
            break
        ctx = await booking_queries.slot_context(session, slot_id)
        deadline = rules.offer_deadline(now, ctx.zone, pay_cutoff=ctx.closes_at)
        try:
            async with session.begin_nested():
                booking = await booking_actions.do_hold(session, account_id=head.account_id,
                                                        patient_id=head.patient_id, slot_id=slot_id, now=now,
                                                        offer_until=deadline)
        except _SCHEDULE_REFUSALS:
            break
        except (GuahaoError, RecordLookupNeeded) as exc:
            reason = exc.code if isinstance(exc, GuahaoError) else "record_required"
            await entries.apply(session, head, "skip", now=now, reason=reason)
            await entries.notify(session, SKIPPED, head, now=now, reason=reason)
            continue
        await entries.apply(session, head, "offer", now=now, offer_booking_id=booking.id, offered_at=now,
                            offers=head.offers + 1)
        await entries.notify(session, OFFER, head, now=now, key_extra=f":{booking.id}", booking_id=booking.id)
        if booking.state in _PAID:  # a free registration is confirmed at once
            await entries.apply(session, head, "pay", now=now)
        elif booking.hold_expires_at is not None:
            await entries.promote_at(session, schedule.id, schedule.hospital_id, booking.hold_expires_at, now)
        offered.append(head)
    return offered


async def reconcile_offers(session: AsyncSession, schedule, now: dt.datetime,
                           rules: waitlist_rules.Rules | None = None) -> None:
    """Settle the schedule's offered entries from their holds (caller holds the schedule):
    paid → fulfilled; unpaid past the deadline → lapsed (a strike where the hospital says so);
    cancelled by the patient → left; revoked by a 停诊 → waiting again at the old position."""
    offered = list(await session.scalars(
        select(WaitlistEntry).where(WaitlistEntry.schedule_id == schedule.id, WaitlistEntry.state == "offered")
        .order_by(WaitlistEntry.position).execution_options(populate_existing=True)))
    for entry in offered:
        booking = await booking_queries.get(session, entry.offer_booking_id, fresh=True)
        if booking is None:
            continue
        if booking.state in _PAID:
            await entries.apply(session, entry, "pay", now=now)
        elif booking.state == "held" and (booking.hold_expires_at is None or booking.hold_expires_at > now):
            continue  # the offer is still running
        elif booking.state in ("held", "expired"):
            await entries.apply(session, entry, "lapse", now=now, reason="offer_lapsed")
            rules = rules or await waitlist_rules.get_rules(session, schedule.hospital_id)
            if rules.lapse_counts_as_strike:
                await booking_actions.do_record_strike(session, booking_id=booking.id, now=now,
                                                       reason="waitlist_offer_lapsed")
        elif booking.state == "cancelled":
            await entries.apply(session, entry, "decline", now=now, reason="offer_cancelled")
        elif booking.state == "revoked":
            await entries.apply(session, entry, "revoke", now=now, offer_booking_id=None)


async def _close_due(session: AsyncSession, schedule_id: int, now: dt.datetime) -> int:
    """候补截止: waiting entries past their cutoff close, each told once."""
    due = list(await session.scalars(
        select(WaitlistEntry).where(WaitlistEntry.schedule_id == schedule_id, WaitlistEntry.state == "waiting",
                                    WaitlistEntry.cutoff_at <= now)
        .order_by(WaitlistEntry.position).execution_options(populate_existing=True)))
    for entry in due:
        await entries.apply(session, entry, "close", now=now, reason="cutoff")
        await entries.notify(session, CLOSED, entry, now=now)
    return len(due)


async def schedules_to_sweep(session: AsyncSession, *, now: dt.datetime, limit: int = 500) -> list[int]:
    """Schedules whose queue may have work: live entries (a seat may have freed unseen, an
    offer may have ended, a cutoff may have passed)."""
    return list(await session.scalars(
        select(WaitlistEntry.schedule_id).where(WaitlistEntry.state.in_(("waiting", "offered")))
        .group_by(WaitlistEntry.schedule_id).order_by(WaitlistEntry.schedule_id).limit(limit)))
