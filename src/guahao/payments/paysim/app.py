"""The sandbox payment provider's HTTP API, cashier page and admin switches.

Merchant API (Bearer token derived from the shared key, see `api_token`):
  POST /v1/payments                          open a payment (idempotent by out_trade_no)
  GET  /v1/payments/{out_trade_no}           query
  POST /v1/payments/{out_trade_no}/close     close an unpaid payment
  POST /v1/refunds                           refund (idempotent by out_refund_no)
  GET  /v1/refunds/{out_refund_no}
  GET  /v1/bills?date=YYYY-MM-DD             the day's payments and refunds (对账单)
What the patient (or a test standing in for one) does:
  GET  /pay/{out_trade_no}                   cashier page with 确认支付 / 模拟支付失败
  POST /pay/{out_trade_no}/pay|fail          the page's buttons (HTML)
  POST /v1/payments/{out_trade_no}/pay|fail  the same as JSON
Admin (tests and demos): /v1/admin/switches, /v1/admin/reset, /v1/admin/notifications,
  /v1/admin/notifications/{id}/redeliver, /v1/admin/payments/{no}/tamper, /v1/admin/refunds
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from guahao.payments import wire
from guahao.payments.paysim import page
from guahao.payments.paysim.ledger import Ledger, LedgerError
from guahao.payments.paysim.notifier import Notifier

TRADE_NO = r"^[A-Za-z0-9_\-|*]{6,32}$"


def api_token(key: str) -> str:
    """The merchant's API bearer token (a real provider signs each request with the
    merchant's private key; a token derived from the shared key is enough for a sandbox)."""
    return hmac.new(key.encode(), b"paysim-api", hashlib.sha256).hexdigest()


class Unauthorized(LedgerError):
    status = 401


class PaymentCreate(BaseModel):
    out_trade_no: str = Field(pattern=TRADE_NO)
    amount: int = Field(gt=0, le=10**9)
    description: str = Field(min_length=1, max_length=127)
    notify_url: str = Field(pattern=r"^https?://", max_length=500)
    return_url: str | None = Field(default=None, pattern=r"^https?://", max_length=500)


class RefundCreate(BaseModel):
    out_trade_no: str = Field(pattern=TRADE_NO)
    out_refund_no: str = Field(pattern=r"^[A-Za-z0-9_\-|*@]{1,64}$")
    amount: int = Field(gt=0)


class Tamper(BaseModel):
    amount: int = Field(gt=0)


