"""Admission control: a bounded number of requests in flight per route class, per process.

Past the bound a request is answered at once with 503, `Retry-After` and a clear message,
instead of queueing for a database connection it would wait seconds for (the timeout pile-up
that takes a booking site down at 08:00: every waiting request holds memory and a socket, the
patients retry, and the queue only grows). Route classes keep one kind of load from starving
another: the release rush (holds) cannot lock the hospital's window (staff) or the payment
provider's callbacks (never limited: refusing a payment notice only makes the provider retry
later and delays a confirmation) out of the process.

The counters are plain integers: a process serves requests on one event loop, and the
increment and the check happen without an await between them.
"""
from __future__ import annotations

from html import escape

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from guahao.core.errors import GuahaoError, problem
from guahao.core.i18n import negotiate

REFUSED = Counter("guahao_admission_refused_total", "Requests refused because their class was full",
                  ["route_class"])
NEVER_LIMITED = ("/healthz", "/readyz", "/metrics", "/static/", "/api/v1/payments/notify/")
RETRY_AFTER_SECONDS = 2
# the hold of the JSON API and of the FHIR facade ($book may hold too): one rush, one class
HOLD_PATHS = ("/api/v1/bookings", "/fhir/R4/Appointment/$hold", "/fhir/R4/Appointment/$book")
MACHINE_PREFIXES = ("/api/", "/fhir/")  # answered with problem+json, not a page


class Overloaded(GuahaoError):
    code, status = "overloaded", 503
    zh = "当前访问人数过多,请{seconds}秒后重试。您的请求未被处理,不会重复挂号。"
    en = "Too many people are using the service right now; please try again in {seconds} s. " \
         "Your request was not processed, so nothing was booked twice."


def route_class(method: str, path: str) -> str | None:
    """Which limit a request counts against; None for the ones never limited."""
    if path.startswith(NEVER_LIMITED):
        return None
    if method == "POST" and (path in HOLD_PATHS or path.startswith("/book/")):
        return "hold"
    if path.startswith(("/api/v1/staff", "/staff")):
        return "staff"
    if path.startswith(MACHINE_PREFIXES):
        return "api"
    return "page"


def parse_limits(text: str) -> dict[str, int]:
    """`hold=2000,api=1000` → {"hold": 2000, "api": 1000}; a class not named is unlimited."""
    limits: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in ("hold", "api", "page", "staff") or not value.isdigit() or int(value) < 1:
            raise ValueError(f"admission limit {part!r}: expected hold|api|page|staff=<positive number>")
        limits[name] = int(value)
    return limits


def refusal(request: Request, exc: GuahaoError, retry_after: int) -> Response:
    """503 with Retry-After: problem+json for the API, a plain page for a browser (also used
    by core/maintenance.py)."""
    locale = negotiate(request.headers.get("accept-language"))
    if not request.url.path.startswith(MACHINE_PREFIXES):
        title = "请稍后再试" if locale != "en" else "Please try again shortly"
        body = (f'<!doctype html><html lang="{locale}"><head><meta charset="utf-8">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<link rel="stylesheet" href="/static/web/web.css"><title>{title}</title></head>'
                f'<body><main class="page"><h1>{title}</h1><p>{escape(exc.message(locale))}</p></main></body></html>')
        response: Response = HTMLResponse(body, status_code=exc.status)
    else:
        response = problem(request, exc.status, exc.code, exc.message(locale))
    response.headers["Retry-After"] = str(retry_after)
    return response


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, *, limits: dict[str, int]) -> None:
        self.app = app
        self.limits = limits
        self.in_flight = dict.fromkeys(limits, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = route_class(scope.get("method", ""), scope.get("path", "")) if scope["type"] == "http" else None
        if kind is None or kind not in self.limits:
            await self.app(scope, receive, send)
            return
        if self.in_flight[kind] >= self.limits[kind]:
            REFUSED.labels(kind).inc()
            response = refusal(Request(scope), Overloaded(seconds=RETRY_AFTER_SECONDS), RETRY_AFTER_SECONDS)
            await response(scope, receive, send)
            return
        self.in_flight[kind] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight[kind] -= 1
