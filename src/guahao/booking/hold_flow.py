"""The hold as a sequence of steps, shared by the API route and the patient pages.

`POST /api/v1/bookings` (booking/router.py) and the confirm page (web/booking_pages.py) both
end here, so they share the sold-out gate, the Idempotency-Key protocol (core/idempotency.py)
and the two steps that need another system:
- 建档 (booking/records_step.py): a hold that needs the patient's HIS record and has none
  cached rolls back, the record is looked up with no transaction open, and the hold runs again;
- the realtime hold (booking/his_hold.py): the attempt commits with the key in flight, the HIS
  is asked to lock with nothing open, and the answer commits with the key's final answer.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import structlog
from fastapi import Request

from guahao.booking import actions, errors, his_hold, records_step
from guahao.booking.gate import NoTicket
from guahao.booking.models import Booking
from guahao.booking.schemas import BookingCreate
from guahao.booking.views import booking_read
from guahao.core import idempotency
from guahao.core.errors import GuahaoError

log = structlog.get_logger("guahao.booking.hold")


def problem_body(request: Request, exc: GuahaoError, locale: str) -> dict:
    extra = {k: v for k, v in exc.params.items() if isinstance(v, (str, int, float, bool))}
    return {"type": f"https://guahao.example/problems/{exc.code}", "title": exc.code.replace("_", " "),
            "status": exc.status, "code": exc.code, "detail": exc.message(locale), "instance": request.url.path,
            **extra}


def replay_until(exc: GuahaoError, now: dt.datetime) -> dt.datetime:
    """How long a refusal stays the key's answer (core/idempotency.py): a short retry window,
    and never past the moment the refusal stops being true for a release."""
    if exc.status >= 500:
        return now  # nothing happened (the HIS could not be reached): a retry tries again
    until = now + idempotency.REFUSAL_REPLAY
    if exc.code == "not_yet_released" and "release_at" in exc.params:
        until = min(until, dt.datetime.fromisoformat(exc.params["release_at"]))
    return until


async def replayed(request: Request, db, clock, stored: tuple[int, dict] | None, *, account_id: int, key: str,
                   req_hash: str, arrived_at: dt.datetime, locale: str) -> tuple[int, dict] | None:
    """The key's stored answer for a retry; a key in flight (a realtime hold waiting for the
    HIS) is waited for, so the retry gets the same final answer as its first request.

    A key still in flight after `idempotency.IN_FLIGHT_WAIT` lost its first request (the
    process died between asking the HIS and recording the answer): the retry finishes it,
    asking the HIS again (idempotent on the order id) and recording the answer under the same
    guards, then replays whatever the key now says."""
    if stored is None or stored[0] != idempotency.IN_FLIGHT:
        return stored
    stored = await idempotency.settled(db, account_id, key, req_hash, arrived_at=arrived_at, give_up_in_flight=True)
    if stored is None or stored[0] != idempotency.IN_FLIGHT:
        return stored
    his = request.app.state.providers.get("his_holds")
    if his is None:
        raise idempotency.IdempotencyKeyBusy()
    log.warning("realtime_hold_orphaned", booking_id=stored[1].get("booking_id"))
    await ask_his(request, db, clock, his, account_id=account_id, key=key, attempt=stored[1], locale=locale)
    return await idempotency.lookup(db, account_id, key, req_hash, arrived_at=arrived_at)


async def hold_once(request: Request, db, clock, account_id: int, key: str, req_hash: str, body: BookingCreate,
                    arrived_at: dt.datetime, locale: str) -> tuple[int, dict]:
    """The first answer for this key.

    A slot known to be full is answered without a hold transaction, before queueing for the
    slot's lane and again after (it may have filled while we waited). That answer is still
    recorded as the key's answer (one statement), because a twin of this request may be in
    flight: if it got there first, its answer is returned instead, so a retry is never told
    "sold out" while its first request holds the seat."""
    gate = request.app.state.gate
    providers = request.app.state.providers
    records = providers.get("his_records")
    his = providers.get("his_holds")

    async def refuse(exc: GuahaoError, at: dt.datetime) -> tuple[int, dict]:
        return await idempotency.record(db, account_id=account_id, key=key, req_hash=req_hash,
                                        arrived_at=arrived_at, status=exc.status,
                                        body=problem_body(request, exc, locale), replay_until=replay_until(exc, at))

    if await gate.known_full(body.slot_id):
        return await refuse(errors.SlotSoldOut(), arrived_at)

    seats_after: list[int] = []  # what a won claim says about the seats left (gate tickets)
    ran_claim = False

    async def claim(*, record_looked_up: bool) -> tuple[int, dict]:
        try:
            return await claim_in_lane(record_looked_up=record_looked_up)
        except NoTicket:  # every seat that may still be free has a claimant already
            return await refuse(errors.SlotSoldOut(), arrived_at)

    async def claim_in_lane(*, record_looked_up: bool) -> tuple[int, dict]:
        async with gate.slot_lane(body.slot_id):
            if await gate.known_full(body.slot_id):
                raise NoTicket()  # answered by `claim`, after the lane place is given back
            now = clock.now()  # after the lane wait: the rules are checked at the time of the claim
            nonlocal ran_claim
            ran_claim = True

            async def work(session) -> Any:
                booking, ctx, patient = await actions.do_hold(
                    session, account_id=account_id, patient_id=body.patient_id, slot_id=body.slot_id, now=now,
                    with_context=True, records=records, record_looked_up=record_looked_up,
                    visit_reason=body.visit_reason, health_consent=body.health_consent)
                if booking.visit_no is not None:
                    seats_after[:] = [ctx.last_visit_no - booking.visit_no]
                if booking.his_state == "pending":
                    if his is None:  # a process without the HIS port cannot take realtime holds
                        raise errors.HisUnavailable()
                    return idempotency.InFlight({
                        "booking_id": booking.id, "hospital_id": ctx.hospital_id, "band_id": ctx.his_band_id,
                        "minutes": his_hold.lock_minutes(booking.hold_expires_at, now)})
                return (await booking_read(session, booking, now, ctx=ctx, patient=patient,
                                           locale=locale)).model_dump(mode="json")

            return await idempotency.run(
                db, account_id=account_id, key=key, req_hash=req_hash, arrived_at=arrived_at, work=work,
                render_error=lambda exc: problem_body(request, exc, locale),
                replay_until=lambda exc: replay_until(exc, now))

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
            return await refuse(exc, arrived_at)
        status, payload = await claim(record_looked_up=True)
    if status == idempotency.IN_FLIGHT:
        status, payload = await ask_his(request, db, clock, his, account_id=account_id, key=key, attempt=payload,
                                        locale=locale)
    if payload.get("code") == "slot_sold_out" and ran_claim:
        # only a claim that found no seat marks the slot: a gate answer re-marking it would
        # keep a busy slot "full" for ever, past a hold that lapsed meanwhile
        await gate.mark_full(body.slot_id)
    elif status == 201 and seats_after:
        gate.note_remaining(body.slot_id, seats_after[0])
    return status, payload


async def ask_his(request: Request, db, clock, his: his_hold.HisHolds, *, account_id: int, key: str,
                  attempt: dict, locale: str) -> tuple[int, dict]:
    """Steps (b) and (c) of a realtime hold (booking/his_hold.py): the HIS call with nothing
    open, then one transaction with its outcome and the key's final answer."""
    try:
        answer = await his.lock(db, hospital_id=attempt["hospital_id"], booking_id=attempt["booking_id"],
                                band_id=attempt["band_id"], minutes=attempt["minutes"])
    except Exception as exc:  # the port must not raise; if it does, treat it as "maybe locked"
        log.error("his_lock_failed", booking_id=attempt["booking_id"], error=type(exc).__name__)
        answer = his_hold.LockAnswer(his_hold.UNKNOWN, code=type(exc).__name__)
    now = clock.now()
    async with db.begin() as session:
        booking, refusal = await his_hold.do_record_lock_answer(session, attempt["booking_id"], answer, now=now)
        if refusal is None:
            assert isinstance(booking, Booking)
            status, body, until = 201, (await booking_read(session, booking, now, locale=locale)).model_dump(
                mode="json"), None
        else:
            status, body, until = refusal.status, problem_body(request, refusal, locale), replay_until(refusal, now)
        await idempotency.finish(session, account_id=account_id, key=key, status=status, body=body,
                                 replay_until=until)
    log.info("realtime_hold", booking_id=attempt["booking_id"], outcome=answer.outcome, code=answer.code,
             his_calls=answer.his_calls)
    return status, body
