"""Patient-side booking state changes: hold, confirm, cancel, expire.

Each `do_*` runs inside the caller's single transaction (the router's `db.begin()`), writes
its event rows and outbox rows there, and never commits itself. No network I/O happens here.
"""
from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import errors, inventory, lifecycle, notices, restrictions
from guahao.booking.context import SlotContext, load_slot_context
from guahao.booking.lifecycle import Actor
from guahao.booking.models import Booking
from guahao.core.errors import NotFound
from guahao.patients import service as patients_service
from guahao.patients.models import Person


def _age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def check_schedule_open(ctx: SlotContext, now: dt.datetime) -> None:
    if ctx.pool != "platform":
        raise errors.SlotNotBookable()
    if ctx.schedule_status == "suspended":
        raise errors.ScheduleSuspended()
    if ctx.schedule_status != "published":
        raise errors.ScheduleNotPublished()
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
    ids = [b.id for b in lapsed]
    await inventory.lock_seats_of(session, ids)
    for booking in lapsed:
        try:
            await lifecycle.apply(session, booking, "expire", actor=Actor.system(), now=now, reason="hold_deadline")
        except errors.TransitionRefused:
            continue  # someone else settled it first
        await notices.after_transition(session, booking, now=now, his_mode="local")
    await inventory.release(session, ids)


async def do_hold(session: AsyncSession, *, account_id: int, patient_id: int, slot_id: int,
                  now: dt.datetime, with_context: bool = False):
    """Take a hold (锁号) on `slot_id` for one of the account's patients.

    Checks run in the order the product promises (each with its own code); the seat claim is
    last so that its row lock is held only for the final statements before commit.
    """
    ctx = await load_slot_context(session, slot_id)
    if ctx is None:
        raise NotFound("slot")
    check_schedule_open(ctx, now)
    patient = await patients_service.get_for_account(session, account_id, patient_id)
    if patient is None:
        raise NotFound("patient")
    if ctx.rules.verification_required and patient.verification != "verified":
        raise errors.PatientNotVerified()
    check_department(ctx, patient.birth_date, patient.sex)
    if ctx.rules.record_requirement == "existing_record_required":
        # medical records (建档) come from the HIS integration; none is known yet for anyone
        raise errors.RecordRequired()
    # Serialise this person's bookings (across all accounts that hold them): lock order starts
    # here. The same statement reads the person's restriction at this hospital.
    until = await session.scalar(
        select(restrictions.active_until_subquery(hospital_id=ctx.hospital_id, now=now))
        .where(Person.id == patient.person_id).with_for_update(of=Person))
    if until is not None:
        raise errors.Restricted(until=ctx.iso(until), until_local=ctx.local(until))
    live = list(await session.scalars(
        select(Booking).where(Booking.person_id == patient.person_id, Booking.hospital_id == ctx.hospital_id,
                              Booking.state.in_(("held", "confirmed")))
    ))
    await settle_lapsed_holds(session, live, now)
    live = [b for b in live if b.state in ("held", "confirmed")]
    if ctx.rules.one_per_department_per_day and any(
        b.department_id == ctx.department_id and b.visit_date == ctx.visit_date for b in live
    ):
        raise errors.DuplicateBooking()
    if len(live) >= ctx.rules.max_live_bookings_per_person:
        raise errors.TooManyBookings(limit=ctx.rules.max_live_bookings_per_person)

    amount = ctx.registration_fee + ctx.consultation_fee
    hold_until = now + dt.timedelta(minutes=ctx.rules.hold_minutes) if amount > 0 else None
    booking = Booking(
        hospital_id=ctx.hospital_id, department_id=ctx.department_id, doctor_id=ctx.doctor_id,
        schedule_id=ctx.schedule_id, slot_id=ctx.slot_id, account_id=account_id, patient_id=patient.id,
        person_id=patient.person_id, visit_date=ctx.visit_date, visit_no=None,
        booking_code=await _new_booking_code(session, ctx.hospital_id),
        state="held" if amount > 0 else "confirmed", registration_fee=ctx.registration_fee,
        consultation_fee=ctx.consultation_fee, amount_due=amount, hold_expires_at=hold_until,
        created_at=now, updated_at=now,
    )
    session.add(booking)
    try:
        await session.flush()
    except IntegrityError as exc:  # the unique index of I3 caught a race the check above missed
        raise errors.DuplicateBooking() from exc
    lifecycle.record_creation(session, booking, actor=Actor("account", account_id), now=now)

    claimed = await inventory.claim(session, slot_id=ctx.slot_id, booking_id=booking.id, hold_until=hold_until, now=now)
    if claimed is None:
        raise errors.SlotSoldOut()
    visit_no, lapsed_id = claimed
    if lapsed_id is not None:
        lapsed = await session.get(Booking, lapsed_id)
        if lapsed is not None and lapsed.state == "held":
            await lifecycle.apply(session, lapsed, "expire", actor=Actor.system(), now=now, reason="hold_deadline")
            await notices.after_transition(session, lapsed, now=now, his_mode=ctx.his_mode)
    booking.visit_no = visit_no
    await session.flush()
    if booking.state == "confirmed":
        await notices.after_transition(session, booking, now=now, his_mode=ctx.his_mode)
    return (booking, ctx, patient) if with_context else booking


