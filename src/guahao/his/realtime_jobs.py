"""Releasing a realtime hold's lock at the HIS (outbox topic `his.lock_release`).

Enqueued when a realtime hold ends unpaid (expired, cancelled, revoked: booking/notices.py)
and when a hold attempt ended without knowing whether the HIS locked (booking/his_hold.py).
At least once, so the effect is idempotent: `cancel` is idempotent on our order id at the
HIS, and the booking's his_state is set by a conditional UPDATE.

A lock whose request was still travelling when we asked about it may land after we gave up:
when the HIS does not know the order yet, the release tries again for `LATE_LOCK_WINDOW`
after the attempt, then stops (a lock that lands later still expires there by itself).
"""
from __future__ import annotations

import datetime as dt

import structlog

from guahao.booking import his_hold, notices
from guahao.his import connections
from guahao.his.client import HisError, HisRefused, order_id_for
from guahao.outbox.registry import JobContext, RetryLater, handler

log = structlog.get_logger("guahao.his.realtime")

LATE_LOCK_WINDOW = dt.timedelta(minutes=2)
_RETRY_NOT_FOUND = dt.timedelta(seconds=20)
LIVE = ("held", "confirmed", "checked_in", "completed")


@handler(notices.LOCK_RELEASE, max_attempts=50)
async def release_lock(ctx: JobContext, payload: dict) -> None:
    booking_id = int(payload["booking_id"])
    async with ctx.db.read() as session:
        facts = await his_hold.release_facts(session, booking_id)
        if facts is None or facts.state in LIVE or facts.his_state not in notices.LOCK_HELD_AT_HIS:
            return  # gone, live again (never: ended is final), or released already
        client = await connections.client_for(session, facts.hospital_id)
    if client is None:
        return  # no connection any more: nothing we could release
    now = ctx.clock.now()
    try:
        order = await client.cancel(order_id_for(booking_id))
        log.info("his_lock_released", hospital_id=facts.hospital_id, booking_id=booking_id, state=order.state)
    except HisRefused as exc:
        if exc.code == "ORDER_NOT_FOUND" and now - facts.created_at < LATE_LOCK_WINDOW:
            raise RetryLater("the lock may still land at the HIS", delay=_RETRY_NOT_FOUND,
                             count_attempt=False) from exc
        # not there, or nothing to release any more (expired, cancelled at the window)
        log.info("his_lock_release_refused", hospital_id=facts.hospital_id, booking_id=booking_id, code=exc.code)
    except HisError as exc:
        raise RetryLater(f"HIS: {exc.code}") from exc
    async with ctx.db.begin() as session:
        await his_hold.do_mark_lock_released(session, booking_id, now=now)
