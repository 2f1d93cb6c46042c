"""Patient-side booking routes."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from guahao.booking import actions, errors, reasons, records_step
from guahao.booking.models import Booking, BookingEvent
from guahao.booking.schemas import (
    BookingCancel,
    BookingCreate,
    BookingEventRead,
    BookingPage,
    BookingRead,
    CancelPreview,
)
from guahao.booking.views import booking_read
from guahao.catalog import service as catalog_service
from guahao.core import idempotency, metrics
from guahao.core.deps import ClockDep, CurrentAccount, CurrentAccountWithKey, Db, Locale
from guahao.core.errors import PROBLEM_JSON, GuahaoError
from guahao.core.localtime import localize

router = APIRouter(prefix="/api/v1/bookings", tags=["bookings"])


def _problem_body(request: Request, exc: GuahaoError, locale: str) -> dict:
    extra = {k: v for k, v in exc.params.items() if isinstance(v, (str, int, float, bool))}
    return {"type": f"https://guahao.example/problems/{exc.code}", "title": exc.code.replace("_", " "),
            "status": exc.status, "code": exc.code, "detail": exc.message(locale), "instance": request.url.path,
            **extra}


def _replay_until(exc: GuahaoError, now: dt.datetime) -> dt.datetime:
    """How long a refusal stays the key's answer (core/idempotency.py): a short retry window,
    and never past the moment the refusal stops being true for a release."""
    if exc.status >= 500:
        return now  # nothing happened (the HIS could not be reached): a retry tries again
    until = now + idempotency.REFUSAL_REPLAY
    if exc.code == "not_yet_released" and "release_at" in exc.params:
        until = min(until, dt.datetime.fromisoformat(exc.params["release_at"]))
    return until


@router.post("", status_code=201, response_model=BookingRead,
             responses={409: {"description": "refused (problem+json with a stable code)"}})
async def create_booking(request: Request, body: BookingCreate, caller: CurrentAccountWithKey, db: Db,
                         clock: ClockDep, locale: Locale,
                         idempotency_key: Annotated[str | None, Header()] = None):
    """Take a hold (锁号) on a slot for one of your patients. Requires an Idempotency-Key header.

    Every answer is the key's answer (I7): a retry replays the first, or waits for it."""
    arrived_at = clock.now()
    account_id, key = caller.principal.account_id, caller.key
    # defaults left out: a hold without a visit reason hashes as it always has
    req_hash = idempotency.request_hash("POST", request.url.path, body.model_dump(exclude_defaults=True))
    stored = idempotency.replay_answer(caller.stored, req_hash, arrived_at)
    if stored is None:
        stored = await _hold_once(request, db, clock, account_id, key, req_hash, body, arrived_at, locale)
    status, payload = stored
    metrics.hold_answered(status, payload)
    media = PROBLEM_JSON if status >= 400 else "application/json"
    return JSONResponse(payload, status_code=status, media_type=media)


async def _hold_once(request: Request, db, clock, account_id: int, key: str, req_hash: str, body: BookingCreate,
                     arrived_at: dt.datetime, locale: str) -> tuple[int, dict]:
    """The first answer for this key.

    A slot known to be full is answered without a hold transaction, before queueing for the
    slot's lane and again after (it may have filled while we waited). That answer is still
    recorded as the key's answer (one statement), because a twin of this request may be in
    flight: if it got there first, its answer is returned instead, so a retry is never told
    "sold out" while its first request holds the seat."""
    gate = request.app.state.gate

    async def sold_out() -> tuple[int, dict]:
        exc = errors.SlotSoldOut()
        return await idempotency.record(db, account_id=account_id, key=key, req_hash=req_hash,
                                        arrived_at=arrived_at, status=exc.status,
                                        body=_problem_body(request, exc, locale),
                                        replay_until=_replay_until(exc, arrived_at))

    if await gate.known_full(body.slot_id):
        return await sold_out()
    records = request.app.state.providers.get("his_records")

    async def claim(*, record_looked_up: bool) -> tuple[int, dict]:
        async with gate.slot_lane(body.slot_id):
            if await gate.known_full(body.slot_id):
                return await sold_out()
            now = clock.now()  # after the lane wait: the rules are checked at the time of the claim

            async def work(session) -> dict:
                booking, ctx, patient = await actions.do_hold(
                    session, account_id=account_id, patient_id=body.patient_id, slot_id=body.slot_id, now=now,
                    with_context=True, records=records, record_looked_up=record_looked_up,
                    visit_reason=body.visit_reason, health_consent=body.health_consent)
                return (await booking_read(session, booking, now, ctx=ctx, patient=patient,
                                           locale=locale)).model_dump(mode="json")

            return await idempotency.run(
                db, account_id=account_id, key=key, req_hash=req_hash, arrived_at=arrived_at, work=work,
                render_error=lambda exc: _problem_body(request, exc, locale),
                replay_until=lambda exc: _replay_until(exc, now))

    try:
        status, payload = await claim(record_looked_up=False)
    except records_step.RecordLookupNeeded:
        # 建档: the hospital wants the patient's HIS record and none is cached. The hold rolled
        # back (its key claim too); ask the HIS outside any transaction and outside the slot's
        # lane, then hold again (booking/records_step.py). Only a person's first hold at such
        # a hospital comes here: every other hold pays nothing for the rule.
        try:
            await records_step.ensure_record(db, records, account_id=account_id, patient_id=body.patient_id,
                                             slot_id=body.slot_id, now=clock.now())
        except GuahaoError as exc:
            return await idempotency.record(db, account_id=account_id, key=key, req_hash=req_hash,
                                            arrived_at=arrived_at, status=exc.status,
                                            body=_problem_body(request, exc, locale),
                                            replay_until=_replay_until(exc, arrived_at))
        status, payload = await claim(record_looked_up=True)
    if payload.get("code") == "slot_sold_out":
        await gate.mark_full(body.slot_id)
    return status, payload


