"""The HIS simulator as a real process on a free port, spoken to over HTTP with signed requests."""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import httpx
import pytest

from guahao.his.sim.signing import admin_token, canonical_path, platform_key, sign_request
from tests.paysim_fixture import free_port, python_server

KEY = "his-test-key-" + os.urandom(8).hex()
START = "2026-12-10"
SESSION = f"S-{START}-D001-am"
BAND = f"{SESSION}-1"


@pytest.fixture(scope="module")
def his_url(tmp_path_factory):
    port = free_port()
    db_path = tmp_path_factory.mktemp("his") / "his.db"
    code = f"from guahao.his.sim import main; main(host='127.0.0.1', port={port}, db_path={str(db_path)!r}, key={KEY!r})"
    with python_server(code, port, "the HIS simulator") as url:
        yield url


class His:
    """One platform's signed client, plus the hospital staff's admin calls."""

    def __init__(self, url: str, platform: str = "guahao", *, timeout: float = 30) -> None:
        self.platform, self.key = platform, platform_key(KEY, platform)
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout)
        self.admin_headers = {"Authorization": f"Bearer {admin_token(KEY)}"}

    async def call(self, method: str, path: str, body: dict | None = None, **sign) -> httpx.Response:
        raw = json.dumps(body).encode() if body is not None else b""
        headers = sign_request(self.key, self.platform, method, path, raw, **sign)
        return await self.http.request(method, canonical_path(path), content=raw, headers={**headers, "content-type": "application/json"})

    async def admin(self, path: str, body: dict | None = None) -> dict:
        r = await self.http.post(path, json=body or {}, headers=self.admin_headers)
        assert r.status_code == 200, r.text
        return r.json()

    async def lock(self, order_id: str, band: str = BAND, pool: str = "shared", minutes: float = 5) -> httpx.Response:
        return await self.call("POST", "/v1/locks", {"order_id": order_id, "band_id": band, "pool": pool,
                                                     "minutes": minutes})

    async def remaining(self, band: str = BAND) -> dict[str, int]:
        r = await self.call("GET", f"/v1/availability?from={START}&to={START}")
        assert r.status_code == 200, r.text
        for s in r.json()["sessions"]:
            for b in s["bands"]:
                if b["band_id"] == band:
                    return {p["pool"]: p["remaining"] for p in b["pools"]}
        raise AssertionError("band not found")


@pytest.fixture
async def his(his_url):
    client = His(his_url)
    await client.admin("/admin/faults", {"reset": True})
    await client.admin("/admin/seed", {"start": START, "days": 2})
    yield client
    await client.admin("/admin/faults", {"reset": True})
    await client.http.aclose()


def oid() -> str:
    return "O" + uuid.uuid4().hex[:20]


