"""病情描述 (reason for visit): optional free text a patient gives with a booking.

It is health information, sensitive personal information under PIPL (art. 28-29): it needs
the account holder's separate health-data consent (the `health` consent the 就诊人 pages also
record for 既往病史), it is encrypted at rest (`BookingReason.text`), and it never goes to a
log, to the hold's stored Idempotency-Key answer or to a list. Who reads it: the patient on
the booking's own page, and the booking's hospital on its single-booking staff read, which is
audited; nobody else.

Cost on the hold's hot path: nothing when the patient wrote nothing (no query, no row). With
a description, one consent read (skipped when the request itself carries the consent) and the
inserts, in the hold's own transaction, so the text commits or rolls back with the booking.
"""
from __future__ import annotations

import datetime as dt
import unicodedata

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.accounts import service as accounts_service
from guahao.booking.models import BookingReason
from guahao.core import audit
from guahao.core.errors import GuahaoError

REASON_MAX = 300  # characters: a few sentences, what a registration form asks; not a record
CONSENT_KIND = "health"
CONSENT_VERSION = "2026-12"


class VisitReasonConsentRequired(GuahaoError):
    code, status = "visit_reason_consent_required", 422
    zh = "病情描述属于敏感个人信息(健康信息),需要您单独同意后才能随预约提交;也可以不填写。"
    en = ("A description of your symptoms is sensitive personal information (health data): it is sent with the "
          "booking only with your separate consent; or leave it empty.")


class VisitReasonTooLong(GuahaoError):
    code, status = "visit_reason_too_long", 422
    zh = "病情描述最多{limit}个字。"
    en = "The description may have at most {limit} characters."


def normalise(text: str | None) -> str | None:
    """Trimmed, control characters other than line breaks removed; None when empty."""
    if text is None:
        return None
    cleaned = "".join(ch for ch in text.replace("\r\n", "\n")
                      if ch == "\n" or not unicodedata.category(ch).startswith("C")).strip()
    if not cleaned:
        return None
    if len(cleaned) > REASON_MAX:
        raise VisitReasonTooLong(limit=REASON_MAX)
    return cleaned


async def check_consent(session: AsyncSession, account_id: int, *, given_now: bool) -> None:
    """Before any lock of the hold: refuse a description without the health-data consent.
    A consent given with this request is recorded by `attach`, in the same transaction."""
    if given_now:
        return
    consents = await accounts_service.consents_of(session, account_id)
    if CONSENT_KIND not in consents:
        raise VisitReasonConsentRequired()


async def attach(session: AsyncSession, *, booking_id: int, hospital_id: int, account_id: int, text: str,
                 consent_given_now: bool, now: dt.datetime) -> None:
    """Store the description with its booking (the hold's transaction; flushed at commit)."""
    if consent_given_now:
        await accounts_service.do_record_consent(session, account_id, kind=CONSENT_KIND, version=CONSENT_VERSION,
                                                 now=now)
    session.add(BookingReason(booking_id=booking_id, hospital_id=hospital_id, text=text,
                              consent_version=CONSENT_VERSION, created_at=now))


async def text_of(session: AsyncSession, booking_id: int) -> str | None:
    """The description of one booking, for its patient or its hospital (callers check which)."""
    return await session.scalar(select(BookingReason.text).where(BookingReason.booking_id == booking_id))


async def do_read_for_staff(session: AsyncSession, booking_id: int, *, hospital_id: int | None, staff_id: int,
                            now: dt.datetime) -> str | None:
    """The single-booking read of the booking's own hospital: the description, audited (who,
    when, which booking; never the text). `hospital_id` None (a platform operator) gets
    nothing: the description is for the hospital that treats the patient, not the platform."""
    if hospital_id is None:
        return None
    text = await text_of(session, booking_id)
    if text is not None:
        await audit.do_record(session, now=now, action="booking.visit_reason_read", object_type="booking",
                              object_id=booking_id, hospital_id=hospital_id, staff_id=staff_id)
    return text
