"""Confirm (hold), pay, my bookings, booking detail, cancel, QR code and calendar file.

Every action is the JSON API's own route function (booking/router.py, payments/router.py):
the hold goes through the same sold-out gate and Idempotency-Key protocol, so the confirm
page only has to keep one key per attempt in a hidden field for a double tap or a retry to
book once (DESIGN 8a, I7).
"""
from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from typing import Annotated

import segno
from fastapi import APIRouter, Path
from fastapi.responses import Response

from guahao.accounts import service as accounts_service
from guahao.booking import queries as booking_queries
from guahao.booking import reasons
from guahao.booking import router as booking_api
from guahao.booking.schemas import BookingCancel, BookingCreate
from guahao.catalog import labels
from guahao.core import idempotency
from guahao.core.deps import KeyedAccount, bearer_or_cookie
from guahao.core.errors import GuahaoError, NotFound
from guahao.patients import router as patients_api
from guahao.payments import router as payments_api
from guahao.payments.schemas import PaymentStart
from guahao.scheduling import seats
from guahao.web.format import seconds_until
from guahao.web.pages import Page, PageDep, form_of, redirect, render

router = APIRouter(include_in_schema=False)
BookingId = Annotated[int, Path(ge=1, le=2**63 - 1)]
SlotId = Annotated[int, Path(ge=1, le=2**63 - 1)]
PAY_METHODS = ("wechat", "alipay", "card")


def _state(page: Page):
    state = page.request.app.state
    return state.db, state.clock


async def _confirm_page(page: Page, slot_id: int, *, error: str | None = None, chosen: int | None = None,
                        status: int = 200, visit_reason: str | None = None):
    account = page.need_account()
    db, clock = _state(page)
    async with db.read() as session:
        ctx = await booking_queries.slot_context(session, slot_id)
        consented = reasons.CONSENT_KIND in await accounts_service.consents_of(session, account.account_id)
        # sold out (or a 候补 queue already waits): the page offers the waitlist instead
        sold_out = ctx is not None and (ctx.waitlist_waiting or not await seats.free_platform_seats(
            session, ctx.schedule_id, clock.now()))
    if ctx is None or ctx.pool != "platform":
        raise NotFound("slot")
    patients = await patients_api.list_patients(page.request, account, db, clock)
    zone = ctx.zone
    return render(page, "booking/confirm.html", status=status, ctx=ctx, slot_id=slot_id, patients=patients.items,
                  starts_at=ctx.slot_starts_at.astimezone(zone), ends_at=ctx.slot_ends_at.astimezone(zone),
                  cancel_rule=labels.cancel_deadline(ctx.rules.cancel_minutes_before_visit_day, page.locale),
                  idempotency_key=uuid.uuid4().hex, error=error, chosen=chosen, visit_reason=visit_reason,
                  reason_max=reasons.REASON_MAX, health_consented=consented, consent_version=reasons.CONSENT_VERSION,
                  sold_out=sold_out)


@router.get("/book/{slot_id}")
async def confirm(page: PageDep, slot_id: SlotId):
    return await _confirm_page(page, slot_id)


