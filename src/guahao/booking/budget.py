"""Bots at release time, first line: the hold budget of a session token and of a client address.

New hold requests are counted per session token (hashed) and per client address before the
token is even looked up, so a burst is refused for the cost of a counter (memory, or Redis
when configured), with 429 + Retry-After, and never queues for the database in front of
other patients. The address limit is loose: carrier NAT puts many phones behind one address.

For the JSON hold route the check runs in `HoldBudgetMiddleware`, in front of FastAPI: a
refusal then costs no body parsing, no routing and no dependency solving. `guahao bench bots`
measured what that matters: 10,000 refusals through FastAPI were 20-30 s of CPU on a 2-CPU
machine, which the other patients' holds waited for (docs/BENCHMARKS.md). The hold page calls
`spend` itself (its form is parsed first for the CSRF check anyway); the route's dependency
calls it too and does nothing when the middleware already spent the budget of this request.

A refusal here is a tarpit: it is answered after `hold_refusal_delay_ms` (1 s, at most its
Retry-After). Cheap as each refusal was, a bot firing on 128 keep-alive connections still got
one answered every couple of milliseconds, and that CPU was taken from the hold transactions of
everyone else (their p99 went from 6 s to 19 s, docs/BENCHMARKS.md). Held back, each of its
connections sends at most one request a second, and a sleeping refusal costs nothing; a patient
who really was refused loses nothing either, being told to wait longer than that anyway.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from guahao.core import metrics
from guahao.core.deps import bearer_or_cookie
from guahao.core.errors import GuahaoError, RateLimited, problem
from guahao.core.i18n import request_language

HOLD_PATH = "/api/v1/bookings"
_SPENT = "hold_budget_spent"


async def limit(request: Request, rules: str, kind: str, key: str) -> None:
    try:
        await request.app.state.limiter.hit(rules, kind, key)
    except GuahaoError as exc:
        metrics.hold_answered(exc.status, {"code": exc.code})
        raise


async def spend(request: Request, kind: str = "hold") -> None:
    """Count this request against its token's and its address's budget of `kind` ("hold", or
    "draw-entry" for entering a draw); RateLimited when either is exhausted. Once per request."""
    if getattr(request.state, _SPENT, False):
        return
    settings = request.app.state.settings
    token = bearer_or_cookie(request)
    if token:  # a hash, so the limiter's store (Redis) never holds a usable token
        await limit(request, settings.hold_limit_per_account, f"{kind}-token",
                    hashlib.sha256(token.encode()).hexdigest()[:32])
    await limit(request, settings.hold_limit_per_address, f"{kind}-address",
                request.client.host if request.client else "unknown")
    setattr(request.state, _SPENT, True)


class HoldBudgetMiddleware:
    """`spend` for POST /api/v1/bookings, and for the POST paths given as `also` (kind, regex:
    a draw's entries, the same burst at the same instant), answered here when refused
    (problem+json, 429, Retry-After, in the caller's language)."""

    def __init__(self, app: ASGIApp, also: Sequence[tuple[str, re.Pattern[str]]] = ()) -> None:
        self.app = app
        self.also = tuple(also)

    def _kind(self, scope: Scope) -> str | None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return None
        path = scope.get("path", "")
        if path == HOLD_PATH:
            return "hold"
        return next((kind for kind, pattern in self.also if pattern.match(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = self._kind(scope)
        if kind is not None:
            request = Request(scope)
            try:
                await spend(request, kind)
            except RateLimited as exc:
                delay = min(request.app.state.settings.hold_refusal_delay_ms / 1000, exc.params["retry_after"])
                if delay > 0:
                    await asyncio.sleep(delay)
                locale = request_language(request.headers, None)
                response = problem(request, exc.status, exc.code, exc.message(locale),
                                   retry_after=exc.params["retry_after"])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
