"""Patient-side booking state changes: hold, confirm, cancel, expire.

Each `do_*` runs inside the caller's single transaction (the router's `db.begin()`), writes
its event rows and outbox rows there, and never commits itself. No network I/O happens here.
"""
from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import errors, lifecycle, notices, reasons, records_step, restrictions
from guahao.booking.context import SlotContext, load_slot_context
from guahao.booking.lifecycle import Actor
from guahao.booking.models import ACTIVE_STATES, I3_INDEX, Booking, BookingEvent
from guahao.booking.queries import BookingFacts
from guahao.booking.records_step import MedicalRecords
from guahao.booking.schemas import CancelPreview
from guahao.catalog import rules as hospital_rules
from guahao.core import metrics
from guahao.core.errors import NotFound
from guahao.patients import service as patients_service
from guahao.scheduling import seats

REALTIME = "realtime"  # catalog's his_mode in which the hospital's HIS decides every hold


def _age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def check_schedule_open(ctx: SlotContext, now: dt.datetime, *, by_draw: bool = False) -> None:
    if ctx.pool != "platform":
        raise errors.SlotNotBookable()
    if ctx.schedule_status == "suspended":
        raise errors.ScheduleSuspended()
    if ctx.schedule_status != "published":
        raise errors.ScheduleNotPublished()
    if ctx.release_mode == "draw" and not by_draw:
        raise errors.ReleaseByDraw()  # read under the schedule's share lock: the draw flips it
    if now < ctx.release_at:
        raise errors.NotYetReleased(release_at=ctx.iso(ctx.release_at), release_at_local=ctx.local(ctx.release_at))
    if now >= ctx.closes_at or now >= ctx.slot_ends_at:
        raise errors.BookingClosed()


def check_department(ctx: SlotContext, birth_date: dt.date, sex: str) -> None:
    age = _age_on(birth_date, ctx.visit_date)
    if ctx.min_age is not None and age < ctx.min_age or ctx.max_age is not None and age > ctx.max_age:
        lo, hi = ctx.min_age or 0, ctx.max_age
        rule = f"{lo}-{hi}岁患者" if hi is not None else f"{lo}岁及以上患者"
        rule_en = f"patients aged {lo}-{hi}" if hi is not None else f"patients aged {lo} and over"
        raise errors.DepartmentRestriction(rule=rule, rule_en=rule_en)
    if ctx.allowed_sex is not None and sex != ctx.allowed_sex:
        raise errors.DepartmentRestriction(rule="女性患者" if ctx.allowed_sex == "F" else "男性患者",
                                           rule_en="female patients" if ctx.allowed_sex == "F" else "male patients")


async def _new_booking_code(session: AsyncSession, hospital_id: int) -> str:
    while True:
        code = f"{secrets.randbelow(10**8):08d}"
        taken = await session.scalar(select(Booking.id).where(Booking.hospital_id == hospital_id,
                                                              Booking.booking_code == code))
        if taken is None:
            return code


async def settle_lapsed_holds(session: AsyncSession, bookings: list[Booking], now: dt.datetime) -> None:
    """Mark held bookings whose deadline passed as expired (their seats are already free to
    every query; this records the fact and frees the seat rows)."""
    lapsed = [b for b in bookings if b.state == "held" and b.hold_expires_at is not None and b.hold_expires_at <= now]
    if not lapsed:
        return
    await seats.lock_seats_of(session, [b.id for b in lapsed])
    expired = []
    for booking in lapsed:
        try:
            await lifecycle.apply(session, booking, "expire", actor=Actor.system(), now=now, reason="hold_deadline")
        except errors.TransitionRefused:
            # settled first by someone else, or paid just inside its deadline while we waited
            # for the seat lock: then the seat is the confirmed booking's and must stay taken
            continue
        expired.append(booking.id)
        metrics.count_on_commit(session, metrics.EXPIRIES)
        await notices.after_transition(session, booking, now=now, his_mode="local")
    await seats.release(session, expired)


