"""The sandbox provider process on its own: its API, cashier page, signed notifications
retried until acknowledged, idempotent refunds, bills and switches; and our HTTP client of
it (the payment port), including an unreachable provider."""
from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import pytest

from guahao.payments import provider as payment_provider
from guahao.payments import wire
from guahao.payments.fake import InMemoryPayments
from guahao.payments.paysim_client import SandboxPayments
from guahao.payments.port import ProviderError, ProviderRefused
from tests.paysim_fixture import PAYSIM_KEY, free_port, http_server, paysim, sandbox  # noqa: F401

pytestmark = pytest.mark.timeout(60)


class Receiver:
    """A merchant callback endpoint that refuses the first `refuse` deliveries."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.got: list[tuple[dict[str, str], bytes, float]] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.got.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body, time.monotonic()))
        status = 500 if len(self.got) <= self.refuse else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _no() -> str:
    return f"T{uuid.uuid4().hex[:20].upper()}"


async def _create(sandbox, no: str, notify_url: str, amount: int = 1500):
    return await sandbox.http.post("/v1/payments", json={
        "out_trade_no": no, "amount": amount, "description": "测试医院 内科 挂号费", "notify_url": notify_url,
        "return_url": "http://127.0.0.1:1/bookings/1"})


async def test_merchant_api_requires_the_merchant_token(sandbox):
    r = await sandbox.http.post("/v1/payments", headers={"Authorization": "Bearer nope"}, json={})
    assert (r.status_code, r.json()["code"]) == (401, "SIGN_ERROR")
    r = await sandbox.http.get(f"/v1/payments/{_no()}", headers={"Authorization": ""})
    assert (r.status_code, r.json()["code"]) == (401, "SIGN_ERROR")


async def test_create_is_idempotent_by_out_trade_no(sandbox):
    no = _no()
    first = await _create(sandbox, no, "http://127.0.0.1:1/notify")
    again = await _create(sandbox, no, "http://127.0.0.1:1/notify")
    assert first.json() == again.json() and first.json()["trade_state"] == "NOTPAY"
    clash = await _create(sandbox, no, "http://127.0.0.1:1/notify", amount=1)
    assert (clash.status_code, clash.json()["code"]) == (409, "OUT_TRADE_NO_USED")


async def test_cashier_page_pays_and_says_so_in_chinese(sandbox):
    no = _no()
    pay_url = (await _create(sandbox, no, "http://127.0.0.1:1/notify")).json()["pay_url"]
    page = await sandbox.http.get(pay_url)
    assert page.headers["content-type"].startswith("text/html")
    assert all(text in page.text for text in ("模拟支付收银台", "¥15.00", "确认支付", "模拟支付失败", "测试医院 内科 挂号费"))
    done = await sandbox.http.post(f"/pay/{no}/pay")
    assert "支付成功" in done.text and "返回商户页面" in done.text
    assert "确认支付" not in (await sandbox.http.get(pay_url)).text
    again = await sandbox.http.post(f"/pay/{no}/fail")
    assert again.status_code == 409 and "支付未完成" in again.text
    assert (await sandbox.http.get("/pay/NOSUCHORDER1")).status_code == 404


async def test_notifications_are_signed_and_retried_until_acknowledged(sandbox):
    receiver = Receiver(refuse=2)
    port = free_port()
    async with http_server(receiver, port):
        no = _no()
        await _create(sandbox, no, f"http://127.0.0.1:{port}/notify")
        await sandbox.pay(no)
        [note] = await sandbox.wait_delivered([no])
    assert note["attempts"] == 3 and len(receiver.got) == 3
    gaps = [b[2] - a[2] for a, b in zip(receiver.got, receiver.got[1:])]
    assert all(gap >= 0.12 for gap in gaps)  # 15 s scaled by 0.01, twice
    client = SandboxPayments(sandbox.url, PAYSIM_KEY)
    for headers, body, _ in receiver.got:
        parsed = client.verify_and_parse(headers, body)
        assert (parsed.id, parsed.event_type, parsed.payment.out_trade_no, parsed.payment.amount) == (
            note["id"], "TRANSACTION.SUCCESS", no, 1500)
    assert len({h[wire.H_NONCE.lower()] for h, _, _ in receiver.got}) == 3  # signed afresh each time


async def test_switches_delay_and_duplicate_notifications(sandbox):
    receiver = Receiver()
    port = free_port()
    await sandbox.switches(delay_seconds=0.6, duplicate=3)
    async with http_server(receiver, port):
        no = _no()
        await _create(sandbox, no, f"http://127.0.0.1:{port}/notify")
        paid_at = time.monotonic()
        await sandbox.pay(no)
        await sandbox.wait_delivered([no])
    assert len(receiver.got) == 3 and len({body for _, body, _ in receiver.got}) == 1
    assert min(at for _, _, at in receiver.got) - paid_at >= 0.5


async def test_refunds_are_idempotent_by_refund_number(sandbox):
    client = SandboxPayments(sandbox.url, PAYSIM_KEY)
    no = _no()
    await _create(sandbox, no, "http://127.0.0.1:1/notify")
    with pytest.raises(ProviderRefused) as refused:
        await client.refund(out_trade_no=no, out_refund_no=f"{no}R", amount=1500)
    assert refused.value.code == "ORDER_NOT_PAID"
    await sandbox.pay(no)
    await sandbox.switches(fail_refunds=True)
    with pytest.raises(ProviderError):
        await client.refund(out_trade_no=no, out_refund_no=f"{no}R", amount=1500)
    await sandbox.switches(fail_refunds=False)
    results = await asyncio.gather(*(client.refund(out_trade_no=no, out_refund_no=f"{no}R", amount=1500)
                                     for _ in range(5)))
    assert len({r.refund_id for r in results}) == 1 and results[0].status == "SUCCESS"
    with pytest.raises(ProviderRefused) as refused:
        await client.refund(out_trade_no=no, out_refund_no=f"{no}R2", amount=1)
    assert refused.value.code == "NOT_ENOUGH"
    assert len(await sandbox.refunds(no)) == 1
    assert (await client.query(no)).trade_state == "REFUND"

    day = dt.datetime.now(wire.CST).date()
    bill = [e for e in await client.bill(day) if e.out_trade_no == no]
    assert sorted((e.kind, e.amount) for e in bill) == [("payment", 1500), ("refund", 1500)]
    await client.aclose()


async def test_client_query_close_and_an_unreachable_provider(sandbox):
    client = SandboxPayments(sandbox.url, PAYSIM_KEY)
    assert await client.query(_no()) is None
    no = _no()
    pay_url = await client.create_payment(out_trade_no=no, amount=800, description="挂号费",
                                          notify_url="http://127.0.0.1:1/notify", return_url="http://127.0.0.1:1/")
    assert pay_url.endswith(f"/pay/{no}")
    await client.close(no)
    assert (await client.query(no)).trade_state == "CLOSED"
    paid = _no()
    await client.create_payment(out_trade_no=paid, amount=800, description="挂号费",
                                notify_url="http://127.0.0.1:1/notify", return_url="http://127.0.0.1:1/")
    await sandbox.pay(paid)
    with pytest.raises(ProviderRefused) as refused:
        await client.close(paid)
    assert refused.value.code == "ORDERPAID"
    await client.aclose()

    gone = SandboxPayments(f"http://127.0.0.1:{free_port()}", PAYSIM_KEY, timeout=1)
    with pytest.raises(ProviderError):
        await gone.query(no)
    await gone.aclose()


def test_provider_is_the_sandbox_client_when_a_paysim_url_is_set():
    class Configured:
        paysim_url = "http://127.0.0.1:8100"
        paysim_key = "k"
        payment_timeout_seconds = 2
        base_url = "https://guahao.example"
        payment_notify_base_url = None

    port = payment_provider.build(Configured())
    assert isinstance(port, SandboxPayments) and port.base_url == "http://127.0.0.1:8100"
    Configured.paysim_url = None
    assert payment_provider.build(Configured()) is None
    Configured.payment_provider = "fake"
    assert isinstance(payment_provider.build(Configured()), InMemoryPayments)
    Configured.payment_provider = "paysim"
    assert payment_provider.build(Configured()).base_url == payment_provider.DEFAULT_PAYSIM_URL
    assert payment_provider.notify_url(Configured(), "paysim") == "https://guahao.example/api/v1/payments/notify/paysim"