@router.get("", response_model=BookingPage)
async def list_bookings(account: CurrentAccount, db: Db, clock: ClockDep, locale: Locale,
                        state: Annotated[str | None, Query(max_length=20)] = None,
                        limit: Annotated[int, Query(ge=1, le=100)] = 20,
                        offset: Annotated[int, Query(ge=0)] = 0) -> BookingPage:
    now = clock.now()
    query = select(Booking).where(Booking.account_id == account.account_id)
    if state == "expired":  # includes holds that lapsed but were not swept yet
        query = query.where((Booking.state == "expired") | ((Booking.state == "held") & (Booking.hold_expires_at <= now)))
    elif state == "held":
        query = query.where(Booking.state == "held", Booking.hold_expires_at > now)
    elif state:
        query = query.where(Booking.state == state)
    async with db.read() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await session.scalars(query.order_by(Booking.id.desc()).limit(limit).offset(offset))
        items = [await booking_read(session, b, now, locale=locale) for b in rows]
    return BookingPage(items=items, total=total or 0)


@router.get("/{booking_id}", response_model=BookingRead)
async def get_booking(booking_id: int, account: CurrentAccount, db: Db, clock: ClockDep,
                      locale: Locale) -> BookingRead:
    async with db.read() as session:
        booking = await actions.get_for_account(session, account.account_id, booking_id)
        read = await booking_read(session, booking, clock.now(), locale=locale)
        read.visit_reason = await reasons.text_of(session, booking.id)
        return read


@router.get("/{booking_id}/cancel-preview", response_model=CancelPreview)
async def preview_cancellation(booking_id: int, account: CurrentAccount, db: Db, clock: ClockDep) -> CancelPreview:
    """Before cancelling: whether it is still possible, whether it counts toward the hospital's
    restriction, the strikes used and allowed, and whether this one would restrict."""
    async with db.read() as session:
        preview = await actions.cancel_preview(session, account_id=account.account_id, booking_id=booking_id,
                                               now=clock.now())
        booking = await actions.get_for_account(session, account.account_id, booking_id)
        return localize(preview, await catalog_service.zone_of(session, booking.hospital_id))


@router.get("/{booking_id}/events", response_model=list[BookingEventRead])
async def booking_events(booking_id: int, account: CurrentAccount, db: Db) -> list[BookingEventRead]:
    async with db.read() as session:
        booking = await actions.get_for_account(session, account.account_id, booking_id)
        rows = await session.scalars(select(BookingEvent).where(BookingEvent.booking_id == booking_id)
                                     .order_by(BookingEvent.id))
        events = [BookingEventRead(from_state=e.from_state, to_state=e.to_state, actor_type=e.actor_type,
                                   reason=e.reason, at=e.at) for e in rows]
        return localize(events, await catalog_service.zone_of(session, booking.hospital_id))


@router.post("/{booking_id}/cancel", response_model=BookingRead)
async def cancel_booking(request: Request, booking_id: int, account: CurrentAccount, db: Db, clock: ClockDep,
                         locale: Locale, body: BookingCancel | None = None) -> BookingRead:
    now = clock.now()
    async with db.begin() as session:
        booking = await actions.do_cancel(session, account_id=account.account_id, booking_id=booking_id, now=now,
                                          reason=body.reason if body else None)
        read = await booking_read(session, booking, now, locale=locale)
    await request.app.state.gate.forget(booking.slot_id)
    return read