async def get_for_account(session: AsyncSession, account_id: int, booking_id: int) -> Booking:
    booking = await session.get(Booking, booking_id)
    if booking is None or booking.account_id != account_id:
        raise NotFound("booking")
    return booking


async def do_confirm(session: AsyncSession, booking_id: int, *, now: dt.datetime,
                     actor: Actor | None = None) -> Booking:
    """held -> confirmed, only while the hold is running (I4). Called when the fee is paid."""
    booking = await session.get(Booking, booking_id)
    if booking is None:
        raise NotFound("booking")
    if booking.state != "held":
        raise errors.TransitionRefused(state=booking.state, event="pay")
    # the seat row first (lock order), and only if our hold on it has not lapsed
    if not await inventory.make_permanent(session, booking.id, now):
        raise errors.HoldExpired()
    await lifecycle.apply(session, booking, "pay", actor=actor or Actor.system(), now=now)
    his_mode = (await load_slot_context(session, booking.slot_id)).his_mode
    await notices.after_transition(session, booking, now=now, his_mode=his_mode)
    return booking


async def do_cancel(session: AsyncSession, *, account_id: int, booking_id: int, now: dt.datetime,
                    reason: str | None = None) -> Booking:
    """Patient cancellation: a hold any time; a confirmed booking until the hospital's deadline."""
    booking = await get_for_account(session, account_id, booking_id)
    await inventory.lock_seats_of(session, [booking.id])
    await settle_lapsed_holds(session, [booking], now)
    if booking.state == "expired":
        return booking  # the hold lapsed on its own: what the patient wanted has happened
    ctx = await load_slot_context(session, booking.slot_id)
    was_paid = booking.state == "confirmed"
    if was_paid and now >= ctx.cancel_deadline:
        raise errors.CancelDeadlinePassed(deadline=ctx.iso(ctx.cancel_deadline),
                                          deadline_local=ctx.local(ctx.cancel_deadline))
    changes = {"strike_at": now} if was_paid else {}
    await lifecycle.apply(session, booking, "cancel", actor=Actor("account", account_id), now=now,
                          reason=reason or "patient_cancelled", **changes)
    await inventory.release(session, [booking.id])
    await notices.after_transition(session, booking, now=now, his_mode=ctx.his_mode, was_paid=was_paid)
    if was_paid:
        await restrictions.after_strike(session, person_id=booking.person_id, hospital_id=booking.hospital_id,
                                        rules=ctx.rules, now=now)
    return booking


async def do_expire_due(session: AsyncSession, *, now: dt.datetime, limit: int = 500) -> int:
    """Sweeper (housekeeping): record lapsed holds as expired. Capacity never waits for it."""
    due = list(await session.scalars(
        select(Booking).where(Booking.state == "held", Booking.hold_expires_at <= now)
        .order_by(Booking.id).limit(limit)
    ))
    await settle_lapsed_holds(session, due, now)
    return sum(1 for b in due if b.state == "expired")