def _is_i3_violation(exc: IntegrityError) -> bool:
    """Only the I3 index means "duplicate booking"; PostgreSQL names the index, SQLite names
    its columns (dedupe_day is in no other unique key)."""
    message = str(exc.orig)
    return I3_INDEX in message or "bookings.dedupe_day" in message


async def lock_person(session: AsyncSession, person_id: int, *, hospital_id: int, now: dt.datetime):
    """Lock a person's row (second in the lock order) and read their running restriction at
    this hospital in the same statement. Serialises the person's holds across accounts and
    every strike count (cancellation, no-show), so limits and restrictions are exact."""
    return await patients_service.lock_person(
        session, person_id,
        read=lambda person: restrictions.active_until_subquery(person, hospital_id=hospital_id, now=now))


async def lock_persons(session: AsyncSession, person_ids, *, hospital_id: int, now: dt.datetime) -> dict:
    """`lock_person` for many at once (in id order): {person id: running restriction's end or None}."""
    return await patients_service.lock_persons(
        session, person_ids,
        read=lambda person: restrictions.active_until_subquery(person, hospital_id=hospital_id, now=now))


async def do_hold(session: AsyncSession, *, account_id: int, patient_id: int, slot_id: int,
                  now: dt.datetime, with_context: bool = False, records: MedicalRecords | None = None,
                  record_looked_up: bool = False, visit_reason: str | None = None, health_consent: bool = False,
                  offer_until: dt.datetime | None = None, by_draw: bool = False):
    """Take a hold (锁号) on `slot_id` for one of the account's patients, with the patient's
    optional 病情描述 (`visit_reason`, booking/reasons.py: needs the health-data consent).
    `by_draw`: the draw (guahao.draw) allocating a winner's seat on a schedule released by
    draw, which refuses every other hold until the draw is done; every other rule applies.

    Locks in the order schedule (shared) → person → seat: the schedule's status is read under
    its share lock so a 停诊 cannot interleave (it takes the row exclusively); the person lock
    makes the per-person checks exact; the seat claim is last so that its row lock is held
    only for the final statements before commit.

    `offer_until`: the hold is the waitlist's offer (候补) to its queue head, with that pay
    deadline; every rule applies as to any hold, but a waiting queue does not refuse it. An
    open hold finds the schedule sold out while anyone waits (here, and in the seat claim
    itself, which the database evaluates under the schedule's share lock).
    """
    ctx = await load_slot_context(session, slot_id, lock_schedule=True)
    if ctx is None:
        raise NotFound("slot")
    check_schedule_open(ctx, now, by_draw=by_draw)
    if ctx.waitlist_waiting and offer_until is None:
        raise errors.SlotSoldOut()  # freed seats belong to the 候补 queue
    patient = await patients_service.get_for_account(session, account_id, patient_id)
    if patient is None:
        raise NotFound("patient")
    if ctx.rules.verification_required and patient.verification != "verified":
        raise errors.PatientNotVerified()
    check_department(ctx, patient.birth_date, patient.sex)
    visit_reason = reasons.normalise(visit_reason)
    if visit_reason is not None:  # a hold without one asks nothing more of the database
        await reasons.check_consent(session, account_id, given_now=health_consent)
    # 建档: read from the record cache; a miss the HIS must answer ends this transaction with
    # RecordLookupNeeded, and the caller asks the HIS outside it, then holds again
    his_patient_id = await records_step.cached_record(
        session, records, record_requirement=ctx.rules.record_requirement, person_id=patient.person_id,
        hospital_id=ctx.hospital_id, looked_up=record_looked_up, patient_id=patient.id)
    until = await lock_person(session, patient.person_id, hospital_id=ctx.hospital_id, now=now)
    if until is not None:
        raise errors.Restricted(until=ctx.iso(until), until_local=ctx.local(until))
    active = list(await session.scalars(
        select(Booking).where(Booking.person_id == patient.person_id, Booking.hospital_id == ctx.hospital_id,
                              Booking.state.in_(ACTIVE_STATES))
    ))
    await settle_lapsed_holds(session, active, now)
    active = [b for b in active if b.state in ACTIVE_STATES]
    if ctx.rules.one_per_department_per_day and any(
        b.department_id == ctx.department_id and b.visit_date == ctx.visit_date for b in active
    ):
        raise errors.DuplicateBooking()
    if len(active) >= ctx.rules.max_live_bookings_per_person:
        raise errors.TooManyBookings(limit=ctx.rules.max_live_bookings_per_person)

    amount = ctx.registration_fee + ctx.consultation_fee
    # realtime: the HIS decides, so the booking starts as an attempt (held, his_state pending)
    # even when it is free; booking/his_hold.py records the HIS's answer after this commits
    realtime = ctx.his_mode == REALTIME
    if realtime and ctx.his_band_id is None:
        raise errors.SlotNotBookable()  # a slot the HIS does not know cannot be locked there
    hold_until = now + dt.timedelta(minutes=ctx.rules.hold_minutes) if amount > 0 or realtime else None
    if offer_until is not None and hold_until is not None:
        hold_until = offer_until
    booking = Booking(
        hospital_id=ctx.hospital_id, department_id=ctx.department_id, doctor_id=ctx.doctor_id,
        schedule_id=ctx.schedule_id, slot_id=ctx.slot_id, account_id=account_id, patient_id=patient.id,
        person_id=patient.person_id, visit_date=ctx.visit_date, visit_no=None,
        dedupe_day=ctx.visit_date if ctx.rules.one_per_department_per_day else None,
        cancel_deadline=ctx.cancel_deadline,  # kept: later rule edits do not move it
        strike_cancellations=ctx.rules.strike_cancellations,  # kept too
        booking_code=await _new_booking_code(session, ctx.hospital_id),
        state="held" if hold_until is not None else "confirmed", registration_fee=ctx.registration_fee,
        consultation_fee=ctx.consultation_fee, amount_due=amount, hold_expires_at=hold_until,
        created_at=now, updated_at=now, his_patient_id=his_patient_id, his_state="pending" if realtime else None,
    )
    session.add(booking)
    try:
        await session.flush()
    except IntegrityError as exc:
        if _is_i3_violation(exc):  # the I3 index caught what the check above could not see
            raise errors.DuplicateBooking() from exc
        raise
    lifecycle.record_creation(session, booking, actor=Actor("account", account_id), now=now)
    if visit_reason is not None:
        await reasons.attach(session, booking_id=booking.id, hospital_id=ctx.hospital_id, account_id=account_id,
                             text=visit_reason, consent_given_now=health_consent, now=now)

    claimed = await seats.claim(session, slot_id=ctx.slot_id, booking_id=booking.id, hold_until=hold_until, now=now,
                                respect_waitlist=offer_until is None)
    if claimed is None:
        raise errors.SlotSoldOut()
    visit_no, lapsed_id = claimed
    if lapsed_id is not None:
        lapsed = await session.get(Booking, lapsed_id)
        if lapsed is not None and lapsed.state == "held":
            await lifecycle.apply(session, lapsed, "expire", actor=Actor.system(), now=now, reason="hold_deadline")
            metrics.count_on_commit(session, metrics.EXPIRIES)
            await notices.after_transition(session, lapsed, now=now, his_mode=ctx.his_mode)
    booking.visit_no = visit_no
    await session.flush()
    if booking.state == "confirmed":
        metrics.count_on_commit(session, metrics.CONFIRMATIONS)  # free registration: no payment to wait for
        await notices.after_transition(session, booking, now=now, his_mode=ctx.his_mode)
    return (booking, ctx, patient) if with_context else booking


