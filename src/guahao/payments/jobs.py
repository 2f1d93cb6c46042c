"""Payment jobs: refunds (outbox topic `payment.refund`) and reconciliation (periodic).

`payment.refund` payloads come from two writers: booking/notices.py on the cancellation or
停诊 of a paid booking ({booking_id, hospital_id, state, amount}: refund the payment that paid
for the visit), and our late-payment path ({..., payment_id, reason}: refund that payment).
Both are idempotent: one refund row per payment and a refund number fixed per payment.
"""
from __future__ import annotations

import datetime as dt

import structlog

from guahao.outbox.registry import JobContext, PermanentFailure, RetryLater, handler, periodic
from guahao.payments import service
from guahao.payments.port import ProviderError, ProviderRefused

log = structlog.get_logger("guahao.payments")

periodic("payments.reconcile", dt.timedelta(minutes=1))


@handler("payment.refund")
async def refund_payment(ctx: JobContext, payload: dict) -> None:
    try:
        booking_id = int(payload["booking_id"])
        payment_id = int(payload["payment_id"]) if payload.get("payment_id") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentFailure(f"bad payload: {exc}") from exc
    reason = payload.get("reason") or f"booking_{payload.get('state', 'cancelled')}"
    try:
        outcome = await service.refund(ctx.db, ctx.providers.get("payments"), booking_id=booking_id,
                                       payment_id=payment_id, reason=reason, now=ctx.clock.now())
    except ProviderRefused as exc:
        raise PermanentFailure(f"refund refused by the provider: {exc.code}") from exc
    except ProviderError as exc:
        raise RetryLater(str(exc)[:200]) from exc
    if outcome == "nothing_paid":
        log.warning("refund_without_paid_payment", booking_id=booking_id, payment_id=payment_id)


@handler("payments.reconcile")
async def reconcile(ctx: JobContext, payload: dict) -> None:
    port = ctx.providers.get("payments")
    if port is None:
        return
    summary = await service.reconcile_open_payments(ctx.db, port, now=ctx.clock.now())
    if summary.checked:
        log.info("payments_reconciled", **vars(summary))
