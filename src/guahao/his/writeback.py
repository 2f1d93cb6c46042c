"""Write-back of our bookings to the hospital's HIS through the outbox (I6), both modes.

A booking transition writes `his.booking_confirmed` / `his.booking_cancelled` /
`his.booking_no_show` in its own transaction (booking/notices.py); a worker runs these
functions afterwards, at least once. Each one reads (short read transaction), calls the HIS
with no transaction open, and records the answer in a short transaction of its own.

Exactly once in effect: every HIS call is keyed by our order id (`order_id_for(booking_id)`)
and the HIS treats a repeat as the same call (a repeated lock returns the order as it is, a
repeated confirm the same visit number, a repeated cancel the cancelled order). So a retry
after HIS downtime, a lost answer ("ack lost"), a HIS crash or our worker dying between the
call and the record does the same thing again and records the same answer.

Failures:
- HIS unavailable, outcome unknown, bad answer: `RetryLater` (the runner backs off, up to
  `MAX_ATTEMPTS`); nothing of ours changes meanwhile.
- HIS refuses (SESSION_CANCELLED, POOL_FULL, LOCK_EXPIRED, ORDER_CANCELLED, ...): retrying
  cannot help. The booking is recorded `his_state='refused'` and flagged (`his_flag`,
  e.g. `his_pool_full`) for the hospital to resolve; the job ends.
"""
from __future__ import annotations

import structlog

from guahao.booking import his_state
from guahao.his import connections
from guahao.his.client import HisBadAnswer, HisOutcomeUnknown, HisRefused, HisUnavailable, order_id_for
from guahao.outbox import service as outbox
from guahao.outbox.registry import JobContext, PermanentFailure, RetryLater
from guahao.scheduling import service as scheduling_service

log = structlog.get_logger("guahao.his.writeback")

# A synced booking is locked and confirmed in one go; the lock only has to outlive the gap
# between the two calls. The longest the HIS allows, so that a confirm delayed by HIS
# downtime right after the lock still finds it (past that the HIS answers LOCK_EXPIRED,
# which is flagged for the hospital: its protocol cannot re-lock an order id).
LOCK_MINUTES = 60
# with the runner's backoff (capped at 30 minutes) this outlasts about a day of HIS downtime
MAX_ATTEMPTS = 60
TRANSIENT = (HisUnavailable, HisOutcomeUnknown, HisBadAnswer)


def confirmed_key(booking_id: int) -> str:
    return f"his.booking_confirmed:{booking_id}"  # the dedupe key booking/notices.py gives it


async def _prepare(ctx: JobContext, booking_id: int):
    async with ctx.db.read() as session:
        view = await his_state.his_view(session, booking_id)
        if view is None:
            raise PermanentFailure(f"booking {booking_id} not found")
        slot = await scheduling_service.get_slot_or_raise(session, view.slot_id)
        conn = await connections.get_connection(session, view.hospital_id)
        client = await connections.client_for(session, view.hospital_id)
    if conn is None or client is None:
        # a HIS mode needs a connection (catalog refuses the switch without one); if it was
        # removed, the write-back waits for it rather than forgetting the booking
        raise RetryLater("the hospital has no HIS connection")
    return view, slot.his_band_id, conn.pool, client


async def _record(ctx: JobContext, booking_id: int, **values) -> None:
    async with ctx.db.begin() as session:
        await his_state.do_record_his(session, booking_id, now=ctx.clock.now(), **values)


async def _refused(ctx: JobContext, booking_id: int, operation: str, exc: HisRefused) -> None:
    flag = f"his_{exc.code.lower()}"
    await _record(ctx, booking_id, his_state="refused", flag=flag)
    log.warning("his_writeback_refused", booking_id=booking_id, operation=operation, code=exc.code)


async def write_confirmed(ctx: JobContext, booking_id: int) -> None:
    """The booking is paid: lock (a no-op repeat for a realtime booking, whose lock exists)
    and confirm at the HIS, then record its visit number."""
    view, band_id, pool, client = await _prepare(ctx, booking_id)
    if view.his_state == "confirmed" and view.his_visit_no is not None:
        return  # recorded by an earlier run
    if view.state not in his_state.EXPECTED_AT_HIS:
        # ended (cancelled, revoked) before its confirmation reached the HIS: nothing to
        # confirm; its cancellation job finds no order there and has nothing to undo
        log.info("his_writeback_skipped", booking_id=booking_id, state=view.state)
        return
    if band_id is None:
        await _record(ctx, booking_id, his_state="refused", flag="his_unmapped")
        log.warning("his_writeback_unmapped", booking_id=booking_id)
        return
    order_id = order_id_for(booking_id)
    try:
        await client.lock(order_id, band_id, pool, LOCK_MINUTES)
        order = await client.confirm(order_id, view.his_patient_id)
    except TRANSIENT as exc:
        raise RetryLater(f"HIS confirm: {exc.code}") from exc
    except HisRefused as exc:
        await _refused(ctx, booking_id, "confirm", exc)
        return
    # a crash here repeats both calls on the next run: the HIS answers the same visit number
    await _record(ctx, booking_id, his_state="confirmed", visit_no=order.visit_no)
    log.info("his_writeback_confirmed", booking_id=booking_id, his_visit_no=order.visit_no)


async def _order_never_reached(ctx: JobContext, booking_id: int) -> bool:
    """ORDER_NOT_FOUND on a cancel or no-show: true when the confirmation's own write-back is
    over (so the HIS never had the order); while it is still queued or running, the caller
    waits for it, or it would confirm at the HIS a booking we just cancelled."""
    async with ctx.db.read() as session:
        return not await outbox.is_unfinished(session, confirmed_key(booking_id))


async def write_cancelled(ctx: JobContext, booking_id: int) -> None:
    """A paid booking was cancelled or revoked (停诊): cancel its order at the HIS."""
    view, _, _, client = await _prepare(ctx, booking_id)
    if view.his_state == "cancelled":
        return
    try:
        await client.cancel(order_id_for(booking_id))
    except TRANSIENT as exc:
        raise RetryLater(f"HIS cancel: {exc.code}") from exc
    except HisRefused as exc:
        if exc.code != "ORDER_NOT_FOUND":
            await _refused(ctx, booking_id, "cancel", exc)
            return
        if not await _order_never_reached(ctx, booking_id):
            raise RetryLater("waiting for the confirmation's write-back", count_attempt=False) from exc
        log.info("his_writeback_nothing_to_cancel", booking_id=booking_id)
    await _record(ctx, booking_id, his_state="cancelled")


async def write_no_show(ctx: JobContext, booking_id: int) -> None:
    """The patient did not come: tell the HIS (its number stays used there)."""
    _, _, _, client = await _prepare(ctx, booking_id)
    try:
        await client.no_show(order_id_for(booking_id))
    except TRANSIENT as exc:
        raise RetryLater(f"HIS no-show: {exc.code}") from exc
    except HisRefused as exc:
        if exc.code == "ORDER_NOT_FOUND" and not await _order_never_reached(ctx, booking_id):
            raise RetryLater("waiting for the confirmation's write-back", count_attempt=False) from exc
        async with ctx.db.begin() as session:
            await his_state.do_flag(session, [booking_id], flag=f"his_{exc.code.lower()}", now=ctx.clock.now())
        log.warning("his_writeback_refused", booking_id=booking_id, operation="no_show", code=exc.code)
        return
    log.info("his_writeback_no_show", booking_id=booking_id)
