"""The sandbox payment provider as a real process, and our app as a real HTTP server, so
that payment flows cross the network both ways (we call the sandbox; it notifies us).

Import the fixtures into a test module: `from tests.paysim_fixture import *  # noqa: F403`.
- `paysim` (session): one `guahao paysim` process with its own ledger file for the session;
  notification retries run at 1/100 of WeChat Pay's schedule.
- `sandbox` (per test): resets the switches, abandons deliveries left over from earlier tests
  and gives an admin/patient client.
- `settings` (override): base_url points at the port our server will listen on, so the
  notify URL we give the sandbox reaches this test's app.
- `live_app` (per test): our app served by uvicorn on that port, wired to the sandbox.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
import uvicorn

from guahao.outbox.registry import JobContext
from guahao.payments.paysim import api_token
from guahao.payments.paysim_client import SandboxPayments

PAYSIM_KEY = "paysim-test-key-" + os.urandom(8).hex()

__all__ = ["paysim", "sandbox", "settings", "our_port", "live_app", "job_ctx", "Sandbox", "PAYSIM_KEY", "serving",
           "free_port", "http_server"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def python_server(code: str, port: int, name: str):
    """Run `python -c code` (a server on `port`) until the block ends; yields its base URL
    once /healthz answers. Shared by the sandbox processes of the tests (paysim, his-sim)."""
    proc = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()



@pytest.fixture(scope="session")
def paysim(tmp_path_factory):
    port = free_port()
    db_path = tmp_path_factory.mktemp("paysim") / "paysim.db"
    code = (f"from guahao.payments.paysim import main; main(host='127.0.0.1', port={port}, db_path={str(db_path)!r},"
            f" key={PAYSIM_KEY!r}, retry_scale=0.01)")
    with python_server(code, port, "the paysim sandbox") as url:
        yield url


class Sandbox:
    """Admin and patient actions on the sandbox process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=30,
                                      headers={"Authorization": f"Bearer {api_token(PAYSIM_KEY)}"})

    async def switches(self, **values) -> dict:
        r = await self.http.post("/v1/admin/switches", json=values)
        r.raise_for_status()
        return r.json()

    async def pay(self, out_trade_no: str) -> httpx.Response:
        return await self.http.post(f"/v1/payments/{out_trade_no}/pay")

    async def fail(self, out_trade_no: str) -> httpx.Response:
        return await self.http.post(f"/v1/payments/{out_trade_no}/fail")

    async def query(self, out_trade_no: str) -> dict:
        return (await self.http.get(f"/v1/payments/{out_trade_no}")).json()

    async def notifications(self, out_trade_no: str | None = None) -> list[dict]:
        params = {"out_trade_no": out_trade_no} if out_trade_no else {}
        return (await self.http.get("/v1/admin/notifications", params=params)).json()

    async def signed(self, notification_id: str) -> tuple[dict[str, str], bytes]:
        data = (await self.http.post(f"/v1/admin/notifications/{notification_id}/sign")).json()
        return data["headers"], data["body"].encode()

    async def redeliver(self, notification_id: str) -> None:
        (await self.http.post(f"/v1/admin/notifications/{notification_id}/redeliver")).raise_for_status()

    async def refunds(self, out_trade_no: str | None = None) -> list[dict]:
        params = {"out_trade_no": out_trade_no} if out_trade_no else {}
        return (await self.http.get("/v1/admin/refunds", params=params)).json()

    async def tamper(self, out_trade_no: str, amount: int) -> None:
        (await self.http.post(f"/v1/admin/payments/{out_trade_no}/tamper", json={"amount": amount})).raise_for_status()

    async def wait_delivered(self, out_trade_nos, *, timeout: float = 40.0, states=("delivered",)) -> list[dict]:
        """Until every one of these payments has a notification in one of `states`."""
        wanted = set(out_trade_nos)
        deadline = time.monotonic() + timeout
        while True:
            r = await self.http.post("/v1/admin/notifications/states", json={"out_trade_nos": sorted(wanted)})
            by_payment = r.json()
            done = {no for no, notes in by_payment.items() if any(n["state"] in states for n in notes)}
            if done == wanted:
                return [{**n, "out_trade_no": no} for no, notes in by_payment.items() for n in notes]
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(wanted - done)} notifications not {states}: {sorted(wanted - done)[:5]}")
            await asyncio.sleep(0.05 if len(wanted) == 1 else 0.25)


@pytest.fixture
async def sandbox(paysim):
    box = Sandbox(paysim)
    (await box.http.post("/v1/admin/reset")).raise_for_status()
    yield box
    await box.http.post("/v1/admin/reset")
    await box.http.aclose()


@pytest.fixture
def our_port() -> int:
    return free_port()


@pytest.fixture
def settings(settings, our_port):
    return settings.model_copy(update={"base_url": f"http://127.0.0.1:{our_port}"})


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the test process keeps its own signal handlers
        yield


@pytest.fixture
async def live_app(app, sandbox, our_port):
    """Our app over real HTTP, paying through the sandbox process. No lifespan: jobs are run
    by the tests themselves, with the test clock."""
    async with serving(app, sandbox, our_port):
        yield app


@contextlib.asynccontextmanager
async def serving(app, sandbox: Sandbox, port: int):
    """Serve `app` on `port` (uvicorn, in this event loop), paying through the sandbox."""
    payments = SandboxPayments(sandbox.url, PAYSIM_KEY)
    app.state.providers["payments"] = payments
    try:
        async with http_server(app, port):
            yield app
    finally:
        await payments.aclose()


@contextlib.asynccontextmanager
async def http_server(asgi_app, port: int):
    """Any ASGI app served by uvicorn on 127.0.0.1:port in this event loop (no lifespan)."""
    server = _QuietServer(uvicorn.Config(asgi_app, host="127.0.0.1", port=port, lifespan="off",
                                         log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def job_ctx(app, settings, clock) -> JobContext:
    return JobContext(db=app.state.db, clock=clock, settings=settings, providers=app.state.providers)
