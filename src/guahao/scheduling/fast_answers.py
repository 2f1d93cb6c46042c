"""A poll of a cached availability answer, answered in front of FastAPI.

Around a release most requests are patients refreshing one doctor's or one department's
availability, and within a second every one of them gets the same answer: the one the cache
keeps (avail_cache.py), sent as the JSON made once for it (`availability.rendered`). After the
stampede at each second was gone, what a poll still cost was mostly FastAPI's routing and
dependency solving around that cache look-up (docs/BENCHMARKS.md, browse storm).

`CachedAvailability` answers `GET /api/v1/doctors/{id}/availability` and
`/api/v1/departments/{id}/availability` without a query string itself when the cache holds
the answer for the caller's `now`: same bytes, same status and media type as the route, and
every middleware in front of it (access log, security headers, admission, maintenance) still
applies. Anything else, a miss included, goes to the route, which computes, caches and answers
as before; the freshness rule is the cache's alone.
"""
from __future__ import annotations

import re

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from guahao.scheduling import avail_cache, availability

_PATH = re.compile(r"^/api/v1/(doctors|departments)/(\d{1,18})/availability$")


class CachedAvailability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _answer(scope) if scope["type"] == "http" and scope.get("method") == "GET" else None
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)


def _answer(scope: Scope) -> Response | None:
    match = _PATH.match(scope.get("path", ""))
    if match is None or scope.get("query_string"):
        return None
    kind, ident = match.group(1), int(match.group(2))
    key = ("doctor", ident, None, None) if kind == "doctors" else ("department", ident, None, None, None)
    state = scope["app"].state
    hit = avail_cache.lookup(state.db, key, state.clock.now())
    if hit is None or hit.source in ("his", "his_unavailable"):
        return None
    return Response(availability.rendered(hit), media_type="application/json")
