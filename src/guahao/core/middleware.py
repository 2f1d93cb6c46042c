"""Request id, access log and request metrics."""
from __future__ import annotations

import secrets
import time

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("guahao_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("guahao_http_request_seconds", "HTTP request latency", ["method", "route"])
log = structlog.get_logger("guahao.http")


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): binds a request id to every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        request_id = incoming if incoming.replace("-", "").isalnum() and incoming else secrets.token_hex(16)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            REQUESTS.labels(scope["method"], path, str(status)).inc()
            LATENCY.labels(scope["method"], path).observe(elapsed)
            log.info("request", method=scope["method"], route=path, status=status, ms=round(elapsed * 1000, 1))
            structlog.contextvars.unbind_contextvars("request_id")
