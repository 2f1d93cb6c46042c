"""Fault switches of the HIS simulator, applied to the platform API (/v1/...) only, so that
the admin endpoints that turn them off keep working.

- latency_ms: wait this long before handling each request
- error_rate: this fraction of requests answer 500 HIS_INTERNAL without doing anything
- down: every request answers 503 HIS_DOWN
- hang: requests are accepted and never answered (until the client gives up)
- ack_lost: the request is handled and committed, then the connection is dropped without an answer
- ack_lost_only: with ack_lost, only requests whose path contains this text (e.g. "/confirm")
  lose their answer; the others are answered (empty: every request)
- clock_skew_s: the simulator's clock runs this many seconds ahead (negative: behind); it moves
  lock expiry and the freshness check of signatures, and lets tests expire locks without sleeping
- paths: when set, the switches above (but the clock) apply only to requests whose path starts
  with it (e.g. "/v1/locks": the lock's answer is lost but the order query after it works)
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Faults:
    latency_ms: int = 0
    error_rate: float = 0.0
    down: bool = False
    hang: bool = False
    ack_lost: bool = False
    ack_lost_only: str = ""
    clock_skew_s: float = 0.0
    paths: str = ""

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        for name, value in changes.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown fault switch {name}")
            # strict about booleans: bool("false") would switch a fault on
            if isinstance(getattr(self, name), bool) != isinstance(value, bool):
                raise ValueError(f"fault switch {name} takes {type(getattr(self, name)).__name__}")
        for name, value in changes.items():
            setattr(self, name, type(getattr(self, name))(value))
        self.error_rate = min(1.0, max(0.0, self.error_rate))
        self.latency_ms = max(0, self.latency_ms)
        return asdict(self)

    def reset(self) -> dict[str, Any]:
        return self.update(asdict(Faults()))

    def now(self) -> float:
        return time.time() + self.clock_skew_s


async def _json(send, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class FaultMiddleware:
    """Pure ASGI, because dropping a connection after the work is done needs control over
    what is (not) sent."""

    def __init__(self, app, faults: Faults) -> None:
        self.app, self.faults = app, faults

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        f = self.faults
        if f.paths and not scope["path"].startswith(f.paths):
            await self.app(scope, receive, send)
            return
        if f.down:
            await _json(send, 503, "HIS_DOWN", "the hospital system is down")
            return
        if f.hang:
            # accepted, never answered: wait for the client to hang up
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        if f.latency_ms:
            await asyncio.sleep(f.latency_ms / 1000)
        if f.error_rate and random.random() < f.error_rate:  # a fault, not a secret: plain random is right
            await _json(send, 500, "HIS_INTERNAL", "internal error of the hospital system")
            return
        if f.ack_lost and f.ack_lost_only in scope["path"]:
            async def swallow(message) -> None:
                return None
            await self.app(scope, receive, swallow)
            # Start an answer that promises a body and then return: the server closes the
            # connection mid-response, so the client sees no usable answer.
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")]})
            return
        await self.app(scope, receive, send)
