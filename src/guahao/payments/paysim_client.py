"""The payment port over HTTP to the sandbox provider (`guahao paysim`).

Timeouts are short and every failure to get an answer is a ProviderError, which callers turn
into "retry later" (jobs) or a 503 (requests); a clear refusal is ProviderRefused. The
notification timestamp window is measured on the wall clock, not the domain clock: it
guards against replays of messages the provider signed with its own wall clock.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import httpx

from guahao.core.clock import Clock, SystemClock
from guahao.payments import wire
from guahao.payments.paysim.app import api_token
from guahao.payments.port import (
    BillEntry,
    Notification,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    ProviderRefused,
)


class SandboxPayments:
    name = "paysim"

    def __init__(self, base_url: str, key: str, *, timeout: float = 5.0, wall_clock: Clock | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 2.0))
        self._wall_clock = wall_clock or SystemClock()
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        # created on first use, so that it binds to the event loop that uses it
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout,
                                             headers={"Authorization": f"Bearer {api_token(self._key)}"},
                                             limits=httpx.Limits(max_connections=20))
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http().request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderError(f"{method} {path}: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code in (401, 429):
            raise ProviderError(f"{method} {path}: HTTP {response.status_code} {_code(response)}")
        return response

    async def create_payment(self, *, out_trade_no: str, amount: int, description: str, notify_url: str,
                             return_url: str) -> str:
        response = await self._call("POST", "/v1/payments", json={
            "out_trade_no": out_trade_no, "amount": amount, "description": description[:127],
            "notify_url": notify_url, "return_url": return_url})
        _refuse_unless_ok(response)
        return response.json()["pay_url"]

    async def query(self, out_trade_no: str) -> ProviderPayment | None:
        response = await self._call("GET", f"/v1/payments/{out_trade_no}")
        if response.status_code == 404:
            return None
        _refuse_unless_ok(response)
        try:
            return wire.parse_payment(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError("query: unreadable answer") from exc

    async def close(self, out_trade_no: str) -> None:
        _refuse_unless_ok(await self._call("POST", f"/v1/payments/{out_trade_no}/close"))

    async def refund(self, *, out_trade_no: str, out_refund_no: str, amount: int) -> ProviderRefund:
        response = await self._call("POST", "/v1/refunds", json={
            "out_trade_no": out_trade_no, "out_refund_no": out_refund_no, "amount": amount})
        _refuse_unless_ok(response)
        data = response.json()
        return ProviderRefund(out_refund_no=data["out_refund_no"], out_trade_no=data["out_trade_no"],
                              amount=data["amount"], refund_id=data["refund_id"], status=data["status"],
                              succeeded_at=wire.parse_time(data.get("success_time")))

    async def bill(self, day: dt.date) -> list[BillEntry]:
        response = await self._call("GET", "/v1/bills", params={"date": day.isoformat()})
        _refuse_unless_ok(response)
        return [BillEntry(kind=e["kind"], out_trade_no=e["out_trade_no"], amount=e["amount"],
                          at=wire.parse_time(e["time"]), txn_id=e.get("transaction_id"),
                          out_refund_no=e.get("out_refund_no"))
                for e in response.json()["entries"]]

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes) -> Notification:
        wire.verify(self._key, headers, body, now=self._wall_clock.now())
        return wire.parse_notification(body)


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", ""))
    except ValueError:
        return ""


def _refuse_unless_ok(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise ProviderRefused(_code(response) or f"HTTP_{response.status_code}")
