"""`guahao bench rush --his-mode realtime|synced`: the rush with the hospital's HIS deciding
every hold (realtime), or with the hospital connected to its HIS but its pool synced into our
database (synced: holds are decided locally and make no HIS call; the write-back to the HIS
follows payment, which the rush does not do, so the figures show what the mode costs at 08:00).

A HIS simulator process (`guahao.his.sim`) with its own SQLite file plays the hospital; its
added latency is `--his-latency-ms` (default 20 ms). The rush's schedule mirrors one of its
bands, whose `shared` pool has as many numbers as the schedule has seats. After the rush:
- HIS calls per hold, from guahao's own log lines (`realtime_hold`, one per hold that reached
  the HIS, with the calls it took: lock plus any order queries);
- no number sold twice at the HIS: the numbers used there equal guahao's live bookings, and
  each winner's order is locked there under its own order id.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import select, update

from guahao.bench.servers import free_port
from guahao.booking.models import LIVE_STATES, Booking
from guahao.catalog.models import Hospital
from guahao.core.db import Database
from guahao.his import connections
from guahao.his.client import HisClient, HisError, order_id_for
from guahao.his.schemas import HisConnectionUpdate
from guahao.his.sim.signing import admin_token, platform_key
from guahao.scheduling.models import Schedule, Slot


class SimProcess:
    """The simulator as a child process on a free port."""

    def __init__(self, log_dir: Path, latency_ms: int) -> None:
        self.port, self.key, self.latency_ms = free_port(), "bench-" + os.urandom(8).hex(), latency_ms
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path, self.log_path = log_dir / "his-sim.db", log_dir / "his-sim.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        code = (f"from guahao.his.sim import main; main(host='127.0.0.1', port={self.port}, "
                f"db_path={str(self.db_path)!r}, key={self.key!r})")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the HIS simulator did not start: {self.log_path}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def admin(self, path: str, body: dict) -> dict:
        r = httpx.post(f"{self.url}{path}", json=body, timeout=30,
                       headers={"Authorization": f"Bearer {admin_token(self.key)}"})
        r.raise_for_status()
        return r.json()

    def client(self, platform: str = "guahao") -> HisClient:
        return HisClient(self.url, platform, platform_key(self.key, platform), timeout=30)


@dataclass
class HisRushSetup:
    band_id: str
    day: dt.date
    mode: str = "realtime"
    pool: str = "shared"


async def prepare(db: Database, sim: SimProcess, *, mode: str = "realtime", hospital_id: int, schedule_id: int,
                  slot_id: int, seats: int, now: dt.datetime) -> HisRushSetup:
    """Seed the simulator for the schedule's day, give the mirrored band `seats` numbers in the
    pool the mode sells (`shared` for realtime, our own `guahao` pool for synced), connect the
    hospital and switch it to the mode."""
    pool = "shared" if mode == "realtime" else "guahao"
    async with db.read() as s:
        day = await s.scalar(select(Schedule.date).where(Schedule.id == schedule_id))
    sim.admin("/admin/seed", {"start": day.isoformat(), "days": 1})
    session_id = f"S-{day.isoformat()}-D001-am"
    band = f"{session_id}-1"
    sim.admin("/admin/capacity", {"band_id": band, "pool": pool, "capacity": seats})
    sim.admin("/admin/faults", {"latency_ms": sim.latency_ms})
    async with db.begin() as s:
        await connections.do_set_connection(s, hospital_id, HisConnectionUpdate(
            base_url=sim.url, platform="guahao", pool=pool, key=platform_key(sim.key, "guahao").hex(),
            timeout_ms=5000, cache_ms=2000), now=now)
        await s.execute(update(Hospital).where(Hospital.id == hospital_id).values(his_mode=mode))
        await s.execute(update(Schedule).where(Schedule.id == schedule_id).values(his_session_id=session_id))
        await s.execute(update(Slot).where(Slot.id == slot_id).values(his_band_id=band))
    return HisRushSetup(band_id=band, day=day, mode=mode, pool=pool)


def his_calls(server_log: Path) -> tuple[int, int, dict[str, int]]:
    """(holds that reached the HIS, HIS calls they made, outcomes) from guahao's JSON log."""
    holds = calls = 0
    outcomes: dict[str, int] = {}
    if not server_log.exists():
        return 0, 0, {}
    for line in server_log.read_text(errors="replace").splitlines():
        if '"realtime_hold"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        holds += 1
        calls += int(event.get("his_calls", 0))
        outcomes[event.get("outcome", "?")] = outcomes.get(event.get("outcome", "?"), 0) + 1
    return holds, calls, outcomes


async def check(db: Database, sim: SimProcess, setup: HisRushSetup, *, slot_id: int, seats: int,
                answered: int, server_log: Path) -> tuple[list[str], bool, float | None]:
    """Notes for the report, whether the HIS and guahao agree (no number sold twice), and
    the HIS calls per hold that reached the HIS."""
    if setup.mode == "synced":
        holds, calls, _ = his_calls(server_log)
        return [f"synced: holds decided locally; {calls} HIS calls during the rush ({holds} realtime holds); "
                "the HIS learns of a booking when its payment is written back (not part of the rush)"], True, 0.0
    async with db.read() as s:
        live = list(await s.scalars(select(Booking.id).where(Booking.slot_id == slot_id,
                                                              Booking.state.in_(LIVE_STATES))))
    client = sim.client()
    try:
        sessions = await client.availability(setup.day, setup.day)
        (left,) = [p.remaining for x in sessions for b in x.bands if b.band_id == setup.band_id for p in b.pools
                   if p.pool == "shared"]
        not_locked = 0
        for booking_id in live:
            try:
                if (await client.get_order(order_id_for(booking_id))).state not in ("locked", "confirmed"):
                    not_locked += 1
            except HisError:
                not_locked += 1
    finally:
        await client.aclose()
    used = seats - left
    holds, calls, outcomes = his_calls(server_log)
    ok = used == len(live) and not_locked == 0
    notes = [
        f"HIS ({sim.latency_ms} ms added latency): {holds} holds reached it with {calls} calls, "
        f"{calls / holds if holds else 0:.2f} HIS calls per hold that reached it, "
        f"{calls / answered if answered else 0:.3f} per answered request; outcomes {outcomes}",
        f"HIS pool after the rush: {used} of {seats} numbers used, guahao has {len(live)} live bookings, "
        f"{not_locked} of them not locked at the HIS -> {'agree' if ok else 'DISAGREE'}",
    ]
    return notes, ok, (calls / holds if holds else None)