async def get_for_account(session: AsyncSession, account_id: int, booking_id: int) -> Booking:
    booking = await session.get(Booking, booking_id)
    if booking is None or booking.account_id != account_id:
        raise NotFound("booking")
    return booking


async def lock_for_payment(session: AsyncSession, booking_id: int) -> None:
    """Take the locks a confirmation of this booking needs (schedule shared, then its seat)
    before the caller locks a payment row: payment comes last in the lock order (DESIGN.md
    section 5), so a confirmation and a 停诊 or a second notification can never wait on each
    other in a circle. `do_confirm` takes them again in the same transaction (a no-op)."""
    found = await session.get(Booking, booking_id)
    if found is None:
        return
    await load_slot_context(session, found.slot_id, lock_schedule=True)
    await seats.lock_seats_of(session, [booking_id])


async def lock_for_new_payment(session: AsyncSession, booking_id: int) -> BookingFacts | None:
    """Lock the booking's row alone and return it as it is now (None when there is none).
    Serialises two requests to open a payment for one booking; nothing else is locked, so
    the lock order is untouched (payment rows come after it)."""
    row = await session.scalar(select(Booking).where(Booking.id == booking_id).with_for_update())
    return None if row is None else BookingFacts.of(row)


async def do_confirm(session: AsyncSession, booking_id: int, *, now: dt.datetime,
                     actor: Actor | None = None) -> Booking:
    """held -> confirmed, only while the hold is running (I4) and the schedule is not
    suspended. Called when the fee is paid; a refusal makes the payment layer refund.

    Locks: the schedule shared (a 停诊 either finished before us, and we see it, or waits for
    us and then revokes what we confirmed), then the seat, then the booking row."""
    found = await session.get(Booking, booking_id)
    if found is None:
        raise NotFound("booking")
    ctx = await load_slot_context(session, found.slot_id, lock_schedule=True)
    booking = await session.get_one(Booking, booking_id, populate_existing=True)  # re-read after the lock
    if booking.state != "held" or booking.his_state == "pending":
        # pending: a realtime attempt the HIS has not answered yet is not a hold to pay for
        raise errors.TransitionRefused(state=booking.state, event="pay")
    if ctx.schedule_status == "suspended":
        raise errors.ScheduleSuspended()
    if not await seats.make_permanent(session, booking.id, now):
        raise errors.HoldExpired()
    await lifecycle.apply(session, booking, "pay", actor=actor or Actor.system(), now=now)
    metrics.count_on_commit(session, metrics.CONFIRMATIONS)
    await notices.after_transition(session, booking, now=now, his_mode=ctx.his_mode)
    return booking


