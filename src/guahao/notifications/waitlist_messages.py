"""SMS about 候补 (waitlist) entries: the offer, a skipped turn, the cutoff, a 停诊 pausing the
queue and its lifting.

Composed from the entry and its schedule as they are when the job runs; each goes to the
account holder once (dedupe key per entry, and per offer's booking or per 停诊). A pause or
resume notice that is no longer true when it would be sent (the entry stopped waiting, the
schedule changed again) is dropped."""
from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import queries as booking_queries
from guahao.core.crypto import mask_name
from guahao.notifications import templates
from guahao.notifications.delivery import Outgoing
from guahao.notifications.service import message_key, recipient
from guahao.outbox.registry import PermanentFailure
from guahao.patients import service as patients_service
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import queries as waitlist_queries

REASONS = {
    "restricted_until": ("因多次取消或爽约暂停预约", "online booking is restricted"),
    "duplicate_booking": ("当天本科室已有预约", "already booked in this department that day"),
    "too_many_bookings": ("有效预约已达上限", "too many active bookings"),
    "patient_not_verified": ("就诊人未实名认证", "the patient is not verified"),
    "department_restriction": ("不符合科室接诊条件", "the department does not see this patient"),
}


_STATUS_FOR = {"waitlist_paused": "suspended", "waitlist_resumed": "published"}


async def compose(session: AsyncSession, template: str, entry_id: int, now: dt.datetime,
                  booking_id: int | None = None, suspension: int | None = None) -> Outgoing | None:
    entry = await waitlist_queries.get(session, entry_id)
    if entry is None:
        raise PermanentFailure(f"waitlist entry {entry_id} not found")
    if template in _STATUS_FOR:
        status = (await scheduling_service.statuses(session, [entry.schedule_id])).get(entry.schedule_id)
        if entry.state != "waiting" or status != _STATUS_FOR[template]:
            return None
    if template == "waitlist_offer":
        booking = await booking_queries.get(session, booking_id) if booking_id else None
        if booking is None or booking.state != "held" or (booking.hold_expires_at or now) <= now:
            return None  # paid, given up or lapsed already: the offer is no news any more
    slots = await scheduling_service.list_slots(session, entry.schedule_id, pool="platform")
    slot = await booking_queries.slot_context(session, booking.slot_id if template == "waitlist_offer" else slots[0].id)
    to = await recipient(session, entry.account_id)
    patient = await patients_service.get_one(session, entry.patient_id)
    loc = to.locale
    values = {
        "patient": mask_name(patient.name), "hospital": slot.hospital_name, "department": slot.department_name,
        "doctor": slot.doctor_name or templates.general_clinic(loc),
        "time": templates.visit_time(slot.slot_starts_at, slot.slot_ends_at, slot.period, slot.zone, loc),
        "fees": templates.fee_text(slot.registration_fee, slot.consultation_fee, loc),
        "reason": REASONS.get(entry.reason or "", (entry.reason or "", entry.reason or ""))[1 if loc == "en" else 0],
    }
    if template == "waitlist_resumed":
        values["ahead"] = str(await waitlist_queries.ahead(session, entry.schedule_id, entry.position))
    if template == "waitlist_offer":
        values["deadline"] = templates.date_time(booking.hold_expires_at, slot.zone, loc)
        key = message_key(template, entry.id, booking.id)
    elif template in _STATUS_FOR:
        if suspension is None:
            raise PermanentFailure(f"{template} needs the 停诊's number")
        key = message_key(template, entry.id, suspension)
    else:
        key = message_key(template, entry.id)
    return Outgoing(dedupe_key=key, template=template, phone=to.phone, locale=loc,
                    params=templates.pick_params(template, values), account_id=to.account_id,
                    hospital_id=entry.hospital_id, booking_id=booking_id)
