"""Security headers on every answer: pages, API, static files and errors alike.

The pages load nothing from a third party (htmx, WeUI, axe are vendored), so the content
policy can be strict: scripts and styles from our own origin only, no inline script, no
plugins, and no framing by anyone (clickjacking of the booking and payment buttons).
Two deliberate gaps:
- `form-action` is left out: the pay form's answer is a redirect to the payment provider's
  cashier, and Chromium applies form-action to that redirect too. CSRF tokens guard our forms.
- Swagger UI at /docs starts itself with an inline script FastAPI writes; that one page may
  run inline script (it shows public API documentation, no personal data, no session forms).
"""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",  # WeUI draws its icons as data: URIs; QR codes are same-origin SVG
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
}
_DOCS_POLICY = {**_POLICY, "script-src": "'self' 'unsafe-inline'"}


def _render(policy: dict[str, str]) -> bytes:
    return "; ".join(f"{name} {value}" for name, value in policy.items()).encode()


COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),  # for browsers that predate frame-ancestors
    (b"referrer-policy", b"same-origin"),  # booking ids in our paths stay with us
    (b"cross-origin-opener-policy", b"same-origin"),
    # geolocation for "nearby hospitals" (asked only with consent), the camera for the window's
    # QR scan; nothing else
    (b"permissions-policy", b"geolocation=(self), camera=(self), microphone=(), payment=()"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeadersMiddleware:
    """Pure ASGI: adds the headers to the response start; a handler's own value wins."""

    def __init__(self, app: ASGIApp, *, https: bool, docs_path: str = "/docs") -> None:
        self.app = app
        self.docs_path = docs_path
        self.extra = [*COMMON, HSTS] if https else list(COMMON)
        self.policy = _render(_POLICY)
        self.docs_policy = _render(_DOCS_POLICY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.docs_policy if scope.get("path") == self.docs_path else self.policy

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                for name, value in [(b"content-security-policy", policy), *self.extra]:
                    if name not in present:
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