async def do_cancel(session: AsyncSession, *, account_id: int, booking_id: int, now: dt.datetime,
                    reason: str | None = None, count_strike: bool = True) -> Booking:
    """Patient cancellation: a hold any time; a confirmed booking until its deadline (the one
    it was made under). Whether it is a strike follows the hospital's strike_cancellations.

    Locks: schedule (shared), person (the strike count), seat, booking; state re-read after."""
    found = await get_for_account(session, account_id, booking_id)
    ctx = await load_slot_context(session, found.slot_id, lock_schedule=True)
    await lock_person(session, found.person_id, hospital_id=found.hospital_id, now=now)
    await seats.lock_seats_of(session, [found.id])
    booking = await session.get_one(Booking, booking_id, populate_existing=True)
    await settle_lapsed_holds(session, [booking], now)
    if booking.state == "expired":
        return booking  # the hold lapsed on its own: what the patient wanted has happened
    was_paid = booking.state == "confirmed"
    deadline = ctx.deadline_of(booking)
    if was_paid and now >= deadline:
        raise errors.CancelDeadlinePassed(deadline=ctx.iso(deadline), deadline_local=ctx.local(deadline))
    # count_strike False: the waitlist's offer declined by leaving the queue (leaving is free)
    strike = count_strike and booking.state in ACTIVE_STATES and ctx.rules.cancellation_strikes(was_paid=was_paid,
                                                                                      kept=booking.strike_cancellations)
    await lifecycle.apply(session, booking, "cancel", actor=Actor("account", account_id), now=now,
                          reason=reason or "patient_cancelled", **({"strike_at": now} if strike else {}))
    await seats.release(session, [booking.id])
    await notices.after_transition(session, booking, now=now, his_mode=ctx.his_mode, was_paid=was_paid)
    if ctx.waitlist_waiting:
        await notices.seat_freed(session, booking, now=now)
    if strike:
        await restrictions.after_strike(session, person_id=booking.person_id, hospital_id=booking.hospital_id,
                                        rules=ctx.rules, now=now)
    return booking


