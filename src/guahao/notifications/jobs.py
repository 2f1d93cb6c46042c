"""Notification jobs: one handler per `notify.*` outbox topic, and the two scans.

Every handler may run any number of times for the same payload (at-least-once delivery,
crashes, lapsed leases): `delivery.deliver` makes the SMS go out once per dedupe key.
Provider trouble surfaces as RetryLater, so the runner backs off and dead-letters.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from guahao.notifications import delivery, draw_messages, service, waitlist_messages
from guahao.outbox.registry import JobContext, PermanentFailure, RetryLater, handler, periodic

periodic("notify.scan_expiring_holds", dt.timedelta(minutes=1))
periodic("notify.scan_reminders", dt.timedelta(minutes=5))

SCAN_BATCH = 500


def _id(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PermanentFailure(f"payload lacks an integer {name}")
    return value


async def send_about_booking(ctx: JobContext, template: str, payload: dict[str, Any]) -> bool:
    """Send `template` about the payload's booking once to each recipient. True when this
    call sent at least one."""
    booking_id = _id(payload, "booking_id")
    async with ctx.db.read() as session:
        messages = await service.compose_booking_messages(session, template, booking_id, ctx.clock.now())
    return await _deliver_all(ctx, messages)


async def _deliver_all(ctx: JobContext, messages: list[delivery.Outgoing]) -> bool:
    """Deliver each message; one recipient's failure does not hold back the others. A retry
    re-runs them all; those already sent are no-ops (their dedupe keys)."""
    failures: list[Exception] = []
    sent = False
    for message in messages:
        if await delivery.already_sent(ctx, message.dedupe_key):  # a read spares the claim's write
            continue
        try:
            sent = await delivery.deliver(ctx, message) or sent
        except (RetryLater, PermanentFailure) as exc:
            failures.append(exc)
    for kind in (RetryLater, PermanentFailure):
        for exc in failures:
            if isinstance(exc, kind):
                raise exc
    return sent


@handler("notify.booking_confirmed")
async def booking_confirmed(ctx: JobContext, payload: dict) -> None:
    await send_about_booking(ctx, "booking_confirmed", payload)


@handler("notify.booking_cancelled")
async def booking_cancelled(ctx: JobContext, payload: dict) -> None:
    await send_about_booking(ctx, "booking_cancelled", payload)


@handler("notify.booking_expired")
async def booking_expired(ctx: JobContext, payload: dict) -> None:
    await send_about_booking(ctx, "booking_expired", payload)


@handler("notify.booking_revoked")
async def booking_revoked(ctx: JobContext, payload: dict) -> None:
    await send_about_booking(ctx, "booking_revoked", payload)


@handler("notify.hold_expiring")
async def hold_expiring(ctx: JobContext, payload: dict) -> None:
    await send_about_booking(ctx, "hold_expiring", payload)


@handler("notify.reminder")
async def reminder(ctx: JobContext, payload: dict) -> None:
    await send_about_booking(ctx, "reminder", payload)


@handler("notify.payment_late_refund")
async def payment_late_refunded(ctx: JobContext, payload: dict) -> None:
    """Enqueued by payments when a payment arrived after its hold had ended ({booking_id, payment_id, ...})."""
    await send_about_booking(ctx, "payment_late_refunded", payload)


@handler("notify.restriction_applied")
async def restriction_applied(ctx: JobContext, payload: dict) -> None:
    restriction_id = _id(payload, "restriction_id")
    async with ctx.db.read() as session:
        messages = await service.compose_restriction_messages(session, restriction_id)
    await _deliver_all(ctx, messages)


async def send_about_entry(ctx: JobContext, template: str, payload: dict[str, Any]) -> None:
    entry_id = _id(payload, "entry_id")
    booking_id = payload.get("booking_id") if isinstance(payload.get("booking_id"), int) else None
    suspension = payload.get("suspension") if isinstance(payload.get("suspension"), int) else None
    async with ctx.db.read() as session:
        message = await waitlist_messages.compose(session, template, entry_id, ctx.clock.now(), booking_id,
                                                  suspension)
    await _deliver_all(ctx, [message] if message is not None else [])


@handler("notify.waitlist_offer")
async def waitlist_offer(ctx: JobContext, payload: dict) -> None:
    await send_about_entry(ctx, "waitlist_offer", payload)


@handler("notify.waitlist_skipped")
async def waitlist_skipped(ctx: JobContext, payload: dict) -> None:
    await send_about_entry(ctx, "waitlist_skipped", payload)


@handler("notify.waitlist_closed")
async def waitlist_closed(ctx: JobContext, payload: dict) -> None:
    await send_about_entry(ctx, "waitlist_closed", payload)


@handler("notify.waitlist_paused")
async def waitlist_paused(ctx: JobContext, payload: dict) -> None:
    """停诊 paused the queue ({entry_id, suspension}): once per entry and 停诊."""
    await send_about_entry(ctx, "waitlist_paused", payload)


@handler("notify.waitlist_resumed")
async def waitlist_resumed(ctx: JobContext, payload: dict) -> None:
    await send_about_entry(ctx, "waitlist_resumed", payload)


async def _scan(ctx: JobContext, enqueue) -> None:
    """Enqueue in batches, one short transaction each (a batch only finds rows not enqueued
    yet, so the loop ends; overlapping scans are harmless thanks to the dedupe keys)."""
    while True:
        async with ctx.db.begin() as session:
            found = await enqueue(session, now=ctx.clock.now(), limit=SCAN_BATCH)
        if found < SCAN_BATCH:
            return


@handler("notify.scan_expiring_holds")
async def scan_expiring_holds(ctx: JobContext, payload: dict) -> None:
    await _scan(ctx, service.enqueue_hold_warnings)


@handler("notify.scan_reminders")
async def scan_reminders(ctx: JobContext, payload: dict) -> None:
    await _scan(ctx, service.enqueue_reminders)


@handler("notify.draw_result")
async def draw_result(ctx: JobContext, payload: dict) -> None:
    """Written by the draw for each entry's outcome ({entry_id, hospital_id})."""
    entry_id = _id(payload, "entry_id")
    async with ctx.db.read() as session:
        messages = await draw_messages.compose_draw_result(session, entry_id, ctx.clock.now())
    await _deliver_all(ctx, messages)
