"""Patient-side booking routes."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from guahao.booking import actions, budget, hold_flow, reasons
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
from guahao.core.errors import PROBLEM_JSON
from guahao.core.localtime import localize

router = APIRouter(prefix="/api/v1/bookings", tags=["bookings"])


# the first line against bots (booking/budget.py): also run by HoldBudgetMiddleware, in front
# of FastAPI; a no-op here when the middleware already counted this request
hold_budget = budget.spend


async def limit_holds(request: Request, account_id: int, patient_id: int) -> None:
    """Second line, once the caller is known: per account (a bot logging in again for a fresh
    token gains nothing) and per patient. Replays of a key are not counted (answered before
    this), and a refusal is not the key's answer: after Retry-After the same request goes
    through."""
    rules = request.app.state.settings.hold_limit_per_account
    await budget.limit(request, rules, "hold-account", str(account_id))
    await budget.limit(request, rules, "hold-patient", str(patient_id))


@router.post("", status_code=201, response_model=BookingRead, dependencies=[Depends(hold_budget)],
             responses={409: {"description": "refused (problem+json with a stable code)"}})
async def create_booking(request: Request, body: BookingCreate, caller: CurrentAccountWithKey, db: Db,
                         clock: ClockDep, locale: Locale,
                         idempotency_key: Annotated[str | None, Header()] = None):
    """Take a hold (锁号) on a slot for one of your patients. Requires an Idempotency-Key header.

    Every answer is the key's answer (I7): a retry replays the first, or waits for it. The
    steps are in booking/hold_flow.py (shared with the patient pages)."""
    arrived_at = clock.now()
    account_id, key = caller.principal.account_id, caller.key
    # defaults left out: a hold without a visit reason hashes as it always has
    req_hash = idempotency.request_hash("POST", request.url.path, body.model_dump(exclude_defaults=True))
    stored = await hold_flow.replayed(request, db, clock, idempotency.replay_answer(caller.stored, req_hash, arrived_at),
                                      account_id=account_id, key=key, req_hash=req_hash, arrived_at=arrived_at,
                                      locale=locale)
    if stored is None:
        await limit_holds(request, account_id, body.patient_id)
        stored = await hold_flow.hold_once(request, db, clock, account_id, key, req_hash, body, arrived_at, locale)
    status, payload = stored
    metrics.hold_answered(status, payload)
    media = PROBLEM_JSON if status >= 400 else "application/json"
    return JSONResponse(payload, status_code=status, media_type=media)


@router.get("", response_model=BookingPage)
async def list_bookings(account: CurrentAccount, db: Db, clock: ClockDep, locale: Locale,
                        state: Annotated[str | None, Query(max_length=20)] = None,
                        limit: Annotated[int, Query(ge=1, le=100)] = 20,
                        offset: Annotated[int, Query(ge=0)] = 0) -> BookingPage:
    """Your bookings, newest first, optionally of one state (`held` lists only holds still running)."""
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
    """One of your bookings with what you may do now, its fees and, if you wrote one, your reason for
    visit."""
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
    """The booking's history: every state change, who made it (you, the hospital, the system) and when."""
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
    """Cancel your booking before the hospital's deadline; a paid fee is refunded. Late cancellations may
    count toward the hospital's restriction (see cancel-preview)."""
    now = clock.now()
    async with db.begin() as session:
        booking = await actions.do_cancel(session, account_id=account.account_id, booking_id=booking_id, now=now,
                                          reason=body.reason if body else None)
        read = await booking_read(session, booking, now, locale=locale)
    await request.app.state.gate.forget(booking.slot_id)
    return read
