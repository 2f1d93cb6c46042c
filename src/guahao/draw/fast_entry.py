"""Entering a draw in one statement, in front of FastAPI: the draw's rush path.

At the release instant of a schedule released by draw, every patient who wants it enters in the
same few seconds, and an entry that reaches the route only after the window closed is refused
`draw_closed` however early it was sent. Through the route an entry costs routing, dependency
solving, the session look-up and a five-statement transaction; measured with 5,000 entrants on
the bench machine, more than half of them queued past a 10 s window (docs/BENCHMARKS.md).

`DrawEntryFastPath` answers the common case itself, on PostgreSQL, with one statement
(`_ENTER`): authenticate the session token, find the account's verified patient, share-lock
the schedule's open draw and check the arrival time against its window, and insert the entry
(insert-or-nothing on draw and person), returning the receipt. The arrival is stamped when the
request reaches this middleware, before any waiting for the database. The answer is the
route's: same status (202), same body, same time zone.

Everything else goes to the route untouched, with the body it read handed on: SQLite (one
writer; the route is the path there), no bearer token, a body the route would refuse, and
every case where the statement inserts nothing (not a live session, not the account's
verified patient, no open draw, outside the window, or this person had entered already). The
route then explains the refusal or answers the earlier receipt as `already_entered`, exactly
as it always did. The concurrency story of entries.py holds unchanged: the `FOR SHARE` of the
draw row is held until this statement commits, so the ranking either sees the entry or the
entry sees the draw ranked (and inserts nothing).

Bots are limited before this, by the same budget per token and per address as a hold
(booking/budget.py); the account's own entry budget is counted after, as the route does.
"""
from __future__ import annotations

import functools
import re

import pydantic
from sqlalchemy import Boolean, String, bindparam, select, true
from sqlalchemy.dialects import postgresql
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from guahao.accounts import service as accounts_service
from guahao.core import localtime, raw_pg
from guahao.core.asgi_body import buffered
from guahao.core.errors import GuahaoError
from guahao.draw import fairness
from guahao.draw.models import Draw, DrawEntry
from guahao.draw.schemas import DrawEntryCreate, DrawEntryReceipt
from guahao.patients import service as patients_service

ENTRY_PATH = re.compile(r"^/api/v1/schedules/(\d{1,18})/draw/entries$")
MAX_BODY = 4 * 1024


class DrawEntryFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (ENTRY_PATH.match(scope.get("path", "")) if scope["type"] == "http" and scope.get("method") == "POST"
                 else None)
        if match is None or scope["app"].state.db.is_sqlite:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        arrived_at = request.app.state.clock.now()  # before any wait for the database
        body, receive = await buffered(receive)
        try:
            response = await _answer(request, int(match.group(1)), body, arrived_at)
        except Exception:  # a database error is the route's to answer (503): it runs the same checks
            response = None
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)


async def _answer(request: Request, schedule_id: int, raw: bytes, arrived_at) -> JSONResponse | None:
    authorization = request.headers.get("authorization", "")
    if (not authorization.lower().startswith("bearer ") or len(raw) > MAX_BODY
            or not request.headers.get("content-type", "").startswith("application/json")):
        return None
    try:
        body = DrawEntryCreate.model_validate_json(raw)
    except pydantic.ValidationError:
        return None
    now = request.app.state.clock.now()
    params = {"token_hash": accounts_service.token_hash(authorization[7:].strip()), "now": now,
              "patient_id": body.patient_id, "schedule_id": schedule_id, "arrived_at": arrived_at,
              "receipt": fairness.new_receipt(), "waitlist_opt_in": body.waitlist_opt_in}
    async with request.app.state.db.peek() as conn:
        row = await raw_pg.fetchrow(conn, _enter_asyncpg(), params)
    if row is None:
        return None
    await _count(request, row["account_id"])
    zone = localtime.zone(None)  # the route's zone for a receipt: the platform's
    receipt = localtime.localize(DrawEntryReceipt(
        draw_id=row["draw_id"], receipt=row["receipt"], arrived_at=row["arrived_at"],
        waitlist_opt_in=row["waitlist_opt_in"], closes_at=row["closes_at"], result_at=row["result_at"],
        already_entered=False), zone)
    return JSONResponse(receipt.model_dump(mode="json"), status_code=202)


async def _count(request: Request, account_id: int) -> None:
    """The route's per-account entry budget counts this request too; the entry is made and
    answering it is harmless (a repeat answers the same receipt), so an exhausted budget
    refuses the account's next request, which the route then answers."""
    try:
        await request.app.state.limiter.hit(request.app.state.settings.hold_limit_per_account, "draw-entry",
                                            str(account_id))
    except GuahaoError:
        pass


@functools.cache
def _enter_statement():
    """WITH the session's account, its verified patient and the open draw (FOR SHARE), INSERT
    the entry (nothing on a twin), RETURNING the receipt with the draw's times."""
    arrived = bindparam("arrived_at", type_=Draw.__table__.c.closes_at.type)
    account = accounts_service.live_account_of_token().cte("account")
    patient = patients_service.verified_patient_of(account.c.account_id, bindparam("patient_id")).cte("patient")
    d = Draw.__table__
    draw = (select(d.c.id, d.c.hospital_id, d.c.closes_at, d.c.result_at)
            .where(d.c.schedule_id == bindparam("schedule_id"), d.c.status == "open", d.c.opens_at <= arrived,
                   d.c.closes_at > arrived)
            .with_for_update(read=True).cte("draw"))
    e = DrawEntry.__table__
    columns = ["draw_id", "hospital_id", "person_id", "account_id", "patient_id", "receipt", "waitlist_opt_in",
               "arrived_at", "created_at"]
    source = select(draw.c.id, draw.c.hospital_id, patient.c.person_id, account.c.account_id, patient.c.id,
                    bindparam("receipt", type_=String()), bindparam("waitlist_opt_in", type_=Boolean()), arrived,
                    bindparam("now", type_=e.c.created_at.type)).select_from(account.join(patient, true())
                                                                            .join(draw, true()))
    inserted = (postgresql.insert(e).from_select(columns, source)
                .on_conflict_do_nothing(index_elements=["draw_id", "person_id"])
                .returning(e.c.id, e.c.draw_id, e.c.account_id, e.c.receipt, e.c.arrived_at, e.c.waitlist_opt_in)
                .cte("entry"))
    return select(inserted.c.draw_id, inserted.c.account_id, inserted.c.receipt, inserted.c.arrived_at,
                  inserted.c.waitlist_opt_in, draw.c.closes_at, draw.c.result_at
                  ).select_from(inserted.join(draw, draw.c.id == inserted.c.draw_id))


@functools.cache
def _enter_asyncpg() -> raw_pg.Compiled:
    return raw_pg.Compiled.of(_enter_statement())
