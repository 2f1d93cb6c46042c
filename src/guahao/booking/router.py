"""Patient-side booking routes."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from guahao.booking import actions, errors
from guahao.core import idempotency
from guahao.booking.models import Booking, BookingEvent
from guahao.booking.schemas import BookingCancel, BookingCreate, BookingEventRead, BookingPage, BookingRead
from guahao.booking.views import booking_read
from guahao.catalog import service as catalog_service
from guahao.core.deps import ClockDep, CurrentAccount, Db, Locale
from guahao.core.errors import GuahaoError, PROBLEM_JSON
from guahao.core.localtime import localize

router = APIRouter(prefix="/api/v1/bookings", tags=["bookings"])


def _problem_body(request: Request, exc: GuahaoError, locale: str) -> dict:
    extra = {k: v for k, v in exc.params.items() if isinstance(v, (str, int, float, bool))}
    return {"type": f"https://guahao.example/problems/{exc.code}", "title": exc.code.replace("_", " "),
            "status": exc.status, "code": exc.code, "detail": exc.message(locale), "instance": request.url.path,
            **extra}


@router.post("", status_code=201, response_model=BookingRead,
             responses={409: {"description": "refused (problem+json with a stable code)"}})
async def create_booking(request: Request, body: BookingCreate, account: CurrentAccount, db: Db, clock: ClockDep,
                         locale: Locale, idempotency_key: Annotated[str | None, Header()] = None):
    """Take a hold (锁号) on a slot for one of your patients. Requires an Idempotency-Key header."""
    key = idempotency.validate_key(idempotency_key)
    gate = request.app.state.gate
    now = clock.now()
    req_hash = idempotency.request_hash("POST", request.url.path, body.model_dump())
    stored = await idempotency.lookup(db, account.account_id, key, req_hash,
                                      prefetched=getattr(request.state, "idempotency_prefetch", None))
    if stored is None:
        stored = await _hold_once(request, db, gate, account.account_id, key, req_hash, body, now, locale)
    status, payload = stored
    media = PROBLEM_JSON if status >= 400 else "application/json"
    return JSONResponse(payload, status_code=status, media_type=media)


async def _hold_once(request: Request, db, gate, account_id: int, key: str, req_hash: str, body: BookingCreate,
                     now, locale: str) -> tuple[int, dict]:
    """The first answer for this key. A slot known to be full is answered without a database
    transaction, before queueing for the slot's lane and again after (the slot may have
    filled while we waited); such answers are not stored, nothing was booked."""
    sold_out = errors.SlotSoldOut()
    if await gate.known_full(body.slot_id):
        return sold_out.status, _problem_body(request, sold_out, locale)

    async def work(session) -> dict:
        booking, ctx, patient = await actions.do_hold(session, account_id=account_id, patient_id=body.patient_id,
                                                      slot_id=body.slot_id, now=now, with_context=True)
        return (await booking_read(session, booking, now, ctx=ctx, patient=patient)).model_dump(mode="json")

    async with gate.slot_lane(body.slot_id):
        if await gate.known_full(body.slot_id):
            return sold_out.status, _problem_body(request, sold_out, locale)
        status, payload = await idempotency.run(
            db, account_id=account_id, key=key, req_hash=req_hash, now=now, work=work,
            render_error=lambda exc: _problem_body(request, exc, locale),
            remember_refusal=lambda exc: exc.code != "slot_sold_out")
    if payload.get("code") == "slot_sold_out":
        await gate.mark_full(body.slot_id)
    return status, payload


@router.get("", response_model=BookingPage)
async def list_bookings(account: CurrentAccount, db: Db, clock: ClockDep,
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
        items = [await booking_read(session, b, now) for b in rows]
    return BookingPage(items=items, total=total or 0)


@router.get("/{booking_id}", response_model=BookingRead)
async def get_booking(booking_id: int, account: CurrentAccount, db: Db, clock: ClockDep) -> BookingRead:
    async with db.read() as session:
        booking = await actions.get_for_account(session, account.account_id, booking_id)
        return await booking_read(session, booking, clock.now())


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
                         body: BookingCancel | None = None) -> BookingRead:
    now = clock.now()
    async with db.begin() as session:
        booking = await actions.do_cancel(session, account_id=account.account_id, booking_id=booking_id, now=now,
                                          reason=body.reason if body else None)
        read = await booking_read(session, booking, now)
    await request.app.state.gate.forget(booking.slot_id)
    return read
