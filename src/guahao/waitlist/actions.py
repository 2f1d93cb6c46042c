"""Joining and leaving a schedule's 候补 queue.

Concurrency: every change to a schedule's queue holds the schedule row exclusively (the first
lock of the order schedule → person → seats → booking → payment), so joins, leaves and the
promoter of one schedule take turns, across processes; holds share that row, so an open hold
either committed before a join (and the joiner saw the schedule full) or waits for it (and
then sees the `waitlist_waiting` flag). The person lock then serialises one person's joins
across schedules, so "at most K live entries" is exact; the partial unique index on live
entries per (schedule, person) is the database's backstop for "one per real person".
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import actions as booking_actions
from guahao.booking import errors as booking_errors
from guahao.booking import queries as booking_queries
from guahao.core.db import insert_many
from guahao.core.errors import GuahaoError, NotFound
from guahao.patients import service as patients_service
from guahao.scheduling import seats
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import entries, errors, promote
from guahao.waitlist import rules as waitlist_rules
from guahao.waitlist.models import LIVE_STATES, ONE_LIVE_INDEX, WaitlistEntry

REALTIME = "realtime"


@dataclass(frozen=True)
class Queue:
    """What a join needs to know about the schedule, read under its exclusive lock."""

    schedule: object
    ctx: object  # booking's SlotContext of a platform slot: rules, department limits, times
    rules: waitlist_rules.Rules
    cutoff: dt.datetime


async def _open_queue(session: AsyncSession, schedule_id: int, now: dt.datetime, *, need_full: bool) -> Queue:
    schedule = await scheduling_service.lock_schedule(session, schedule_id, exclusive=True)
    if schedule is None or schedule.status == "draft":
        raise NotFound("schedule")
    if schedule.status == "suspended":
        raise booking_errors.ScheduleSuspended()
    slots = await scheduling_service.list_slots(session, schedule_id, pool="platform")
    if not slots:
        raise errors.WaitlistUnavailable()
    ctx = await booking_queries.slot_context(session, slots[0].id)
    rules = await waitlist_rules.get_rules(session, schedule.hospital_id)
    if not rules.enabled or ctx.his_mode == REALTIME:
        # realtime: the HIS decides every hold, and our queue cannot hold its numbers
        raise errors.WaitlistUnavailable()
    booking_actions.check_schedule_open(ctx, now)
    cutoff = min(rules.cutoff(schedule.date, ctx.zone), ctx.closes_at)
    if now >= cutoff:
        raise errors.WaitlistClosed(cutoff=ctx.iso(cutoff), cutoff_local=ctx.local(cutoff))
    if need_full and not schedule.waitlist_waiting and await seats.free_platform_seats(session, schedule_id, now) > 0:
        raise errors.SeatsAvailable()
    return Queue(schedule=schedule, ctx=ctx, rules=rules, cutoff=cutoff)


def _check_patient(queue: Queue, patient) -> None:
    if patient is None:
        raise NotFound("patient")
    if patient.verification != "verified":  # always, whatever the hold's rule: 候补 is for real people
        raise booking_errors.PatientNotVerified()
    booking_actions.check_department(queue.ctx, patient.birth_date, patient.sex)


def _check_person(queue: Queue, *, until: dt.datetime | None, booked: bool, live: list[int]) -> None:
    """The per-person rules, on facts read under the person's lock: `until` a running
    restriction's end, `booked` a seat on this schedule, `live` the schedules of their live entries."""
    ctx = queue.ctx
    if until is not None:
        raise booking_errors.Restricted(until=ctx.iso(until), until_local=ctx.local(until))
    if booked:
        raise errors.AlreadyBooked()
    if queue.schedule.id in live:
        raise errors.AlreadyWaiting()
    if len(live) >= queue.rules.max_entries_per_person:
        raise errors.TooManyEntries(limit=queue.rules.max_entries_per_person)


def _entry_row(queue: Queue, patient, account_id: int, position: int, now: dt.datetime) -> dict:
    schedule = queue.schedule
    return dict(hospital_id=schedule.hospital_id, schedule_id=schedule.id, person_id=patient.person_id,
                patient_id=patient.id, account_id=account_id, position=position, state="waiting", offers=0,
                cutoff_at=queue.cutoff, joined_at=now, updated_at=now)


