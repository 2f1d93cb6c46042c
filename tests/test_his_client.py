"""The HIS adapter against the simulator as a real process: each failure has one meaning."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from guahao.his.breaker import Breaker
from guahao.his.client import (
    HisBadAnswer,
    HisClient,
    HisOutcomeUnknown,
    HisRefused,
    HisUnavailable,
    order_id_for,
)
from tests.his_support import his_sim  # noqa: F401  (fixture)

START = dt.date(2026, 12, 10)
BAND = f"S-{START.isoformat()}-D001-am-1"


def client(sim, **kw) -> HisClient:
    return HisClient(sim.url, "guahao", sim.platform_key("guahao"), **{"timeout": 2.0, **kw})


async def test_lock_confirm_cancel_round_trip_is_idempotent_on_the_order_id(his_sim):
    his_sim.seed(START)
    his = client(his_sim)
    oid = order_id_for(42)
    locked = await his.lock(oid, BAND, "guahao", 10)
    assert (locked.state, locked.pool, locked.visit_no) == ("locked", "guahao", None)
    assert (await his.lock(oid, BAND, "guahao", 10)).state == "locked"  # a repeat is the same order
    first = await his.confirm(oid)
    again = await his.confirm(oid)
    assert first.state == "confirmed" and first.visit_no is not None and again.visit_no == first.visit_no
    assert (await his.get_order(oid)).visit_no == first.visit_no
    assert (await his.cancel(oid)).state == "cancelled"
    with pytest.raises(HisRefused) as refused:
        await his.get_order(order_id_for(43))
    assert refused.value.code == "ORDER_NOT_FOUND"
    sessions = await his.availability(START, START)
    band = next(b for s in sessions for b in s.bands if b.band_id == BAND)
    assert {p.pool: p.remaining for p in band.pools} == {"guahao": 2, "shared": 6}  # the cancel freed it
    await his.aclose()


async def test_patient_records_are_found_and_created(his_sim):
    his_sim.seed(START)
    his = client(his_sim)
    assert await his.find_patient("11010119900307123X") is None
    made = await his.create_patient("11010119900307123X", "张三")
    assert made == await his.create_patient("11010119900307123X", "张三")
    assert await his.find_patient("11010119900307123X", "张三") == made
    await his.aclose()


async def test_a_wrong_key_is_unavailable_not_a_refusal(his_sim):
    his = HisClient(his_sim.url, "guahao", b"x" * 32, timeout=2.0)
    with pytest.raises(HisUnavailable) as err:
        await his.availability(START, START)
    assert err.value.code == "his_auth_refused"
    await his.aclose()


async def test_down_his_opens_the_breaker_and_a_good_trial_closes_it(his_sim):
    his_sim.seed(START)
    now = [0.0]
    his = client(his_sim, breaker=Breaker(threshold=3, cool_down=5, clock=lambda: now[0]))
    his_sim.faults(down=True)
    for _ in range(2):  # reads are tried twice: two calls, four failures
        with pytest.raises(HisUnavailable):
            await his.availability(START, START)
    assert his.breaker.state == "open"
    his_sim.faults()  # the HIS is back, but the breaker has not looked yet
    with pytest.raises(HisUnavailable) as err:
        await his.lock(order_id_for(1), BAND, "guahao", 5)
    assert err.value.code == "breaker_open"
    now[0] = 6.0
    assert his.breaker.state == "half_open"
    assert (await his.lock(order_id_for(1), BAND, "guahao", 5)).state == "locked"
    assert his.breaker.state == "closed"
    await his.aclose()


async def test_a_hanging_his_times_out_unknown_for_writes_and_unavailable_for_reads(his_sim):
    his_sim.seed(START)
    his = client(his_sim, timeout=0.5)
    his_sim.faults(hang=True)
    with pytest.raises(HisOutcomeUnknown):
        await his.lock(order_id_for(7), BAND, "guahao", 5)
    with pytest.raises(HisUnavailable):
        await his.get_order(order_id_for(7))
    his_sim.faults()
    with pytest.raises(HisRefused):  # the hang did nothing
        await his.get_order(order_id_for(7))
    await his.aclose()


async def test_a_lost_acknowledgement_is_unknown_and_the_order_tells_the_truth(his_sim):
    his_sim.seed(START)
    his = client(his_sim)
    his_sim.faults(ack_lost=True)
    with pytest.raises(HisOutcomeUnknown):
        await his.lock(order_id_for(8), BAND, "guahao", 5)
    his_sim.faults()
    assert (await his.get_order(order_id_for(8))).state == "locked"
    await his.aclose()


class _Liar(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {}

    def do_GET(self):
        status, body = next((v for k, v in self.answers.items() if self.path.startswith(k)), (404, b"{}"))
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def liar():
    server = HTTPServer(("127.0.0.1", 0), _Liar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.mark.parametrize("body", [
    b"not json at all",
    json.dumps({"sessions": [{"session_id": "S1", "date": "2026-12-10", "half": "am", "state": "open",
                              "department": {"code": "N", "name": "n"}, "doctor": {"code": "D", "name": "d"},
                              "bands": [{"band_id": "B", "start": "08:00", "end": "09:00",
                                         "pools": [{"pool": "guahao", "capacity": -3, "remaining": 0}]}]}]}).encode(),
    json.dumps({"sessions": [{"session_id": "S1", "date": "yesterday"}]}).encode(),
    json.dumps({"sessions": "many"}).encode(),
])
async def test_answers_we_cannot_trust_are_refused(liar, body):
    _Liar.answers = {"/v1/availability": (200, body)}
    his = HisClient(f"http://127.0.0.1:{liar.server_port}", "guahao", b"k" * 32, timeout=2.0)
    with pytest.raises(HisBadAnswer):
        await his.availability(START, START)
    await his.aclose()


async def test_many_clients_at_once_share_one_pool_without_overselling(his_sim):
    his_sim.seed(START)
    his = client(his_sim)
    results = await asyncio.gather(*(his.lock(order_id_for(100 + n), BAND, "guahao", 5) for n in range(10)),
                                   return_exceptions=True)
    locked = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, HisRefused)]
    assert len(locked) == 2 and len(refused) == 8 and {r.code for r in refused} == {"POOL_FULL"}
    await his.aclose()


async def test_a_connection_keeps_its_key_encrypted_and_gives_a_working_client(his_sim, db, clock):
    from sqlalchemy import text

    from guahao.his import connections
    from guahao.his.schemas import HisConnectionUpdate
    from tests.builders import make_hospital

    his_sim.seed(START)
    hospital_id = await make_hospital(db, clock.now())
    key_hex = his_sim.platform_key("guahao").hex()
    async with db.begin() as s:
        assert await connections.client_for(s, hospital_id) is None
        await connections.do_set_connection(s, hospital_id, HisConnectionUpdate(
            base_url=his_sim.url, platform="guahao", pool="guahao", key=key_hex, timeout_ms=1500), now=clock.now())
    async with db.begin() as s:
        stored = await s.scalar(text("SELECT key FROM his_connections WHERE hospital_id = :h"), {"h": hospital_id})
        assert key_hex not in stored
        his = await connections.client_for(s, hospital_id)
        assert his is await connections.client_for(s, hospital_id)  # one client (pool, breaker) per hospital
        read = connections.read_of(await connections.get_connection(s, hospital_id))
    assert "key" not in read.model_dump() and read.key_set and read.timeout_ms == 1500
    assert (await his.lock(order_id_for(5), BAND, "guahao", 5)).state == "locked"
    await connections.close_all()