async def cancel_preview(session: AsyncSession, *, account_id: int, booking_id: int,
                         now: dt.datetime) -> CancelPreview:
    """The remaining allowance before a patient cancels: a read, no lock (the cancellation
    itself counts again under the person lock)."""
    booking = await get_for_account(session, account_id, booking_id)
    ctx = await load_slot_context(session, booking.slot_id)
    rules, deadline = ctx.rules, ctx.deadline_of(booking)
    state = "expired" if (booking.state == "held" and booking.hold_expires_at is not None
                          and booking.hold_expires_at <= now) else booking.state
    can_cancel = state == "held" or (state == "confirmed" and now < deadline)
    counts = can_cancel and rules.cancellation_strikes(was_paid=state == "confirmed",
                                                            kept=booking.strike_cancellations)
    used = await restrictions.strikes_counted(session, person_id=booking.person_id,
                                              hospital_id=booking.hospital_id, rules=rules, now=now)
    restricted = await restrictions.active_until(session, person_id=booking.person_id,
                                                 hospital_id=booking.hospital_id, now=now) is not None
    return CancelPreview(booking_id=booking.id, can_cancel=can_cancel, cancel_deadline=deadline,
                         counts_as_strike=counts, strikes_used=used, strikes_allowed=rules.restriction_threshold,
                         window_days=rules.restriction_window_days,
                         restriction_if_cancelled=counts and not restricted and used + 1 >= rules.restriction_threshold,
                         restriction_days=rules.restriction_days)


async def do_expire_due(session: AsyncSession, *, now: dt.datetime, limit: int = 500) -> int:
    """Sweeper (housekeeping): record lapsed holds as expired. Capacity never waits for it."""
    due = list(await session.scalars(
        select(Booking).where(Booking.state == "held", Booking.hold_expires_at <= now)
        .order_by(Booking.id).limit(limit)
    ))
    await settle_lapsed_holds(session, due, now)
    return sum(1 for b in due if b.state == "expired")



async def do_record_strike(session: AsyncSession, *, booking_id: int, now: dt.datetime, reason: str) -> bool:
    """Count an ended booking as a strike toward the restriction (the waitlist's rule that a
    lapsed offer counts). Locks the person (the caller holds the schedule first, if at all);
    a booking already counted is left alone. Returns whether it was counted now."""
    found = await session.get(Booking, booking_id)
    if found is None:
        raise NotFound("booking")
    await lock_person(session, found.person_id, hospital_id=found.hospital_id, now=now)
    counted = await session.execute(
        update(Booking).where(Booking.id == booking_id, Booking.strike_at.is_(None))
        .values(strike_at=now, updated_at=now).execution_options(synchronize_session=False))
    if counted.rowcount != 1:
        return False
    session.add(BookingEvent(booking_id=found.id, hospital_id=found.hospital_id, from_state=found.state,
                             to_state=found.state, actor_type="system", reason=reason, at=now))
    rules = await hospital_rules.get_rules(session, found.hospital_id)
    await restrictions.after_strike(session, person_id=found.person_id, hospital_id=found.hospital_id,
                                    rules=rules, now=now)
    return True
