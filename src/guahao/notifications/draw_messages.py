"""The draw's result messages (摇号结果): one per entry, composed when the job runs."""
from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import queries as booking_queries
from guahao.core.crypto import mask_name
from guahao.draw import queries as draw_queries
from guahao.notifications import templates
from guahao.notifications.delivery import Outgoing
from guahao.notifications.service import message_key, recipient
from guahao.outbox.registry import PermanentFailure
from guahao.patients import service as patients_service

# a skipped winner's refusal, in words (the codes are booking's stable refusal codes)
REASONS = {
    "restricted_until": ("因多次取消或爽约暂停线上预约", "online booking is suspended after repeated cancellations"),
    "duplicate_booking": ("当天在本科室已有预约", "already booked in this department that day"),
    "too_many_bookings": ("有效预约已达上限", "the limit of active bookings is reached"),
    "patient_not_verified": ("就诊人未完成实名认证", "the patient is not verified"),
    "department_restriction": ("不符合科室的接诊条件", "the department does not see this patient"),
    "record_required": ("未在医院建档", "no medical record at the hospital"),
    "patient_removed": ("就诊人已删除", "the patient was removed"),
}


def reason_text(code: str | None, locale: str) -> str:
    zh, en = REASONS.get(code or "", ("不符合预约规则", "a booking rule"))
    return en if locale == "en" else zh


async def compose_draw_result(session: AsyncSession, entry_id: int, now: dt.datetime) -> list[Outgoing]:
    facts = await draw_queries.result_facts(session, entry_id)
    if facts is None:
        raise PermanentFailure(f"draw entry {entry_id} not found")
    if facts.outcome is None:
        return []
    template = {"won": "draw_won", "lost": "draw_not_won", "skipped": "draw_skipped"}[facts.outcome]
    slot_id = facts.slot_id
    booking = None
    if facts.booking_id is not None:
        booking = await booking_queries.get(session, facts.booking_id)
        slot_id = booking.slot_id if booking is not None else slot_id
    slot = await booking_queries.slot_context(session, slot_id)
    to = await recipient(session, facts.account_id)
    patient = await patients_service.get_one(session, facts.patient_id)
    loc = to.locale
    starts, ends = (slot.slot_starts_at, slot.slot_ends_at) if booking is not None else (slot.starts_at, slot.ends_at)
    values = {"patient": mask_name(patient.name), "hospital": slot.hospital_name, "department": slot.department_name,
              "doctor": slot.doctor_name or templates.general_clinic(loc),
              "time": templates.visit_time(starts, ends, slot.period, slot.zone, loc),
              "reason": reason_text(facts.reason, loc)}
    if template == "draw_won":
        if booking is None or booking.state != "held" or booking.hold_expires_at is None:
            return []  # paid, lapsed or free: the booking's own messages tell the story
        values["deadline"] = templates.clock_time(booking.hold_expires_at, slot.zone)
    return [Outgoing(dedupe_key=message_key(template, entry_id), template=template, phone=to.phone, locale=loc,
                     params=templates.pick_params(template, values), account_id=to.account_id,
                     hospital_id=facts.hospital_id, booking_id=facts.booking_id)]