@router.post("/book/{slot_id}")
async def hold(page: PageDep, slot_id: SlotId):
    """Take the hold through the API's own route: same gate, same key protocol, same answer."""
    account = page.need_account()
    form = await form_of(page)
    request = page.request
    db, clock = _state(page)
    try:
        patient_id = int(form.get("patient_id", "0"))
    except ValueError:
        patient_id = 0
    # 病情描述 goes back into the form on a refusal (the patient's own words, on their own page)
    visit_reason = (form.get("visit_reason") or "").strip() or None
    consent = form.get("consent_health") == reasons.CONSENT_VERSION
    if patient_id <= 0:
        return await _confirm_page(page, slot_id, status=422, error=page._("Choose the patient to book for."),
                                   visit_reason=visit_reason)
    try:
        key = idempotency.validate_key(form.get("idempotency_key"))
    except GuahaoError as exc:
        return await _confirm_page(page, slot_id, status=exc.status, error=exc.message(page.locale))
    async with db.peek() as conn:  # the API's current_account_with_key, with the key from the form
        stored = await request.app.state.authenticator.resolve_token(conn, bearer_or_cookie(request) or "",
                                                                     now=clock.now(), idempotency_key=key)
    if stored is None or stored.account_id != account.account_id:
        return await _confirm_page(page, slot_id, status=401, error=page._("Please log in again."))
    caller = KeyedAccount(account, key, stored)
    try:
        await booking_api.hold_budget(request)
        if visit_reason is not None and len(visit_reason) > reasons.REASON_MAX:
            raise reasons.VisitReasonTooLong(limit=reasons.REASON_MAX)
        body = BookingCreate(slot_id=slot_id, patient_id=patient_id, visit_reason=visit_reason,
                             health_consent=consent and visit_reason is not None)
        answer = await booking_api.create_booking(request, body, caller, db, clock, page.locale, idempotency_key=key)
    except GuahaoError as exc:  # e.g. the key was reused for another patient
        return await _confirm_page(page, slot_id, status=exc.status, error=exc.message(page.locale),
                                   chosen=patient_id, visit_reason=visit_reason)
    payload = json.loads(answer.body)
    if answer.status_code >= 400:
        return await _confirm_page(page, slot_id, status=answer.status_code, chosen=patient_id,
                                   visit_reason=visit_reason,
                                   error=payload.get("detail") or page._("The request could not be completed."))
    booking_id = payload["id"]
    return redirect(page, f"/bookings/{booking_id}/pay" if payload["state"] == "held" else f"/bookings/{booking_id}")


async def _booking(page: Page, booking_id: int):
    account = page.need_account()
    db, clock = _state(page)
    return await booking_api.get_booking(booking_id, account, db, clock, page.locale)


@router.get("/bookings/{booking_id}/pay")
async def pay_page(page: PageDep, booking_id: BookingId, error: str | None = None):
    booking = await _booking(page, booking_id)
    if "pay" not in booking.allowed_actions:
        return redirect(page, f"/bookings/{booking_id}")
    _, clock = _state(page)
    return render(page, "booking/pay.html", booking=booking, methods=PAY_METHODS, error=error,
                  hold_seconds=seconds_until(booking.hold_expires_at, clock.now()))


@router.post("/bookings/{booking_id}/pay")
async def pay(page: PageDep, booking_id: BookingId):
    """Open (or resume) the payment through the API's route, then go to the provider's cashier."""
    account = page.need_account()
    form = await form_of(page)
    db, clock = _state(page)
    if form.get("method") not in PAY_METHODS:
        booking = await _booking(page, booking_id)
        return render(page, "booking/pay.html", status=422, booking=booking, methods=PAY_METHODS,
                      error=page._("Choose how to pay."),
                      hold_seconds=seconds_until(booking.hold_expires_at, clock.now()))
    try:
        answer = await payments_api.start_payment(page.request, booking_id, account, db, clock,
                                                  body=PaymentStart(method=form["method"]))
    except GuahaoError as exc:
        booking = await _booking(page, booking_id)
        if "pay" not in booking.allowed_actions:
            return redirect(page, f"/bookings/{booking_id}")
        return render(page, "booking/pay.html", status=exc.status, booking=booking, methods=PAY_METHODS,
                      error=exc.message(page.locale), hold_seconds=seconds_until(booking.hold_expires_at, clock.now()))
    return redirect(page, json.loads(answer.body)["pay_url"])


def _money(payments) -> dict[str, int]:
    refunds = [p for p in payments if getattr(p, "refund", None) is not None]
    return {"paid": sum(p.amount for p in payments if p.state in ("paid", "refunded")),
            "refunded": sum(p.refund.amount for p in refunds if p.refund.state == "succeeded"),
            "refund_pending": sum(p.refund.amount for p in refunds if p.refund.state == "pending")}


