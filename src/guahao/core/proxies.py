"""The client's address behind our own reverse proxies.

Every rate limit keyed by client address needs the patient's address, not the load
balancer's (otherwise everybody behind it shares one bucket). X-Forwarded-For is client
input, though: anybody can send one. So it is believed only when the connection comes from
an address in `trusted_proxies`, and only as far as the chain of trusted hops goes: walking
the header from the right (each proxy appends the address it saw), the first hop that is
not one of our proxies is the client. Everything left of it may be forged and is ignored.

This middleware is the one place that decides; uvicorn's own proxy-header handling should
be off (`proxy_headers=False`) so the two cannot disagree.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(value: str) -> Address | None:
    value = value.strip().strip('"')
    if value.startswith("["):  # "[2001:db8::1]:443"
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # "203.0.113.7:5123"
        value = value.partition(":")[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusted(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client_address(self, peer: str, forwarded_for: str) -> str:
        """The client's address given the connecting peer and the X-Forwarded-For value."""
        if not self.trusted(_parse(peer)):
            return peer
        client = peer
        for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
            address = _parse(hop)
            if address is None:  # garbage: only a client writes that; keep the last real hop
                break
            client = str(address)
            if not self.trusted(address):
                break
        return client


class TrustedProxyMiddleware:
    """Rewrites `scope["client"]` (and the scheme, from X-Forwarded-Proto) for requests that
    arrive through a trusted proxy, so `request.client.host` is the patient's address."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.proxies = TrustedProxies(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and self.proxies.trusted(_parse(client[0])):
            forwarded_for: list[str] = []
            proto = None
            for name, value in scope.get("headers") or ():
                if name == b"x-forwarded-for":
                    forwarded_for.append(value.decode("latin-1"))
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").split(",")[-1].strip().lower()
            scope = dict(scope)
            scope["client"] = (self.proxies.client_address(client[0], ",".join(forwarded_for)), 0)
            if proto in ("http", "https"):
                ws = scope["type"] == "websocket"
                scope["scheme"] = {"http": "ws", "https": "wss"}[proto] if ws else proto
        await self.app(scope, receive, send)
