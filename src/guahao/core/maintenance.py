"""Maintenance mode in front of the app: while it is on, patients' requests (pages, API,
holds) get 503 with the expected end; everything else keeps working: the back office (the
operator switches it off from there), payment callbacks, health checks and metrics, and the
jobs (they do not come through HTTP). Requests already inside the app when it is switched on
finish normally: the check happens only when a request arrives.

The switch itself (operator row or deploy file, cached per process) is staff/maintenance.py,
handed in by app.py as `current(now, monotonic)`.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from guahao.core.admission import refusal, route_class
from guahao.core.clock import SHANGHAI, Clock
from guahao.core.errors import GuahaoError

DEFAULT_RETRY_SECONDS = 300


class UnderMaintenance(GuahaoError):
    code, status = "maintenance", 503
    zh = "系统维护中{until_zh},请稍后再试。{note}"
    en = "guahao is down for maintenance{until_en}; please try again later. {note}"


def _error(state: Any) -> UnderMaintenance:
    until = state.until.astimezone(SHANGHAI) if state.until else None
    return UnderMaintenance(until_zh=f",预计{until.month}月{until.day}日 {until:%H:%M}(北京时间)恢复" if until else "",
                            until_en=f" until about {until:%d %b %H:%M} (Beijing time)" if until else "",
                            note=state.note or "")


class MaintenanceMiddleware:
    def __init__(self, app: ASGIApp, *, current: Callable[[Any, float], Awaitable[Any]], clock: Clock) -> None:
        self.app, self.current, self.clock = app, current, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = route_class(scope.get("method", ""), scope.get("path", "")) if scope["type"] == "http" else None
        if kind in (None, "staff"):
            await self.app(scope, receive, send)
            return
        now = self.clock.now()
        state = await self.current(now, time.monotonic())
        if state is None:
            await self.app(scope, receive, send)
            return
        retry = DEFAULT_RETRY_SECONDS
        if state.until is not None:
            retry = max(60, int((state.until - now).total_seconds()))
        await refusal(Request(scope), _error(state), retry)(scope, receive, send)