async def _live_schedules(session: AsyncSession, person_ids, hospital_id: int) -> dict[int, list[int]]:
    """{person id: schedules of their live entries at the hospital}, one statement per 1,000."""
    ids, out = sorted(set(person_ids)), {}
    for start in range(0, len(ids), 1000):
        for person_id, schedule_id in await session.execute(select(WaitlistEntry.person_id, WaitlistEntry.schedule_id)
                                                            .where(WaitlistEntry.person_id.in_(ids[start:start + 1000]),
                                                                   WaitlistEntry.hospital_id == hospital_id,
                                                                   WaitlistEntry.state.in_(LIVE_STATES))):
            out.setdefault(person_id, []).append(schedule_id)
    return out


async def _add(session: AsyncSession, queue: Queue, *, account_id: int, patient_id: int,
               now: dt.datetime) -> WaitlistEntry:
    """Append one entrant to a queue whose schedule the caller holds exclusively."""
    schedule = queue.schedule
    patient = await patients_service.get_for_account(session, account_id, patient_id)
    _check_patient(queue, patient)
    until = await booking_actions.lock_person(session, patient.person_id, hospital_id=schedule.hospital_id, now=now)
    _check_person(queue, until=until,
                  booked=await booking_queries.person_has_active_on_schedule(session, patient.person_id, schedule.id,
                                                                             now),
                  live=(await _live_schedules(session, [patient.person_id], schedule.hospital_id)).get(
                      patient.person_id, []))
    entry = WaitlistEntry(**_entry_row(queue, patient, account_id, await entries.next_position(session, schedule.id),
                                       now))
    session.add(entry)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        if ONE_LIVE_INDEX in str(exc.orig) or "waitlist_entries.person_id" in str(exc.orig):
            raise errors.AlreadyWaiting() from exc
        raise
    return entry


async def _after_joins(session: AsyncSession, queue: Queue, *, was_waiting: bool, now: dt.datetime) -> None:
    """The queue has waiters now: from here on a freed seat is theirs. Seats already free
    (a lapsed hold) are offered now; the running holds free their seats at their deadlines
    with no transaction, so the promoter is booked for each of those instants."""
    schedule = queue.schedule
    await entries.sync_flag(session, schedule.id)
    if was_waiting:
        return  # the promoter chain already follows this queue's holds
    if await seats.free_platform_seats(session, schedule.id, now) > 0:
        await promote.promote_locked(session, schedule, now)
    for deadline in await seats.hold_deadlines(session, schedule.id, now):
        await entries.promote_at(session, schedule.id, schedule.hospital_id, deadline, now)


async def do_join(session: AsyncSession, *, account_id: int, patient_id: int, schedule_id: int,
                  now: dt.datetime) -> WaitlistEntry:
    """加入候补: a verified patient joins a sold-out schedule's queue, at its end."""
    if await patients_service.get_for_account(session, account_id, patient_id) is None:
        raise NotFound("patient")  # first: another account's patient learns nothing of the schedule (I8)
    queue = await _open_queue(session, schedule_id, now, need_full=True)
    was_waiting = bool(queue.schedule.waitlist_waiting)
    entry = await _add(session, queue, account_id=account_id, patient_id=patient_id, now=now)
    await _after_joins(session, queue, was_waiting=was_waiting, now=now)
    return entry


@dataclass(frozen=True)
class RankedResult:
    account_id: int
    patient_id: int
    entry_id: int | None  # None: refused, see `code`
    code: str | None = None


