"""The HIS adapter: the simulator's protocol (docs/HIS_SIM.md) over httpx, signed per request.

Failure meanings, which every caller relies on:
- `HisUnavailable`: nothing happened at the HIS (no connection, 5xx, breaker open, or a read
  that timed out). Safe to retry.
- `HisOutcomeUnknown`: a mutating call timed out or its answer was lost: it may have taken
  effect. Resolve with `get_order` or repeat it (every mutating call is idempotent on the
  order id).
- `HisRefused`: the HIS answered no (POOL_FULL, SESSION_CANCELLED, ORDER_NOT_FOUND, ...).
- `HisBadAnswer`: an answer we cannot trust (malformed JSON, wrong shape, negative numbers).

Only idempotent calls are retried here (reads, once); the outbox retries the rest. Every call
is counted in `guahao_his_calls_total` and logged with ids only, never personal data.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from guahao.core import metrics
from guahao.his.breaker import Breaker
from guahao.his.sim.signing import canonical_path, sign_request

log = structlog.get_logger("guahao.his")


def order_id_for(booking_id: int) -> str:
    """Our order id at the HIS: the booking id, so every call about a booking is idempotent."""
    return f"gh-{booking_id:06d}"


class HisError(Exception):
    code = "his_error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.code)
        if code:
            self.code = code


class HisUnavailable(HisError):
    code = "his_unavailable"


class HisOutcomeUnknown(HisError):
    code = "his_outcome_unknown"


class HisBadAnswer(HisError):
    code = "his_bad_answer"


class HisRefused(HisError):
    def __init__(self, code: str, status: int, message: str = "") -> None:
        super().__init__(message or code, code=code)
        self.status = status


@dataclass(frozen=True)
class HisPool:
    pool: str
    capacity: int
    remaining: int


@dataclass(frozen=True)
class HisBand:
    band_id: str
    start: str  # "08:00", hospital local time
    end: str
    pools: tuple[HisPool, ...]


@dataclass(frozen=True)
class HisSession:
    session_id: str
    date: dt.date
    half: str  # am | pm
    state: str  # open | cancelled
    department_code: str
    department_name: str
    doctor_code: str
    doctor_name: str
    doctor_title: str
    bands: tuple[HisBand, ...]


@dataclass(frozen=True)
class HisOrder:
    order_id: str
    band_id: str
    session_id: str | None
    pool: str
    state: str  # locked | expired | confirmed | cancelled | no_show
    expires_at: dt.datetime | None
    visit_no: int | None
    patient_id: str | None
    cancel_reason: str | None


@dataclass(frozen=True)
class HisPatientRecord:
    patient_id: str
    card_no: str


def _str(data: dict, name: str, *, optional: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise HisBadAnswer(f"field {name!r} missing or not text")
    return value


def _count(data: dict, name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise HisBadAnswer(f"field {name!r} is not a count")
    return value


def _parse_order(data: Any) -> HisOrder:
    if not isinstance(data, dict):
        raise HisBadAnswer("order is not an object")
    expires = _str(data, "expires_at", optional=True)
    visit_no = data.get("visit_no")
    if visit_no is not None and (not isinstance(visit_no, int) or visit_no < 1):
        raise HisBadAnswer("visit_no is not a positive number")
    try:
        expires_at = dt.datetime.fromisoformat(expires) if expires else None
    except ValueError as exc:
        raise HisBadAnswer("expires_at is not a time") from exc
    return HisOrder(order_id=_str(data, "order_id"), band_id=_str(data, "band_id"),
                    session_id=_str(data, "session_id", optional=True), pool=_str(data, "pool"),
                    state=_str(data, "state"), expires_at=expires_at, visit_no=visit_no,
                    patient_id=_str(data, "patient_id", optional=True),
                    cancel_reason=_str(data, "cancel_reason", optional=True))


def _parse_session(data: Any) -> HisSession:
    if not isinstance(data, dict) or not isinstance(data.get("bands"), list):
        raise HisBadAnswer("session is not an object with bands")
    dept, doc = data.get("department") or {}, data.get("doctor") or {}
    if not isinstance(dept, dict) or not isinstance(doc, dict):
        raise HisBadAnswer("department/doctor is not an object")
    bands = []
    for band in data["bands"]:
        if not isinstance(band, dict) or not isinstance(band.get("pools"), list):
            raise HisBadAnswer("band is not an object with pools")
        pools = tuple(HisPool(pool=_str(p, "pool"), capacity=_count(p, "capacity"), remaining=_count(p, "remaining"))
                      for p in band["pools"] if isinstance(p, dict) or _bad("pool is not an object"))
        bands.append(HisBand(band_id=_str(band, "band_id"), start=_str(band, "start"), end=_str(band, "end"),
                             pools=pools))
    try:
        day = dt.date.fromisoformat(_str(data, "date"))
    except ValueError as exc:
        raise HisBadAnswer("date is not a date") from exc
    half = _str(data, "half")
    if half not in ("am", "pm"):
        raise HisBadAnswer("half is not am/pm")
    return HisSession(session_id=_str(data, "session_id"), date=day, half=half, state=_str(data, "state"),
                      department_code=_str(dept, "code"), department_name=_str(dept, "name"),
                      doctor_code=_str(doc, "code"), doctor_name=_str(doc, "name"),
                      doctor_title=_str(doc, "title", optional=True) or "", bands=tuple(bands))


def _bad(message: str) -> bool:
    raise HisBadAnswer(message)


class HisClient:
    """One hospital's HIS, as one platform. Create once per connection and reuse (it keeps a
    connection pool); `aclose` when the connection settings change."""

    def __init__(self, base_url: str, platform: str, key: bytes, *, timeout: float = 2.0,
                 breaker: Breaker | None = None, hospital_id: int | None = None) -> None:
        self.base_url, self.platform, self.hospital_id = base_url.rstrip("/"), platform, hospital_id
        self._key = key
        self.timeout = timeout
        self.breaker = breaker or Breaker()
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:  # created on first use, bound to the loop that uses it
            self._http = httpx.AsyncClient(base_url=self.base_url,
                                           timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 2.0)),
                                           limits=httpx.Limits(max_connections=50))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _call(self, operation: str, method: str, path: str, body: dict | None = None, *,
                    mutating: bool, allow: tuple[int, ...] = ()) -> Any:
        if not self.breaker.allow():
            metrics.HIS_CALLS.labels(operation, "breaker_open").inc()
            raise HisUnavailable("circuit breaker open", code="breaker_open")
        attempts = 1 if mutating else 2
        for attempt in range(1, attempts + 1):
            outcome, started = "ok", time.monotonic()
            try:
                return await self._once(method, path, body, mutating=mutating, allow=allow)
            except HisRefused as exc:
                outcome = exc.code
                self.breaker.released()
                raise
            except (HisUnavailable, HisOutcomeUnknown, HisBadAnswer) as exc:
                outcome = exc.code
                self.breaker.failed()
                if attempt == attempts or isinstance(exc, HisBadAnswer) or not self.breaker.allow():
                    raise
            finally:
                if outcome == "ok":
                    self.breaker.succeeded()
                metrics.HIS_CALLS.labels(operation, outcome if outcome == "ok" or outcome.startswith("his_")
                                         else "refused").inc()
                log.info("his_call", hospital_id=self.hospital_id, operation=operation, outcome=outcome,
                         attempt=attempt, ms=round((time.monotonic() - started) * 1000, 1))
        raise AssertionError("unreachable")

    async def _once(self, method: str, path: str, body: dict | None, *, mutating: bool,
                    allow: tuple[int, ...]) -> Any:
        raw = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        headers = sign_request(self._key, self.platform, method, path, raw)
        headers["content-type"] = "application/json"
        try:
            response = await self._client().request(method, canonical_path(path), content=raw, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise HisUnavailable(f"{method} {path}: {type(exc).__name__}") from exc  # never sent
        except httpx.HTTPError as exc:
            if mutating:  # sent, and maybe done: only the order's state can tell
                raise HisOutcomeUnknown(f"{method} {path}: {type(exc).__name__}") from exc
            raise HisUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        try:
            data = response.json()
        except ValueError as exc:
            if response.status_code >= 500:
                raise HisUnavailable(f"HTTP {response.status_code}") from exc
            raise HisBadAnswer(f"{method} {path}: HTTP {response.status_code}, not JSON") from exc
        if response.status_code >= 500:
            raise HisUnavailable(f"HTTP {response.status_code} {data.get('code') if isinstance(data, dict) else ''}")
        if response.status_code == 401:
            # our signature or clock is off: a configuration fault, nothing was done
            raise HisUnavailable(f"refused our signature: {data.get('code') if isinstance(data, dict) else ''}",
                                 code="his_auth_refused")
        if response.status_code >= 400 and response.status_code not in allow:
            code = data.get("code") if isinstance(data, dict) else None
            raise HisRefused(code if isinstance(code, str) and code else f"HTTP_{response.status_code}",
                             response.status_code)
        return data

    # --- the platform API -------------------------------------------------------------------
    async def availability(self, from_date: dt.date, to_date: dt.date) -> list[HisSession]:
        data = await self._call("availability", "GET",
                                f"/v1/availability?from={from_date.isoformat()}&to={to_date.isoformat()}",
                                mutating=False)
        if not isinstance(data, dict) or not isinstance(data.get("sessions"), list):
            raise HisBadAnswer("availability without sessions")
        return [_parse_session(s) for s in data["sessions"]]

    async def lock(self, order_id: str, band_id: str, pool: str, minutes: float) -> HisOrder:
        return _parse_order(await self._call("lock", "POST", "/v1/locks", {
            "order_id": order_id, "band_id": band_id, "pool": pool, "minutes": minutes}, mutating=True))

    async def confirm(self, order_id: str, patient_id: str | None = None) -> HisOrder:
        body = {"patient_id": patient_id} if patient_id else {}
        return _parse_order(await self._call("confirm", "POST", f"/v1/orders/{order_id}/confirm", body,
                                             mutating=True))

    async def cancel(self, order_id: str) -> HisOrder:
        return _parse_order(await self._call("cancel", "POST", f"/v1/orders/{order_id}/cancel", {}, mutating=True))

    async def no_show(self, order_id: str) -> HisOrder:
        return _parse_order(await self._call("no_show", "POST", f"/v1/orders/{order_id}/no-show", {},
                                             mutating=True))

    async def list_orders(self, from_date: dt.date, to_date: dt.date) -> list[HisOrder]:
        """Our orders (any state) of sessions dated from..to (at most 31 days), for drift checks."""
        data = await self._call("list_orders", "GET",
                                f"/v1/orders?from={from_date.isoformat()}&to={to_date.isoformat()}", mutating=False)
        if not isinstance(data, dict) or not isinstance(data.get("orders"), list):
            raise HisBadAnswer("order list without orders")
        return [_parse_order(o) for o in data["orders"]]

    async def get_order(self, order_id: str) -> HisOrder:
        return _parse_order(await self._call("get_order", "GET", f"/v1/orders/{order_id}", mutating=False))

    async def find_patient(self, id_number: str, name: str | None = None) -> HisPatientRecord | None:
        query = f"/v1/patients?id_number={quote(id_number, safe='')}" + (f"&name={quote(name, safe='')}" if name else "")
        try:
            data = await self._call("find_patient", "GET", query, mutating=False)
        except HisRefused as exc:
            if exc.code == "PATIENT_NOT_FOUND":
                return None
            raise
        return self._record(data)

    async def create_patient(self, id_number: str, name: str) -> HisPatientRecord:
        # idempotent at the HIS: the same ID number and name return the existing record
        return self._record(await self._call("create_patient", "POST", "/v1/patients",
                                             {"id_number": id_number, "name": name}, mutating=True))

    @staticmethod
    def _record(data: Any) -> HisPatientRecord:
        if not isinstance(data, dict):
            raise HisBadAnswer("patient record is not an object")
        return HisPatientRecord(patient_id=_str(data, "patient_id"), card_no=_str(data, "card_no"))
