"""The HIS simulator as a real process for tests: start, SIGKILL, restart on the same database,
admin calls (seed, faults, window sales, out-of-band changes) and the platform keys."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from guahao.his.sim.signing import admin_token, platform_key
from tests.paysim_fixture import free_port


class HisSim:
    def __init__(self, db_path: Path, key: str | None = None) -> None:
        self.db_path, self.key = db_path, key or "his-test-" + os.urandom(8).hex()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> HisSim:
        code = (f"from guahao.his.sim import main; main(host='127.0.0.1', port={self.port}, "
                f"db_path={str(self.db_path)!r}, key={self.key!r})")
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the HIS simulator did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the simulator dies mid-whatever; its SQLite file survives for `start()`."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def platform_key(self, platform: str = "guahao") -> bytes:
        return platform_key(self.key, platform)

    def admin(self, method: str, path: str, json: dict | None = None) -> dict:
        r = httpx.request(method, f"{self.url}{path}", json=json,
                          headers={"Authorization": f"Bearer {admin_token(self.key)}"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def seed(self, start: dt.date, days: int = 7) -> dict:
        return self.admin("POST", "/admin/seed", {"start": start.isoformat(), "days": days})

    def faults(self, **switches) -> dict:
        return self.admin("POST", "/admin/faults", switches or {"reset": True})


@pytest.fixture
def his_sim(tmp_path):
    sim = HisSim(tmp_path / "his.db").start()
    try:
        yield sim
    finally:
        sim.stop()