async def test_signature_checks(his):
    assert (await his.call("GET", f"/v1/availability?from={START}&to={START}")).status_code == 200
    bad = His(str(his.http.base_url))
    bad.key = platform_key("another-key", "guahao")
    r = await bad.call("GET", f"/v1/availability?from={START}&to={START}")
    assert r.status_code == 401 and r.json()["code"] == "BAD_SIGNATURE"
    await bad.http.aclose()
    # signed for another body than the one sent
    headers = sign_request(his.key, "guahao", "POST", "/v1/locks", b"{}")
    r = await his.http.post("/v1/locks", content=b'{"order_id": "x"}', headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "BAD_SIGNATURE"
    r = await his.call("GET", f"/v1/orders/{oid()}", timestamp=time.time() - 301)
    assert r.status_code == 401 and r.json()["code"] == "STALE_TIMESTAMP"
    r = await his.http.get("/v1/orders/whatever")
    assert r.status_code == 401 and r.json()["code"] == "AUTH_MISSING"
    nonce = uuid.uuid4().hex
    first = await his.call("GET", f"/v1/availability?from={START}&to={START}", nonce=nonce)
    again = await his.call("GET", f"/v1/availability?from={START}&to={START}", nonce=nonce)
    assert first.status_code == 200
    assert again.status_code == 401 and again.json()["code"] == "REPLAYED_NONCE"


async def test_lock_confirm_cancel_query_are_idempotent(his):
    o = oid()
    first, second = await his.lock(o), await his.lock(o)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() and first.json()["state"] == "locked"
    assert (await his.remaining())["shared"] == 5
    c1, c2 = await his.call("POST", f"/v1/orders/{o}/confirm", {}), await his.call("POST", f"/v1/orders/{o}/confirm", {})
    assert c1.status_code == c2.status_code == 200
    assert c1.json()["visit_no"] == c2.json()["visit_no"] == 1 and c1.json()["state"] == "confirmed"
    o2 = oid()
    await his.lock(o2)
    assert (await his.call("POST", f"/v1/orders/{o2}/confirm", {})).json()["visit_no"] == 2
    assert (await his.call("GET", f"/v1/orders/{o}")).json()["state"] == "confirmed"
    x1, x2 = await his.call("POST", f"/v1/orders/{o}/cancel"), await his.call("POST", f"/v1/orders/{o}/cancel")
    assert x1.json() == x2.json() and x1.json()["state"] == "cancelled"
    assert (await his.remaining())["shared"] == 5
    # the same order id for another band is a conflict, not a second lock
    r = await his.lock(o, band=f"{SESSION}-2")
    assert r.status_code == 409 and r.json()["code"] == "ORDER_CONFLICT"
    # another platform does not see this platform's orders
    partner = His(str(his.http.base_url), "partner")
    assert (await partner.call("GET", f"/v1/orders/{o}")).status_code == 404
    await partner.http.aclose()


async def test_lock_expires_by_time(his):
    o = oid()
    assert (await his.lock(o, minutes=1)).status_code == 200
    assert (await his.remaining())["shared"] == 5
    await his.admin("/admin/faults", {"clock_skew_s": 61})  # the simulator's clock a minute on
    assert (await his.call("GET", f"/v1/orders/{o}")).json()["state"] == "expired"
    assert (await his.remaining())["shared"] == 6
    r = await his.call("POST", f"/v1/orders/{o}/confirm", {})
    assert r.status_code == 409 and r.json()["code"] == "LOCK_EXPIRED"
    # a clock skewed beyond five minutes refuses our (correct) timestamps
    await his.admin("/admin/faults", {"clock_skew_s": 400})
    r = await his.call("GET", f"/v1/orders/{o}")
    assert r.status_code == 401 and r.json()["code"] == "STALE_TIMESTAMP"


async def test_concurrent_locks_never_oversell(his):
    await his.admin("/admin/capacity", {"band_id": BAND, "pool": "shared", "capacity": 10})
    clients = [His(str(his.http.base_url), "guahao" if i % 2 else "partner") for i in range(12)]
    try:
        results = await asyncio.gather(*(clients[i % 12].lock(oid()) for i in range(120)))
        codes = [r.status_code for r in results]
        assert codes.count(200) == 10
        assert all(r.json()["code"] == "POOL_FULL" for r in results if r.status_code != 200)
        assert (await his.remaining())["shared"] == 0
        # the winners confirm at once, beside window sales in the same session: visit numbers unique
        won = [(clients[i % 12], r.json()["order_id"]) for i, r in enumerate(results) if r.status_code == 200]
        answers = await asyncio.gather(*(c.call("POST", f"/v1/orders/{o}/confirm", {}) for c, o in won),
                                       *(his.http.post("/admin/window/sales", json={"band_id": BAND},
                                                       headers=his.admin_headers) for _ in range(4)))
    finally:
        await asyncio.gather(*(c.http.aclose() for c in clients))
    assert all(r.status_code == 200 for r in answers)
    assert sorted(r.json()["visit_no"] for r in answers) == list(range(1, 15))


async def test_concurrent_repeats_of_one_lock_make_one_order(his):
    o = oid()
    clients = [His(str(his.http.base_url)) for _ in range(5)]
    try:
        results = await asyncio.gather(*(clients[i % 5].lock(o) for i in range(30)))
    finally:
        await asyncio.gather(*(c.http.aclose() for c in clients))
    assert {r.status_code for r in results} == {200}
    assert len({json.dumps(r.json()) for r in results}) == 1
    assert (await his.remaining())["shared"] == 5


async def test_window_sale_uses_only_the_onsite_pool(his):
    before = await his.remaining()
    assert "onsite" not in before  # the platform does not see or sell the on-site pool
    sale = await his.admin("/admin/window/sales", {"band_id": BAND})
    assert sale["pool"] == "onsite" and sale["visit_no"] == 1
    assert await his.remaining() == before
    r = await his.lock(oid(), pool="onsite")
    assert r.status_code == 403 and r.json()["code"] == "POOL_NOT_SOLD"
    for _ in range(3):
        await his.admin("/admin/window/sales", {"band_id": BAND})
    r = await his.http.post("/admin/window/sales", json={"band_id": BAND}, headers=his.admin_headers)
    assert r.status_code == 409 and r.json()["code"] == "POOL_FULL"


async def test_out_of_band_changes(his):
    o, o2 = oid(), oid()
    await his.lock(o)
    await his.call("POST", f"/v1/orders/{o}/confirm", {})
    await his.admin(f"/admin/orders/guahao/{o}/cancel")
    got = (await his.call("GET", f"/v1/orders/{o}")).json()
    assert got["state"] == "cancelled" and got["cancel_reason"] == "window"
    await his.lock(o2)
    assert (await his.admin(f"/admin/sessions/{SESSION}/cancel"))["orders_cancelled"] == 1
    assert (await his.call("GET", f"/v1/orders/{o2}")).json()["cancel_reason"] == "session_cancelled"
    r = await his.lock(oid())
    assert r.status_code == 409 and r.json()["code"] == "SESSION_CANCELLED"


async def test_fault_down_error_and_latency(his):
    await his.admin("/admin/faults", {"down": True})
    r = await his.lock(oid())
    assert r.status_code == 503 and r.json()["code"] == "HIS_DOWN"
    await his.admin("/admin/faults", {"down": False, "error_rate": 1.0})
    o = oid()
    r = await his.lock(o)
    assert r.status_code == 500 and r.json()["code"] == "HIS_INTERNAL"
    await his.admin("/admin/faults", {"error_rate": 0.0, "latency_ms": 2000})
    slow = His(str(his.http.base_url), timeout=0.5)
    with pytest.raises(httpx.ReadTimeout):
        await slow.lock(oid())
    await slow.http.aclose()
    await his.admin("/admin/faults", {"latency_ms": 0})
    r = await his.http.post("/admin/faults", json={"down": "false"}, headers=his.admin_headers)
    assert r.status_code == 400 and (await his.admin("/admin/faults", {}))["down"] is False
    assert (await his.call("GET", f"/v1/orders/{o}")).status_code == 404  # the 500 did nothing


async def test_fault_hang_and_ack_lost(his):
    await his.admin("/admin/faults", {"hang": True})
    impatient = His(str(his.http.base_url), timeout=0.5)
    o = oid()
    with pytest.raises(httpx.ReadTimeout):
        await impatient.lock(o)
    await impatient.http.aclose()
    await his.admin("/admin/faults", {"hang": False, "ack_lost": True})
    with pytest.raises(httpx.HTTPError):
        await his.lock(o)
    await his.admin("/admin/faults", {"ack_lost": False})
    got = await his.call("GET", f"/v1/orders/{o}")
    assert got.status_code == 200 and got.json()["state"] == "locked"  # committed, answer lost
    assert (await his.remaining())["shared"] == 5


async def test_patient_records(his):
    r = await his.call("GET", "/v1/patients?id_number=110101199001010000&name=测试甲")
    assert r.status_code == 200 and r.json()["patient_id"]
    r = await his.call("GET", "/v1/patients?id_number=110101199001010000&name=别人")
    assert r.status_code == 409 and r.json()["code"] == "NAME_MISMATCH"
    r = await his.call("GET", "/v1/patients?id_number=11010120000101123X")
    assert r.status_code == 404 and r.json()["code"] == "PATIENT_NOT_FOUND"
    body = {"id_number": "11010120000101123x", "name": "测试丙"}
    made, again = await his.call("POST", "/v1/patients", body), await his.call("POST", "/v1/patients", body)
    assert made.status_code == 200 and made.json() == again.json() and made.json()["card_no"]
    found = await his.call("GET", "/v1/patients?id_number=11010120000101123X&name=测试丙")
    assert found.json()["patient_id"] == made.json()["patient_id"]
    r = await his.call("POST", "/v1/patients", {"id_number": "123", "name": "x"})
    assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"
