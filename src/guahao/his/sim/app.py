"""The HIS simulator's HTTP API (the contract is docs/HIS_SIM.md).

Platform API, every request signed (see signing.py):
  GET  /v1/availability?from=YYYY-MM-DD&to=YYYY-MM-DD   remaining per pool per band
  POST /v1/locks                      {order_id, band_id, pool, minutes}   idempotent on order_id
  POST /v1/orders/{order_id}/confirm  {patient_id?}  -> visit_no (就诊序号)
  POST /v1/orders/{order_id}/cancel   release a lock or cancel a visit
  POST /v1/orders/{order_id}/no-show  the patient of a confirmed visit did not come
  GET  /v1/orders?from=&to=           this platform's orders of sessions in a date range
  GET  /v1/orders/{order_id}
  GET  /v1/patients?id_number=...&name=...   look up a patient record (建档)
  POST /v1/patients                   {id_number, name}  create (idempotent on id_number)
Hospital staff (Bearer admin token): /admin/seed, /admin/faults, /admin/window/sales,
  /admin/sessions/{id}/cancel, /admin/capacity, /admin/orders/{platform}/{order_id}/cancel
"""
from __future__ import annotations

import datetime as dt
import hmac
import json
import re
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from guahao.his.sim import seed, signing
from guahao.his.sim.faults import FaultMiddleware, Faults
from guahao.his.sim.store import WINDOW, HisError, Store

ORDER_ID = re.compile(r"^[A-Za-z0-9_\-]{6,64}$")
PLATFORM = re.compile(r"^[a-z0-9_\-]{1,32}$")
ID_NUMBER = re.compile(r"^[0-9]{17}[0-9Xx]$")
HOSPITAL_TZ = ZoneInfo("Asia/Shanghai")


def _bad(message: str) -> HisError:
    return HisError("BAD_REQUEST", message, 400)


def _field(data: dict[str, Any], name: str, kind: type, *, pattern: re.Pattern | None = None) -> Any:
    value = data.get(name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) or (pattern is not None and not pattern.match(value)):
        raise _bad(f"missing or invalid field {name}")
    return value