@router.get("/bookings/{booking_id}")
async def booking_detail(page: PageDep, booking_id: BookingId, cancelled: int = 0):
    account = page.need_account()
    db, clock = _state(page)
    booking = await booking_api.get_booking(booking_id, account, db, clock, page.locale)
    events = await booking_api.booking_events(booking_id, account, db)
    payments = await payments_api.list_payments(booking_id, account, db)
    fragment = page.request.headers.get("hx-request") == "true"
    return render(page, "booking/_detail.html" if fragment else "booking/detail.html", booking=booking,
                  events=events, money=_money(payments), payments=payments, cancelled=cancelled,
                  hold_seconds=seconds_until(booking.hold_expires_at, clock.now()),
                  paying=booking.state == "held" and any(p.state == "created" for p in payments))


@router.get("/bookings")
async def bookings(page: PageDep):
    account = page.need_account()
    db, clock = _state(page)
    found = await booking_api.list_bookings(account, db, clock, page.locale, state=None, limit=100, offset=0)
    return render(page, "booking/list.html", bookings=found.items)


@router.get("/bookings/{booking_id}/cancel")
async def cancel_page(page: PageDep, booking_id: BookingId):
    account = page.need_account()
    db, clock = _state(page)
    booking = await booking_api.get_booking(booking_id, account, db, clock, page.locale)
    preview = await booking_api.preview_cancellation(booking_id, account, db, clock)
    return render(page, "booking/cancel.html", booking=booking, preview=preview)


@router.post("/bookings/{booking_id}/cancel")
async def cancel(page: PageDep, booking_id: BookingId):
    account = page.need_account()
    form = await form_of(page)
    db, clock = _state(page)
    reason = (form.get("reason") or "").strip()[:200] or None
    try:
        await booking_api.cancel_booking(page.request, booking_id, account, db, clock, page.locale,
                                         body=BookingCancel(reason=reason))
    except GuahaoError as exc:
        if isinstance(exc, NotFound):
            raise
        booking = await booking_api.get_booking(booking_id, account, db, clock, page.locale)
        preview = await booking_api.preview_cancellation(booking_id, account, db, clock)
        return render(page, "booking/cancel.html", status=exc.status, booking=booking, preview=preview,
                      error=exc.message(page.locale))
    return redirect(page, f"/bookings/{booking_id}?cancelled=1")


@router.get("/bookings/{booking_id}/qr.svg")
async def booking_qr(page: PageDep, booking_id: BookingId):
    """The booking code as a QR code, for the window's scanner or a self-service machine."""
    booking = await _booking(page, booking_id)
    out = io.BytesIO()
    segno.make_qr(booking.booking_code, error="m").save(out, kind="svg", scale=6, border=2,
                                                     title=page._("Booking code %(code)s", code=booking.booking_code))
    return Response(out.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


def _ics_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _ics_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


@router.get("/bookings/{booking_id}/calendar.ics")
async def booking_ics(page: PageDep, booking_id: BookingId):
    booking = await _booking(page, booking_id)
    _, clock = _state(page)
    who = booking.doctor_name or page._("General clinic")
    summary = f"{booking.hospital_name} {booking.department_name} {who}"
    description = page._("Visit number %(no)s, booking code %(code)s", no=booking.visit_no or "-",
                         code=booking.booking_code)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//guahao//patient pages//ZH", "CALSCALE:GREGORIAN",
             "BEGIN:VEVENT", f"UID:booking-{booking.id}@guahao", f"DTSTAMP:{_ics_time(clock.now())}",
             f"DTSTART:{_ics_time(booking.starts_at)}", f"DTEND:{_ics_time(booking.ends_at)}",
             f"SUMMARY:{_ics_text(summary)}", f"LOCATION:{_ics_text(booking.hospital_name + ' ' + booking.location)}",
             f"DESCRIPTION:{_ics_text(description)}", "END:VEVENT", "END:VCALENDAR"]
    return Response("\r\n".join(lines) + "\r\n", media_type="text/calendar; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="booking-{booking.id}.ics"',
                             "Cache-Control": "no-store"})
