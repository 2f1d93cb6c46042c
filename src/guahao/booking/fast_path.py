"""The sold-out answer of a release rush, given in front of FastAPI in one statement.

After the first second of a rush nearly every hold request is for a slot the gate already
knows is full (or whose seats left all have claimants, gate tickets), and its answer is
`slot_sold_out`. The route gives that answer correctly, but it pays for routing, dependency
solving and body validation, plus two round trips: the session and key lookup, then the
refusal recorded as the key's answer (core/idempotency.py). Profiled under the rush, that
request path, not the database, was most of guahao's cost per answer (docs/BENCHMARKS.md).

`SoldOutFastPath` answers those requests itself with one statement
(`accounts.token_answers.record_answer_for_token`): it authenticates the session token and records
the refusal as the key's answer together, in the caller's language. Every other case goes on
to the route untouched (the body it read is handed on): no `Authorization: Bearer`, a body the
route would refuse, a slot the gate does not refuse, a token that is not a live patient
session (the route answers 401), or a key that has an answer or a write in flight already
(the route replays or waits for it, so a retry is never told "sold out" while its first
request holds a seat). The answer is the route's, byte for byte in content: same problem body,
same status, same key row, same metric. It sits inside maintenance and admission control, and
after the hold budget (booking/budget.py), so every rule in front of the route still applies.
"""
from __future__ import annotations

import datetime as dt
import json

import pydantic
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from guahao.accounts import token_answers
from guahao.booking import budget, errors, hold_flow
from guahao.booking.answer_batch import AnswerBatch
from guahao.booking.schemas import BookingCreate
from guahao.core import i18n, idempotency, metrics
from guahao.core.asgi_body import buffered
from guahao.core.errors import PROBLEM_JSON, GuahaoError

MAX_BODY = 16 * 1024  # a hold body is under 1 KB; a bigger one goes to the route as it is


class SoldOutFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") == budget.HOLD_PATH):
            await self.app(scope, receive, send)
            return
        body, receive = await buffered(receive)
        response = await _answer(Request(scope), body)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)


async def _answer(request: Request, raw: bytes) -> JSONResponse | None:
    """The sold-out answer, or None: the route answers."""
    authorization = request.headers.get("authorization", "")
    key = request.headers.get("idempotency-key")
    if (not authorization.lower().startswith("bearer ") or not key or len(key) > 100 or not key.isprintable()
            or len(raw) > MAX_BODY or not request.headers.get("content-type", "").startswith("application/json")):
        return None
    token = authorization[7:].strip()
    try:
        body = BookingCreate.model_validate_json(raw)
    except pydantic.ValidationError:
        return None  # the route explains what is wrong with it
    gate = request.app.state.gate
    if not (gate.refuses_now(body.slot_id) or await gate.known_full(body.slot_id)):
        return None
    now: dt.datetime = request.app.state.clock.now()
    refusal = errors.SlotSoldOut()
    bodies = _sold_out_bodies(request)
    header = request.headers.get("accept-language")
    req_hash = idempotency.request_hash("POST", request.url.path, body.model_dump(exclude_defaults=True))
    db = request.app.state.db

    def record(conn):
        return token_answers.record_answer_for_token(
            conn, token, key=key, req_hash=req_hash, status=refusal.status, bodies=bodies,
            header_language=i18n.negotiate(header) if header else None, now=now,
            replay_until=hold_flow.replay_until(refusal, now))

    try:
        if db.is_sqlite:  # one writer: answers share write transactions (booking/answer_batch.py)
            recorded = await _batch(request).run(record)
        else:
            async with db.peek() as conn:
                recorded = await record(conn)
    except Exception:  # a database error is the route's to answer (503, core/errors.py); had the
        return None  # answer committed after all, the route finds and replays it
    if recorded is None:
        return None
    account_id, payload = recorded
    await _count(request, account_id, body.patient_id)
    metrics.hold_answered(refusal.status, payload)
    return JSONResponse(payload, status_code=refusal.status, media_type=PROBLEM_JSON)


def _batch(request: Request) -> AnswerBatch:
    state = request.app.state
    if getattr(state, "sold_out_batch", None) is None:
        state.sold_out_batch = AnswerBatch(state.db)
    return state.sold_out_batch


def _sold_out_bodies(request: Request) -> dict[str, str]:
    """The route's sold-out problem body in each language, as JSON text, made once: it is
    the same for every request (the path is the only request-dependent part)."""
    global _BODIES
    if _BODIES is None:
        refusal = errors.SlotSoldOut()
        _BODIES = {lang: json.dumps(hold_flow.problem_body(request, refusal, lang), ensure_ascii=False)
                   for lang in i18n.SUPPORTED}
    return _BODIES


_BODIES: dict[str, str] | None = None


async def _count(request: Request, account_id: int, patient_id: int) -> None:
    """The route's per-account and per-patient budget counts this request too. Its answer is
    already the key's, so an exhausted budget does not change it: the next request is refused."""
    rules = request.app.state.settings.hold_limit_per_account
    for kind, who in (("hold-account", account_id), ("hold-patient", patient_id)):
        try:
            await request.app.state.limiter.hit(rules, kind, str(who))
        except GuahaoError:
            pass
