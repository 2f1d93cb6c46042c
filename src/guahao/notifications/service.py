"""What to send, to whom, in which language; and the scans that schedule messages nobody's
state change writes (hold about to expire, the day-before reminder).

Reads only: messages are composed from the booking as it is when the job runs, so a retry
tells the same story, and a message that stopped being true (a reminder for a booking
cancelled since, a hold warning after payment) is dropped instead of sent.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.accounts import service as accounts_service
from guahao.booking import queries as booking_queries
from guahao.booking.queries import BookingFacts, SlotContext
from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.core.crypto import mask_name
from guahao.core.db import delete_oldest
from guahao.notifications import templates
from guahao.notifications.delivery import Outgoing
from guahao.notifications.models import SentMessage
from guahao.outbox import service as outbox
from guahao.outbox.registry import PermanentFailure, RetryLater
from guahao.patients import service as patients_service

# Under the hospital rule `use_his_visit_no` the confirmation SMS carries the HIS's visit
# number, which the write-back records shortly after the confirmation. The SMS waits for it
# (retried every HIS_VISIT_NO_RETRY, not counted as failures) at most HIS_VISIT_NO_WAIT after
# the confirmation; past that (the HIS down, or it refused) it goes out saying the hospital
# will give the number, rather than keep the patient without any confirmation.
HIS_VISIT_NO_WAIT = dt.timedelta(minutes=10)
HIS_VISIT_NO_RETRY = dt.timedelta(seconds=20)
HIS_VISIT_NO_PENDING = {"zh-CN": "以医院通知为准", "en": "to be given by the hospital"}
# a hold warning goes out at the first scan (every minute) that finds the deadline this close
HOLD_WARNING_BEFORE = dt.timedelta(minutes=3)
BOOKING_TEMPLATES = ("booking_confirmed", "booking_cancelled", "booking_expired", "booking_revoked",
                     "hold_expiring", "reminder", "payment_late_refunded")


@dataclass(frozen=True)
class Recipient:
    account_id: int
    phone: str
    locale: str


async def recipient(session: AsyncSession, account_id: int) -> Recipient:
    """The account holder: the person who booked, paid and can cancel or rebook; their number
    is proven by the SMS login code and they chose the language. Every message goes to them."""
    account = await accounts_service.get(session, account_id)
    if account is None:
        raise PermanentFailure(f"account {account_id} not found")
    return Recipient(account.id, account.phone, "en" if account.locale == "en" else "zh-CN")


# --- booking messages --------------------------------------------------------------------------

def message_key(template: str, subject_id: int, *more: int) -> str:
    return ":".join([template, str(subject_id), *map(str, more)])


def _still_true(template: str, booking: BookingFacts, slot: SlotContext, now: dt.datetime) -> bool:
    if template == "booking_confirmed":
        return booking.state == "confirmed"
    if template == "hold_expiring":
        return booking.state == "held" and booking.hold_expires_at is not None and booking.hold_expires_at > now
    if template == "reminder":  # says "tomorrow": only on the day before, hospital time
        return booking.state == "confirmed" and now.astimezone(slot.zone).date() + dt.timedelta(days=1) == booking.visit_date
    return True  # cancelled / expired / revoked / late refund: final facts


async def _was_paid(session: AsyncSession, booking: BookingFacts) -> bool:
    """Did the booking enter its current (cancelled / revoked) state from `confirmed` with a fee?"""
    from_state = await booking_queries.entered_current_state_from(session, booking)
    return from_state == "confirmed" and booking.amount_due > 0


# Templates the patient's own phone gets as well (hospital rule `sms_to_patient_phone`): the
# 就诊人 goes to the visit and must know of it, its code and its cancellation. The payment
# prompt is not among them: only the account holder can pay.
PATIENT_TEMPLATES = frozenset(BOOKING_TEMPLATES) - {"hold_expiring"}


def patient_message_key(template: str, booking_id: int) -> str:
    return message_key(template, booking_id) + ":patient"


async def compose_booking_messages(session: AsyncSession, template: str, booking_id: int,
                                   now: dt.datetime) -> list[Outgoing]:
    """The message `template` about a booking, one per recipient: the account holder, and the
    patient's own number when the hospital wants it and it is another number (the same
    number gets one message, not two). Empty when it is no longer worth sending."""
    message = await compose_booking_message(session, template, booking_id, now)
    if message is None:
        return []
    messages = [message]
    if template in PATIENT_TEMPLATES:
        booking = await booking_queries.get_or_raise(session, booking_id)
        patient = await patients_service.get_one(session, booking.patient_id)
        rules = await hospital_rules.get_rules(session, booking.hospital_id)
        if rules.sms_to_patient_phone and patient.phone and patient.phone != message.phone:
            # the account holder's language: the patient entry records none of its own
            messages.append(dataclasses.replace(message, dedupe_key=patient_message_key(template, booking_id),
                                                phone=patient.phone))
    return messages


async def compose_booking_message(session: AsyncSession, template: str, booking_id: int,
                                  now: dt.datetime) -> Outgoing | None:
    """The account holder's message `template` about a booking, or None when it is no longer
    worth sending."""
    if template not in BOOKING_TEMPLATES:
        raise PermanentFailure(f"not a booking template: {template}")
    booking = await booking_queries.get(session, booking_id)
    if booking is None:
        raise PermanentFailure(f"booking {booking_id} not found")
    slot = await booking_queries.slot_context(session, booking.slot_id)
    if not _still_true(template, booking, slot, now):
        return None
    to = await recipient(session, booking.account_id)
    patient = await patients_service.get_one(session, booking.patient_id)
    loc = to.locale
    wording = template
    if template == "booking_confirmed" and slot.rules.record_requirement == "create_at_hospital":
        wording = "booking_confirmed_register"  # an approved text of its own at the gateway
    values = {
        "patient": mask_name(patient.name), "hospital": slot.hospital_name, "department": slot.department_name,
        "doctor": slot.doctor_name or templates.general_clinic(loc),
        "time": templates.visit_time(slot.slot_starts_at, slot.slot_ends_at, slot.period, slot.zone, loc),
        "visit_no": str(booking.visit_no or ""), "code": booking.booking_code,
        "location": slot.department_location or templates.default_location(loc),
        "fees": templates.fee_text(booking.registration_fee, booking.consultation_fee, loc),
    }
    if slot.rules.use_his_visit_no and slot.his_mode != "local":
        values["visit_no"] = await _his_visit_no(session, template, booking, now, loc)
    if booking.hold_expires_at is not None:
        values["deadline"] = templates.clock_time(booking.hold_expires_at, slot.zone)
    if template in ("booking_cancelled", "booking_revoked"):
        values["refund"] = templates.refund_status(await _was_paid(session, booking), loc, values["fees"])
    return Outgoing(dedupe_key=message_key(template, booking.id), template=wording, phone=to.phone, locale=loc,
                    params=templates.pick_params(wording, values), account_id=to.account_id,
                    hospital_id=booking.hospital_id, booking_id=booking.id)


async def _his_visit_no(session: AsyncSession, template: str, booking: BookingFacts, now: dt.datetime,
                        locale: str) -> str:
    if booking.his_visit_no is not None:
        return str(booking.his_visit_no)
    if template == "booking_confirmed":
        since = await booking_queries.entered_current_state_at(session, booking)
        if since is not None and now - since < HIS_VISIT_NO_WAIT:
            raise RetryLater("waiting for the HIS visit number", delay=HIS_VISIT_NO_RETRY, count_attempt=False)
    return HIS_VISIT_NO_PENDING.get(locale, HIS_VISIT_NO_PENDING["zh-CN"])


# --- restriction messages ------------------------------------------------------------------------

async def compose_restriction_messages(session: AsyncSession, restriction_id: int) -> list[Outgoing]:
    """One message per account whose bookings of this person earned the strikes.

    A restriction belongs to a person, who may be a patient of several accounts; those who
    cancelled or missed the visits are the ones to tell (each with their own patient entry
    and language). Another account holding the same person learns it when booking.
    """
    restriction = await booking_queries.get_restriction(session, restriction_id)
    if restriction is None:
        raise PermanentFailure(f"restriction {restriction_id} not found")
    if restriction.lifted_at is not None:
        return []  # lifted by staff before we got to it
    rules = await hospital_rules.get_rules(session, restriction.hospital_id)
    since = restriction.starts_at - dt.timedelta(days=rules.restriction_window_days)
    rows = await booking_queries.strike_bookers(session, person_id=restriction.person_id,
                                               hospital_id=restriction.hospital_id, after=since,
                                               until=restriction.starts_at)
    latest_patient: dict[int, int] = {}
    for account_id, patient_id in rows:
        latest_patient.setdefault(account_id, patient_id)
    hospital = await catalog_service.get_hospital_or_raise(session, restriction.hospital_id, include_inactive=True)
    hospital_name, zone = hospital.name, catalog_service.hospital_zone(hospital)
    messages = []
    for account_id, patient_id in sorted(latest_patient.items()):
        to = await recipient(session, account_id)
        patient = await patients_service.get_one(session, patient_id)
        values = {"patient": mask_name(patient.name), "hospital": hospital_name,
                  "until": templates.date_time(restriction.until, zone, to.locale)}
        messages.append(Outgoing(
            dedupe_key=message_key("restriction_applied", restriction.id, account_id), template="restriction_applied",
            phone=to.phone, locale=to.locale, params=templates.pick_params("restriction_applied", values),
            account_id=account_id, hospital_id=restriction.hospital_id))
    return messages


# --- scans -------------------------------------------------------------------------------------

async def _not_enqueued_rows(session: AsyncSession, topic: str, bookings: Select, limit: int):
    """(booking id, hospital id) rows of `bookings` with no outbox row `<topic>:<booking id>`
    yet, at most `limit`: one statement, so rows enqueued already never use up the limit."""
    query = bookings.where(outbox.not_enqueued(topic, bookings.selected_columns.id)).limit(limit)
    return (await session.execute(query)).all()


async def _enqueue_each(session: AsyncSession, topic: str, rows, now: dt.datetime) -> int:
    """Rows found; a row a concurrent scan enqueued first is skipped by the dedupe key."""
    for booking_id, hospital_id in rows:
        await outbox.enqueue_once(session, topic=topic, dedupe_key=f"{topic}:{booking_id}",
                                  payload={"booking_id": booking_id, "hospital_id": hospital_id}, now=now,
                                  hospital_id=hospital_id)
    return len(rows)


async def enqueue_hold_warnings(session: AsyncSession, *, now: dt.datetime, limit: int = 500) -> int:
    """`notify.hold_expiring` for each running hold whose deadline is within the warning
    window; at most one per booking ever (dedupe key `notify.hold_expiring:<booking id>`)."""
    topic = "notify.hold_expiring"
    holds = booking_queries.select_holds_ending(after=now, until=now + HOLD_WARNING_BEFORE)
    rows = await _not_enqueued_rows(session, topic, holds, limit)
    return await _enqueue_each(session, topic, rows, now)


async def reminder_days(session: AsyncSession, now: dt.datetime) -> dict[dt.date, list[int]]:
    """Visit date -> hospitals whose reminder time has passed today in their own zone
    (their reminders are for tomorrow's visits, local date)."""
    due: dict[dt.date, list[int]] = defaultdict(list)
    for rules in await hospital_rules.list_rules(session):  # hospitals without a rules row too
        local = now.astimezone(rules.tz)
        if local.time() >= rules.reminder_time:
            due[local.date() + dt.timedelta(days=1)].append(rules.hospital_id)
    return due


async def enqueue_reminders(session: AsyncSession, *, now: dt.datetime, limit: int = 500) -> int:
    """`notify.reminder` for each confirmed booking of tomorrow at hospitals past their
    reminder time; one per booking (dedupe key `notify.reminder:<booking id>`). A booking
    made after the reminder time for tomorrow gets its reminder at the next scan."""
    topic = "notify.reminder"
    due = await reminder_days(session, now)
    if not due:
        return 0
    rows = await _not_enqueued_rows(session, topic, booking_queries.select_confirmed_on(due), limit)
    return await _enqueue_each(session, topic, rows, now)


async def purge_sent(session: AsyncSession, *, before: dt.datetime, limit: int) -> int:
    """Retention: the SMS log (what was sent once per dedupe key) last touched before `before`."""
    return await delete_oldest(session, SentMessage, SentMessage.updated_at < before, limit=limit)