def create_app(*, db_path: str, key: str, faults: dict[str, Any] | None = None) -> FastAPI:
    switches = Faults()
    switches.update(faults or {})
    store = Store(db_path, clock=switches.now)
    token = signing.admin_token(key)
    app = FastAPI(title="his-sim: a simulated hospital information system", docs_url=None, redoc_url=None)
    app.state.store, app.state.faults = store, switches

    @app.exception_handler(HisError)
    async def _his_error(request: Request, exc: HisError):
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect):
        return Response(status_code=499)  # the client gave up (e.g. during injected latency): nobody reads this

    async def _json_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise _bad("the body is not JSON") from None
        if not isinstance(data, dict):
            raise _bad("the body must be a JSON object")
        return data

    async def platform_of(request: Request) -> str:
        """The verified platform of a signed request; 401 otherwise."""
        h = request.headers
        platform, ts = h.get(signing.HEADER_PLATFORM, ""), h.get(signing.HEADER_TIMESTAMP, "")
        nonce, sig = h.get(signing.HEADER_NONCE, ""), h.get(signing.HEADER_SIGNATURE, "")
        if not (PLATFORM.match(platform) and ts.isdigit() and 8 <= len(nonce) <= 64 and sig) or platform == WINDOW:
            raise HisError("AUTH_MISSING", "missing or malformed signature headers", 401)
        # the path and query exactly as received, before any decoding
        raw_path, query = request.scope.get("raw_path") or request.url.path.encode(), request.scope["query_string"]
        path = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        expected = signing.signature(signing.platform_key(key, platform), request.method, path, ts, nonce,
                                     await request.body())
        if not hmac.compare_digest(expected, sig):
            raise HisError("BAD_SIGNATURE", "the signature does not match", 401)
        if abs(switches.now() - int(ts)) > signing.MAX_SKEW_SECONDS:
            raise HisError("STALE_TIMESTAMP", "the timestamp is more than 5 minutes off", 401)
        # nonces are kept twice the skew window: an older replay is refused as stale anyway
        if not store.use_nonce(platform, nonce, keep_seconds=2 * signing.MAX_SKEW_SECONDS):
            raise HisError("REPLAYED_NONCE", "this nonce was already used", 401)
        return platform

    def staff(request: Request) -> None:
        if not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}"):
            raise HisError("AUTH_MISSING", "hospital staff only", 401)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    # --- platform API -------------------------------------------------------------------------
    @app.get("/v1/availability")
    async def availability(request: Request) -> dict:
        platform = await platform_of(request)
        q = request.query_params
        try:
            start, end = dt.date.fromisoformat(q.get("from", "")), dt.date.fromisoformat(q.get("to", ""))
        except ValueError:
            raise _bad("from and to must be dates (YYYY-MM-DD)") from None
        if not start <= end <= start + dt.timedelta(days=31):
            raise _bad("from..to must be a range of at most 31 days")
        return {"sessions": store.availability(platform, start.isoformat(), end.isoformat())}

    @app.post("/v1/locks")
    async def lock(request: Request) -> dict:
        platform = await platform_of(request)
        data = await _json_body(request)
        minutes = _field(data, "minutes", float)
        if not 0 < minutes <= 60:
            raise _bad("minutes must be in (0, 60]")
        return store.lock(platform, _field(data, "order_id", str, pattern=ORDER_ID), _field(data, "band_id", str),
                          _field(data, "pool", str), minutes)

    @app.post("/v1/orders/{order_id}/confirm")
    async def confirm(order_id: str, request: Request) -> dict:
        platform = await platform_of(request)
        patient_id = (await _json_body(request)).get("patient_id")
        if patient_id is not None and not isinstance(patient_id, str):
            raise _bad("patient_id must be a string")
        return store.confirm(platform, order_id, patient_id)

    @app.post("/v1/orders/{order_id}/cancel")
    async def cancel(order_id: str, request: Request) -> dict:
        return store.cancel(await platform_of(request), order_id)

    @app.post("/v1/orders/{order_id}/no-show")
    async def no_show(order_id: str, request: Request) -> dict:
        return store.no_show(await platform_of(request), order_id)

    @app.get("/v1/orders")
    async def list_orders(request: Request) -> dict:
        platform = await platform_of(request)
        q = request.query_params
        try:
            start, end = dt.date.fromisoformat(q.get("from", "")), dt.date.fromisoformat(q.get("to", ""))
        except ValueError:
            raise _bad("from and to must be dates (YYYY-MM-DD)") from None
        if not start <= end <= start + dt.timedelta(days=31):
            raise _bad("from..to must be a range of at most 31 days")
        return {"orders": store.list_orders(platform, start.isoformat(), end.isoformat())}

    @app.get("/v1/orders/{order_id}")
    async def get_order(order_id: str, request: Request) -> dict:
        return store.get(await platform_of(request), order_id)

    @app.get("/v1/patients")
    async def find_patient(request: Request) -> dict:
        await platform_of(request)
        id_number = request.query_params.get("id_number", "")
        if not ID_NUMBER.match(id_number):
            raise _bad("id_number must be an 18-character resident ID number")
        return store.find_patient(id_number.upper(), request.query_params.get("name"))

    @app.post("/v1/patients")
    async def create_patient(request: Request) -> dict:
        await platform_of(request)
        data = await _json_body(request)
        name = _field(data, "name", str).strip()
        if not 1 <= len(name) <= 50:
            raise _bad("name must be 1 to 50 characters")
        return store.create_patient(_field(data, "id_number", str, pattern=ID_NUMBER).upper(), name)

    # --- the hospital's own staff (out of band) ---------------------------------------------
    @app.post("/admin/seed")
    async def seed_demo(request: Request) -> dict:
        """Wipe everything and load the demo hospital from `start` (default: today in the
        hospital's time zone, by the simulator's clock)."""
        staff(request)
        data = await _json_body(request)
        today = dt.datetime.fromtimestamp(switches.now(), HOSPITAL_TZ).date()
        try:
            start = dt.date.fromisoformat(data["start"]) if data.get("start") else today
        except (TypeError, ValueError):
            raise _bad("start must be a date (YYYY-MM-DD)") from None
        days = data.get("days", 7)
        if not isinstance(days, int) or not 1 <= days <= 31:
            raise _bad("days must be 1 to 31")
        store.reset()
        store.load(seed.demo(start, days))
        return {"start": start.isoformat(), "platforms": list(seed.PLATFORMS)}

    @app.get("/admin/faults")
    async def get_faults(request: Request) -> dict:
        staff(request)
        return vars(switches)

    @app.post("/admin/faults")
    async def set_faults(request: Request) -> dict:
        staff(request)
        data = await _json_body(request)
        try:
            return switches.reset() if data.get("reset") else switches.update(data)
        except (TypeError, ValueError) as exc:
            raise _bad(str(exc)) from None

    @app.post("/admin/window/sales")
    async def window_sale(request: Request) -> dict:
        staff(request)
        data = await _json_body(request)
        patient_id = data.get("patient_id")
        if patient_id is not None and not isinstance(patient_id, str):
            raise _bad("patient_id must be a string")
        return store.window_sale(_field(data, "band_id", str), patient_id)

    @app.post("/admin/sessions/{session_id}/cancel")
    async def cancel_session(session_id: str, request: Request) -> dict:
        staff(request)
        return store.cancel_session(session_id)

    @app.post("/admin/capacity")
    async def set_capacity(request: Request) -> dict:
        staff(request)
        data = await _json_body(request)
        capacity = _field(data, "capacity", int)
        if capacity < 0:
            raise _bad("capacity must be >= 0")
        return store.set_capacity(_field(data, "band_id", str), _field(data, "pool", str), capacity)

    @app.post("/admin/orders/{platform}/{order_id}/cancel")
    async def cancel_at_window(platform: str, order_id: str, request: Request) -> dict:
        """The patient cancels a platform's order at the hospital's window."""
        staff(request)
        return store.cancel(platform, order_id, reason="window")

    return FaultMiddleware(app, switches)