async def do_join_ranked(session: AsyncSession, *, schedule_id: int, entrants: list[tuple[int, int]],
                         now: dt.datetime) -> list[RankedResult]:
    """Enqueue (account id, patient id) entrants in the given order (a draw's rank order, §2 of
    issue 13): each gets the next position, with every check of `do_join` except "sold out"
    (the draw allocated the seats just before). A refused entrant is reported and skipped;
    the others keep their relative order. One transaction, the schedule locked once.

    Set-based, for a draw's thousands of losers: the facts `_add` reads one entrant at a time
    (patient, restriction under the person's lock, a seat on the schedule, live entries) are
    read for all of them in a few statements, the persons locked in id order; the same rules
    (`_check_patient`, `_check_person`) then run in the given order, each accepted entrant
    counting as a live entry for the ones after it, and the entries go in as one insert.
    Nobody else can join this schedule meanwhile (its row is held exclusively) nor change
    these persons' entries (their rows are locked), so the answers are `_add`'s one by one."""
    queue = await _open_queue(session, schedule_id, now, need_full=False)
    schedule = queue.schedule
    was_waiting = bool(schedule.waitlist_waiting)
    found = await patients_service.live_by_id(session, [patient_id for _, patient_id in entrants])
    owned = {(a, p): found[p] for a, p in entrants if p in found and found[p].account_id == a}
    persons = {patient.person_id for patient in owned.values()}
    until = await booking_actions.lock_persons(session, persons, hospital_id=schedule.hospital_id, now=now)
    booked = await booking_queries.persons_active_on_schedule(session, schedule.id, now)
    live = await _live_schedules(session, persons, schedule.hospital_id)
    position = await entries.next_position(session, schedule.id)
    results, rows, first = [], [], position
    for account_id, patient_id in entrants:
        patient = owned.get((account_id, patient_id))
        try:
            _check_patient(queue, patient)
            _check_person(queue, until=until.get(patient.person_id), booked=patient.person_id in booked,
                          live=live.setdefault(patient.person_id, []))
        except GuahaoError as exc:
            results.append(RankedResult(account_id, patient_id, None, exc.code))
            continue
        live[patient.person_id].append(schedule.id)
        rows.append(_entry_row(queue, patient, account_id, position, now))
        results.append(RankedResult(account_id, patient_id, position))  # the position, for now
        position += 1
    if rows:  # one statement for all, then their ids by position (unique per schedule)
        await insert_many(session, WaitlistEntry.__table__, rows)
        ids = dict((await session.execute(select(WaitlistEntry.position, WaitlistEntry.id).where(
            WaitlistEntry.schedule_id == schedule.id, WaitlistEntry.position >= first))).all())
        results = [r if r.entry_id is None else RankedResult(r.account_id, r.patient_id, ids[r.entry_id])
                   for r in results]
    await _after_joins(session, queue, was_waiting=was_waiting, now=now)
    return results


async def get_for_account(session: AsyncSession, account_id: int, entry_id: int) -> WaitlistEntry:
    entry = await session.get(WaitlistEntry, entry_id)
    if entry is None or entry.account_id != account_id:
        raise NotFound("waitlist_entry")
    return entry


async def do_leave(session: AsyncSession, *, account_id: int, entry_id: int, now: dt.datetime) -> WaitlistEntry:
    """退出候补, free of charge: a waiting entry leaves; an entry with a running offer gives
    the offer up (the hold is cancelled without a strike) and the seat goes to the next."""
    found = await get_for_account(session, account_id, entry_id)
    schedule = await scheduling_service.lock_schedule(session, found.schedule_id, exclusive=True)
    entry = await session.get_one(WaitlistEntry, entry_id, populate_existing=True)
    await promote.reconcile_offers(session, schedule, now)
    if entry.state == "waiting":
        await entries.apply(session, entry, "leave", now=now, reason="left")
    elif entry.state == "offered":
        await booking_actions.do_cancel(session, account_id=entry.account_id, booking_id=entry.offer_booking_id,
                                        now=now, reason="waitlist_left", count_strike=False)
        await entries.apply(session, entry, "decline", now=now, reason="left")
        await promote.promote_locked(session, schedule, now)  # the seat is the next one's now
    else:
        raise errors.EntryEnded()
    await entries.sync_flag(session, schedule.id)
    return entry


async def live_count(session: AsyncSession, person_id: int, hospital_id: int) -> int:
    return await session.scalar(select(func.count()).select_from(WaitlistEntry).where(
        WaitlistEntry.person_id == person_id, WaitlistEntry.hospital_id == hospital_id,
        WaitlistEntry.state.in_(LIVE_STATES))) or 0
