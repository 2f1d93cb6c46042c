"""HTTP routes of the payments feature: a patient pays for a hold and sees the payment; the
provider notifies us; staff and operators see the money (`staff_router`, mounted by the app)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from guahao.booking import actions as booking_actions
from guahao.catalog import service as catalog_service
from guahao.core.deps import ClockDep, CurrentAccount, Db, Limiter
from guahao.core.errors import NotFound
from guahao.core.localtime import localize
from guahao.payments import errors, rejections, reports, service
from guahao.payments.schemas import PaymentRead, PaymentStart, PaymentStarted

router = APIRouter(tags=["payments"])

# what the provider gets back for a notification we have acted on (WeChat Pay's format)
ACK = {"code": "SUCCESS", "message": "成功"}
MAX_NOTIFICATION_BYTES = 64 * 1024
# outcomes answered with an error, so the provider retries and operators see it; every other
# recorded outcome (a wrong amount included: it is refunded) is acknowledged
REFUSED = {"unknown_payment": errors.UnknownPayment}


def _flights(request: Request) -> service.SingleFlight:
    flights = getattr(request.app.state, "payment_notification_flights", None)
    if flights is None:
        flights = request.app.state.payment_notification_flights = service.SingleFlight()
    return flights


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is longer than `limit`: a declared
    Content-Length is checked before reading, and a chunked body is read only up to the
    limit, so an endless body costs us `limit` bytes of memory, not more."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise errors.NotificationTooLarge(limit=limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.NotificationTooLarge(limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def payment_port(request: Request):
    return request.app.state.providers.get("payments")


@router.post("/api/v1/bookings/{booking_id}/payments", response_model=PaymentStarted, status_code=201,
             responses={200: {"description": "the booking's open payment, again"},
                        409: {"description": "not payable (problem+json)"},
                        503: {"description": "provider unavailable; retry"}})
async def start_payment(request: Request, booking_id: int, account: CurrentAccount, db: Db, clock: ClockDep,
                        body: PaymentStart | None = None):
    """Pay for a hold (锁号): returns the provider's pay URL. The amount is the booking's fee;
    repeating the request returns the same open payment. `method` (optional) records how the
    patient chose to pay: WeChat Pay, Alipay or a bank card."""
    started = await service.start_payment(db, payment_port(request), request.app.state.settings,
                                          account_id=account.account_id, booking_id=booking_id, now=clock.now(),
                                          method=body.method if body else None)
    p = started.payment
    body = PaymentStarted(payment_id=p.id, booking_id=p.booking_id, pay_url=p.pay_url, amount=p.amount,
                          state=p.state, expires_at=started.hold_expires_at)
    async with db.read() as session:
        body = localize(body, await catalog_service.zone_of(session, p.hospital_id))
    return JSONResponse(body.model_dump(mode="json"), status_code=201 if started.created else 200)


@router.get("/api/v1/bookings/{booking_id}/payments", response_model=list[PaymentRead])
async def list_payments(booking_id: int, account: CurrentAccount, db: Db) -> list[PaymentRead]:
    """The payments and refunds of one of your bookings."""
    async with db.read() as session:
        booking = await booking_actions.get_for_account(session, account.account_id, booking_id)
        return localize(await reports.payments_of(session, booking_id),
                        await catalog_service.zone_of(session, booking.hospital_id))


@router.post("/api/v1/payments/notify/{provider}", include_in_schema=False)
async def notify(request: Request, provider: str, db: Db, clock: ClockDep, limiter: Limiter):
    """The provider's asynchronous payment notification. Verified before anything is read;
    answered 2xx only after our transaction committed, so the provider retries otherwise."""
    port = payment_port(request)
    if port is None or port.name != provider:
        raise NotFound("page")
    body = await read_capped(request, MAX_NOTIFICATION_BYTES)
    settings = request.app.state.settings
    limit = getattr(settings, "payment_rejected_notification_limit", None) or rejections.DEFAULT_LIMIT

    async def before_rejecting() -> None:
        # one bucket per provider, not per client: genuine notifications are verified before
        # this is reached, so only forgeries are ever held back by it
        await limiter.hit(limit, "payment-notification-rejected", port.name)

    outcome = await service.take_notification(db, port, request.headers, body, now=clock.now(),
                                              flights=_flights(request), before_rejecting=before_rejecting)
    if outcome in REFUSED:
        raise REFUSED[outcome]()
    return JSONResponse(ACK)