def create_app(*, db_path: str, key: str, retry_scale: float = 1.0, public_url: str | None = None) -> FastAPI:
    ledger = Ledger(db_path)
    notifier = Notifier(ledger, key, retry_scale=retry_scale)
    token = api_token(key)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await notifier.start()
        try:
            yield
        finally:
            await notifier.stop()

    app = FastAPI(title="paysim: sandbox payment provider", lifespan=lifespan)
    app.state.ledger, app.state.notifier = ledger, notifier

    @app.exception_handler(LedgerError)
    async def _ledger_error(request: Request, exc: LedgerError):
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    def merchant(authorization: Annotated[str | None, Header()] = None) -> None:
        if not authorization or not hmac.compare_digest(authorization, f"Bearer {token}"):
            raise Unauthorized("SIGN_ERROR", "商户认证失败") from None

    auth = [Depends(merchant)]

    def base(request: Request) -> str:
        return (public_url or str(request.base_url)).rstrip("/")

    def payment_view(row, request: Request) -> dict[str, Any]:
        return {**wire.payment_json(ledger.as_payment(row)), "pay_url": f"{base(request)}/pay/{row['out_trade_no']}"}

    def refund_view(row) -> dict[str, Any]:
        return {"out_refund_no": row["out_refund_no"], "out_trade_no": row["out_trade_no"], "amount": row["amount"],
                "refund_id": row["refund_id"], "status": "SUCCESS",
                "success_time": wire.iso(dt.datetime.fromtimestamp(row["created_at"], dt.UTC))}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/v1/payments", dependencies=auth)
    async def create_payment(body: PaymentCreate, request: Request) -> dict:
        return payment_view(ledger.create(**body.model_dump()), request)

    @app.get("/v1/payments/{out_trade_no}", dependencies=auth)
    async def query_payment(out_trade_no: str, request: Request) -> dict:
        return payment_view(ledger.get(out_trade_no), request)

    @app.post("/v1/payments/{out_trade_no}/close", dependencies=auth)
    async def close_payment(out_trade_no: str, request: Request) -> dict:
        return payment_view(ledger.close(out_trade_no), request)

    @app.post("/v1/payments/{out_trade_no}/{action}")
    async def act_json(out_trade_no: str, action: str, request: Request) -> dict:
        row = _act(out_trade_no, action)
        return payment_view(row, request)

    def _act(out_trade_no: str, action: str):
        if action not in ("pay", "fail"):
            raise LedgerError("NOT_FOUND", "无此操作")
        row = ledger.pay(out_trade_no) if action == "pay" else ledger.fail(out_trade_no)
        notifier.wake.set()
        return row

    @app.post("/v1/refunds", dependencies=auth)
    async def create_refund(body: RefundCreate) -> dict:
        return refund_view(ledger.refund(**body.model_dump()))

    @app.get("/v1/refunds/{out_refund_no}", dependencies=auth)
    async def get_refund(out_refund_no: str) -> dict:
        return refund_view(ledger.get_refund(out_refund_no))

    @app.get("/v1/bills", dependencies=auth)
    async def bills(date: dt.date) -> dict:
        return {"date": date.isoformat(), "entries": ledger.bill(date)}

    # --- the cashier page ---------------------------------------------------------------------
    @app.get("/pay/{out_trade_no}", response_class=HTMLResponse)
    async def cashier(out_trade_no: str) -> HTMLResponse:
        try:
            return HTMLResponse(page.cashier(ledger.get(out_trade_no)))
        except LedgerError as exc:
            return HTMLResponse(page._shell("订单不存在", f"<h1>{exc.message}</h1>"), status_code=exc.status)

    @app.post("/pay/{out_trade_no}/{action}", response_class=HTMLResponse)
    async def act_page(out_trade_no: str, action: str) -> HTMLResponse:
        try:
            row = _act(out_trade_no, action)
        except LedgerError as exc:
            try:
                row = ledger.get(out_trade_no)
            except LedgerError:
                return HTMLResponse(page._shell("订单不存在", f"<h1>{exc.message}</h1>"), status_code=404)
            return HTMLResponse(page.result(row, ok=False, message=exc.message), status_code=exc.status)
        ok = row["state"] in ("SUCCESS", "REFUND")
        return HTMLResponse(page.result(row, ok=ok, message="付款已完成,商户将收到支付通知。" if ok else "支付失败,请返回重试。"))

    # --- admin ------------------------------------------------------------------------------
    @app.get("/v1/admin/switches", dependencies=auth)
    async def get_switches() -> dict:
        return vars(ledger.switches)

    @app.post("/v1/admin/switches", dependencies=auth)
    async def set_switches(request: Request) -> dict:
        ledger.switches.update(await request.json())
        return vars(ledger.switches)

    @app.post("/v1/admin/reset", dependencies=auth)
    async def reset() -> dict:
        """Default switches, and stop delivering whatever is still pending (between tests)."""
        ledger.switches.update({"drop_notifications": False, "delay_seconds": 0, "duplicate": 1,
                                "fail_refunds": False})
        return {"abandoned": ledger.abandon_pending()}

    @app.get("/v1/admin/notifications", dependencies=auth)
    async def notifications(out_trade_no: Annotated[str | None, Query()] = None) -> list[dict]:
        """The notifications with the headers of their last signing: replay material for tests."""
        out = []
        for row in ledger.notifications(out_trade_no):
            headers = json.loads(row["headers"]) if row["headers"] else None
            out.append({"id": row["id"], "out_trade_no": row["out_trade_no"], "state": row["state"],
                        "attempts": row["attempts"], "last_status": row["last_status"], "headers": headers,
                        "body": bytes(row["body"]).decode()})
        return out

    @app.post("/v1/admin/notifications/states", dependencies=auth)
    async def notification_states(request: Request) -> dict[str, list[dict]]:
        """Brief delivery states of the notifications of many payments at once (for waiting)."""
        wanted = set((await request.json())["out_trade_nos"])
        out: dict[str, list[dict]] = {}
        for row in ledger.notification_states(wanted):
            out.setdefault(row["out_trade_no"], []).append(
                {"id": row["id"], "state": row["state"], "attempts": row["attempts"], "last_status": row["last_status"]})
        return out

    @app.post("/v1/admin/notifications/{nid}/sign", dependencies=auth)
    async def sign_now(nid: str) -> dict:
        """Sign a (e.g. dropped) notification now without sending it."""
        for row in ledger.notifications():
            if row["id"] == nid:
                body = bytes(row["body"])
                return {"headers": wire.sign(key, body, at=dt.datetime.now(dt.UTC)), "body": body.decode()}
        raise LedgerError("RESOURCE_NOT_EXISTS", "通知不存在")

    @app.post("/v1/admin/notifications/{nid}/redeliver", dependencies=auth)
    async def redeliver(nid: str) -> dict:
        ledger.redeliver(nid)
        notifier.wake.set()
        return {"id": nid, "state": "pending"}

    @app.post("/v1/admin/payments/{out_trade_no}/tamper", dependencies=auth)
    async def tamper(out_trade_no: str, body: Tamper, request: Request) -> dict:
        return payment_view(ledger.tamper_amount(out_trade_no, body.amount), request)

    @app.get("/v1/admin/refunds", dependencies=auth)
    async def refunds(out_trade_no: Annotated[str | None, Query()] = None) -> list[dict]:
        return [refund_view(r) for r in ledger.refunds_of(out_trade_no)]

    return app
