"""The simulated hospital's own database: catalogue, sessions, pools, orders and patient records,
in its own SQLite file (it is another system; it shares no table with guahao).

Concurrency: every mutation is one `BEGIN IMMEDIATE` transaction, which takes SQLite's single
write lock before the first read, so the remaining-count check and the insert of an order can
never interleave with another writer: a pool is never oversold, even if calls ever come from
several threads or processes sharing the file.

A lock is never swept: it counts against its pool while `expires_at` is in the future and is
read as "expired" afterwards (a time comparison against the simulator's clock, no job).
"""
from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS departments (code TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS doctors (code TEXT PRIMARY KEY, dept_code TEXT NOT NULL REFERENCES departments(code),
    name TEXT NOT NULL, title TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, doctor_code TEXT NOT NULL REFERENCES doctors(code),
    date TEXT NOT NULL, half TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open',
    next_visit_no INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS bands (id TEXT PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions(id),
    start TEXT NOT NULL, "end" TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pools (band_id TEXT NOT NULL REFERENCES bands(id), pool TEXT NOT NULL,
    capacity INTEGER NOT NULL, PRIMARY KEY (band_id, pool));
-- which platform sells which pool ("onsite" is sold only at the window)
CREATE TABLE IF NOT EXISTS channels (pool TEXT NOT NULL, platform TEXT NOT NULL, PRIMARY KEY (pool, platform));
CREATE TABLE IF NOT EXISTS orders (platform TEXT NOT NULL, order_id TEXT NOT NULL, band_id TEXT NOT NULL,
    pool TEXT NOT NULL, state TEXT NOT NULL, expires_at REAL, visit_no INTEGER, patient_id TEXT,
    cancel_reason TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (platform, order_id));
CREATE INDEX IF NOT EXISTS ix_orders_pool ON orders (band_id, pool, state);
CREATE TABLE IF NOT EXISTS patients (patient_id TEXT PRIMARY KEY, id_number TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL, card_no TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS nonces (platform TEXT NOT NULL, nonce TEXT NOT NULL, seen_at REAL NOT NULL,
    PRIMARY KEY (platform, nonce));
"""
TABLES = ("nonces", "orders", "channels", "pools", "bands", "sessions", "doctors", "departments", "patients")
ONSITE = "onsite"
WINDOW = "window"  # the platform name of on-site (window) sales


class HisError(Exception):
    status = 409

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        if status is not None:
            self.status = status


class Store:
    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        self.clock = clock

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- nonces -----------------------------------------------------------------------------
    def use_nonce(self, platform: str, nonce: str, *, keep_seconds: float) -> bool:
        """Record a nonce; False if this platform already used it within `keep_seconds`."""
        now = self.clock()
        with self.tx() as db:
            db.execute("DELETE FROM nonces WHERE seen_at < ?", (now - keep_seconds,))
            cur = db.execute("INSERT OR IGNORE INTO nonces VALUES (?, ?, ?)", (platform, nonce, now))
            return cur.rowcount == 1

    # --- availability -----------------------------------------------------------------------
    def _used(self, db: sqlite3.Connection, band_id: str, pool: str, now: float) -> int:
        return db.execute("SELECT count(*) FROM orders WHERE band_id = ? AND pool = ? AND (state IN"
                          " ('confirmed', 'no_show') OR (state = 'locked' AND expires_at > ?))",
                          (band_id, pool, now)).fetchone()[0]

    def availability(self, platform: str, date_from: str, date_to: str) -> list[dict[str, Any]]:
        now = self.clock()
        sold = {r[0] for r in self.db.execute("SELECT pool FROM channels WHERE platform = ?", (platform,))}
        rows = self.db.execute(
            "SELECT s.id, s.date, s.half, s.state, d.code AS doctor, d.name AS doctor_name, d.title,"
            " p.code AS dept, p.name AS dept_name FROM sessions s JOIN doctors d ON d.code = s.doctor_code"
            " JOIN departments p ON p.code = d.dept_code WHERE s.date BETWEEN ? AND ? ORDER BY s.date, s.id",
            (date_from, date_to)).fetchall()
        out = []
        for s in rows:
            bands = []
            for b in self.db.execute('SELECT id, start, "end" FROM bands WHERE session_id = ? ORDER BY start',
                                     (s["id"],)):
                pools = []
                for p in self.db.execute("SELECT pool, capacity FROM pools WHERE band_id = ? ORDER BY pool",
                                         (b["id"],)):
                    if p["pool"] not in sold:
                        continue
                    left = 0 if s["state"] != "open" else max(0, p["capacity"] - self._used(self.db, b["id"],
                                                                                             p["pool"], now))
                    pools.append({"pool": p["pool"], "capacity": p["capacity"], "remaining": left})
                bands.append({"band_id": b["id"], "start": b["start"], "end": b["end"], "pools": pools})
            out.append({"session_id": s["id"], "date": s["date"], "half": s["half"], "state": s["state"],
                        "department": {"code": s["dept"], "name": s["dept_name"]},
                        "doctor": {"code": s["doctor"], "name": s["doctor_name"], "title": s["title"]},
                        "bands": bands})
        return out

    # --- orders -----------------------------------------------------------------------------
    def view(self, row: sqlite3.Row, now: float | None = None) -> dict[str, Any]:
        now = self.clock() if now is None else now
        state = row["state"]
        if state == "locked" and row["expires_at"] <= now:
            state = "expired"
        session = self.db.execute("SELECT session_id FROM bands WHERE id = ?", (row["band_id"],)).fetchone()
        return {"order_id": row["order_id"], "platform": row["platform"], "band_id": row["band_id"],
                "session_id": session[0] if session else None, "pool": row["pool"], "state": state,
                "expires_at": _iso(row["expires_at"]) if row["state"] == "locked" else None,
                "visit_no": row["visit_no"], "patient_id": row["patient_id"], "cancel_reason": row["cancel_reason"]}

    def _order(self, db: sqlite3.Connection, platform: str, order_id: str) -> sqlite3.Row | None:
        return db.execute("SELECT * FROM orders WHERE platform = ? AND order_id = ?", (platform, order_id)).fetchone()

    def get(self, platform: str, order_id: str) -> dict[str, Any]:
        row = self._order(self.db, platform, order_id)
        if row is None:
            raise HisError("ORDER_NOT_FOUND", "no such order", 404)
        return self.view(row)

    def _bookable(self, db: sqlite3.Connection, band_id: str, pool: str, platform: str) -> sqlite3.Row:
        band = db.execute("SELECT b.id, s.id AS session_id, s.state, p.capacity FROM bands b"
                          " JOIN sessions s ON s.id = b.session_id LEFT JOIN pools p ON p.band_id = b.id"
                          " AND p.pool = ? WHERE b.id = ?", (pool, band_id)).fetchone()
        if band is None:
            raise HisError("BAND_NOT_FOUND", "no such time band", 404)
        if band["capacity"] is None:
            raise HisError("POOL_NOT_FOUND", "this band has no such pool", 404)
        if platform != WINDOW and db.execute("SELECT 1 FROM channels WHERE pool = ? AND platform = ?",
                                             (pool, platform)).fetchone() is None:
            raise HisError("POOL_NOT_SOLD", "this platform does not sell this pool", 403)
        if band["state"] != "open":
            raise HisError("SESSION_CANCELLED", "the clinic session is cancelled")
        return band

    def lock(self, platform: str, order_id: str, band_id: str, pool: str, minutes: float) -> dict[str, Any]:
        now = self.clock()
        with self.tx() as db:
            row = self._order(db, platform, order_id)
            if row is not None:  # a repeat: the same answer, whatever happened since
                if (row["band_id"], row["pool"]) != (band_id, pool):
                    raise HisError("ORDER_CONFLICT", "this order id was used for another band or pool")
                return self.view(row, now)
            band = self._bookable(db, band_id, pool, platform)
            if self._used(db, band_id, pool, now) >= band["capacity"]:
                raise HisError("POOL_FULL", "no number left in this pool")
            db.execute("INSERT INTO orders (platform, order_id, band_id, pool, state, expires_at, created_at,"
                       " updated_at) VALUES (?, ?, ?, ?, 'locked', ?, ?, ?)",
                       (platform, order_id, band_id, pool, now + minutes * 60, now, now))
            return self.view(self._order(db, platform, order_id), now)

    def _next_visit_no(self, db: sqlite3.Connection, session_id: str) -> int:
        no = db.execute("SELECT next_visit_no FROM sessions WHERE id = ?", (session_id,)).fetchone()[0]
        db.execute("UPDATE sessions SET next_visit_no = next_visit_no + 1 WHERE id = ?", (session_id,))
        return no

    def confirm(self, platform: str, order_id: str, patient_id: str | None = None) -> dict[str, Any]:
        now = self.clock()
        with self.tx() as db:
            row = self._order(db, platform, order_id)
            if row is None:
                raise HisError("ORDER_NOT_FOUND", "no such order", 404)
            view = self.view(row, now)
            if view["state"] == "confirmed":
                return view
            if view["state"] == "expired":
                raise HisError("LOCK_EXPIRED", "the lock has expired")
            if view["state"] == "cancelled":
                raise HisError("ORDER_CANCELLED", "the order is cancelled")
            session = db.execute("SELECT s.id, s.state FROM bands b JOIN sessions s ON s.id = b.session_id"
                                 " WHERE b.id = ?", (row["band_id"],)).fetchone()
            if session["state"] != "open":
                raise HisError("SESSION_CANCELLED", "the clinic session is cancelled")
            db.execute("UPDATE orders SET state = 'confirmed', visit_no = ?, patient_id = ?, expires_at = NULL,"
                       " updated_at = ? WHERE platform = ? AND order_id = ?",
                       (self._next_visit_no(db, session["id"]), patient_id, now, platform, order_id))
            return self.view(self._order(db, platform, order_id), now)

    def cancel(self, platform: str, order_id: str, reason: str = "platform") -> dict[str, Any]:
        """Release a lock or cancel a confirmed visit; a repeat returns the cancelled order."""
        now = self.clock()
        with self.tx() as db:
            row = self._order(db, platform, order_id)
            if row is None:
                raise HisError("ORDER_NOT_FOUND", "no such order", 404)
            if row["state"] != "cancelled":
                db.execute("UPDATE orders SET state = 'cancelled', cancel_reason = ?, updated_at = ?"
                           " WHERE platform = ? AND order_id = ?", (reason, now, platform, order_id))
            return self.view(self._order(db, platform, order_id), now)

    def no_show(self, platform: str, order_id: str) -> dict[str, Any]:
        """The platform reports that the patient of a confirmed visit did not come; a repeat
        returns the same order. The number stays used (the session is over anyway)."""
        now = self.clock()
        with self.tx() as db:
            row = self._order(db, platform, order_id)
            if row is None:
                raise HisError("ORDER_NOT_FOUND", "no such order", 404)
            if row["state"] not in ("confirmed", "no_show"):
                raise HisError("ORDER_NOT_CONFIRMED", "only a confirmed visit can be a no-show")
            if row["state"] == "confirmed":
                db.execute("UPDATE orders SET state = 'no_show', updated_at = ? WHERE platform = ? AND order_id = ?",
                           (now, platform, order_id))
            return self.view(self._order(db, platform, order_id), now)

    def list_orders(self, platform: str, date_from: str, date_to: str) -> list[dict[str, Any]]:
        """Every order of `platform` whose session is dated in [date_from, date_to] (any state),
        for the platform's reconciliation (drift detection)."""
        now = self.clock()
        rows = self.db.execute(
            "SELECT o.* FROM orders o JOIN bands b ON b.id = o.band_id JOIN sessions s ON s.id = b.session_id"
            " WHERE o.platform = ? AND s.date BETWEEN ? AND ? ORDER BY o.order_id",
            (platform, date_from, date_to)).fetchall()
        return [self.view(row, now) for row in rows]

    def window_sale(self, band_id: str, patient_id: str | None = None) -> dict[str, Any]:
        """A sale at the hospital's window: from the on-site pool, confirmed at once."""
        now = self.clock()
        with self.tx() as db:
            band = self._bookable(db, band_id, ONSITE, WINDOW)
            if self._used(db, band_id, ONSITE, now) >= band["capacity"]:
                raise HisError("POOL_FULL", "no on-site number left in this band")
            order_id = "W" + secrets.token_hex(8)
            db.execute("INSERT INTO orders (platform, order_id, band_id, pool, state, visit_no, patient_id,"
                       " created_at, updated_at) VALUES (?, ?, ?, ?, 'confirmed', ?, ?, ?, ?)",
                       (WINDOW, order_id, band_id, ONSITE, self._next_visit_no(db, band["session_id"]), patient_id,
                        now, now))
            return self.view(self._order(db, WINDOW, order_id), now)

    # --- out-of-band changes by the hospital -------------------------------------------------
    def cancel_session(self, session_id: str) -> dict[str, Any]:
        now = self.clock()
        with self.tx() as db:
            if db.execute("UPDATE sessions SET state = 'cancelled' WHERE id = ?", (session_id,)).rowcount == 0:
                raise HisError("SESSION_NOT_FOUND", "no such session", 404)
            n = db.execute("UPDATE orders SET state = 'cancelled', cancel_reason = 'session_cancelled',"
                           " updated_at = ? WHERE state IN ('locked', 'confirmed') AND band_id IN"
                           " (SELECT id FROM bands WHERE session_id = ?)", (now, session_id)).rowcount
            return {"session_id": session_id, "state": "cancelled", "orders_cancelled": n}

    def set_capacity(self, band_id: str, pool: str, capacity: int) -> dict[str, Any]:
        with self.tx() as db:
            if db.execute("SELECT 1 FROM bands WHERE id = ?", (band_id,)).fetchone() is None:
                raise HisError("BAND_NOT_FOUND", "no such time band", 404)
            db.execute("INSERT INTO pools VALUES (?, ?, ?) ON CONFLICT (band_id, pool) DO UPDATE"
                       " SET capacity = excluded.capacity", (band_id, pool, capacity))
            return {"band_id": band_id, "pool": pool, "capacity": capacity}

    # --- patient records (建档) -------------------------------------------------------------
    def find_patient(self, id_number: str, name: str | None) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM patients WHERE id_number = ?", (id_number,)).fetchone()
        if row is None:
            raise HisError("PATIENT_NOT_FOUND", "no record for this ID number", 404)
        if name is not None and row["name"] != name:
            raise HisError("NAME_MISMATCH", "the name does not match the record of this ID number")
        return _patient(row)

    def create_patient(self, id_number: str, name: str) -> dict[str, Any]:
        """Idempotent on the ID number: a repeat with the same name returns the same record."""
        now = self.clock()
        with self.tx() as db:
            row = db.execute("SELECT * FROM patients WHERE id_number = ?", (id_number,)).fetchone()
            if row is not None:
                if row["name"] != name:
                    raise HisError("NAME_MISMATCH", "the name does not match the record of this ID number")
                return _patient(row)
            seq = db.execute("SELECT count(*) FROM patients").fetchone()[0] + 1
            pid, card = f"P{seq:08d}", f"C{secrets.randbelow(10**10):010d}"
            db.execute("INSERT INTO patients VALUES (?, ?, ?, ?, ?)", (pid, id_number, name, card, now))
            return _patient(db.execute("SELECT * FROM patients WHERE patient_id = ?", (pid,)).fetchone())

    # --- seeding ------------------------------------------------------------------------------
    def reset(self) -> None:
        with self.tx() as db:
            for table in TABLES:
                db.execute(f"DELETE FROM {table}")  # names from the fixed TABLES, never from a request

    def load(self, data: dict[str, Any]) -> None:
        with self.tx() as db:
            for d in data["departments"]:
                db.execute("INSERT INTO departments VALUES (?, ?)", (d["code"], d["name"]))
            for d in data["doctors"]:
                db.execute("INSERT INTO doctors VALUES (?, ?, ?, ?)", (d["code"], d["dept"], d["name"], d["title"]))
            for pool, platforms in data["channels"].items():
                for p in platforms:
                    db.execute("INSERT INTO channels VALUES (?, ?)", (pool, p))
            for s in data["sessions"]:
                db.execute("INSERT INTO sessions (id, doctor_code, date, half) VALUES (?, ?, ?, ?)",
                           (s["id"], s["doctor"], s["date"], s["half"]))
                for b in s["bands"]:
                    db.execute("INSERT INTO bands VALUES (?, ?, ?, ?)", (b["id"], s["id"], b["start"], b["end"]))
                    for pool, cap in b["pools"].items():
                        db.execute("INSERT INTO pools VALUES (?, ?, ?)", (b["id"], pool, cap))
            for i, p in enumerate(data.get("patients", []), start=1):
                db.execute("INSERT INTO patients VALUES (?, ?, ?, ?, ?)",
                           (f"P{i:08d}", p["id_number"], p["name"], f"C{i:010d}", self.clock()))


def _patient(row: sqlite3.Row) -> dict[str, Any]:
    return {"patient_id": row["patient_id"], "card_no": row["card_no"], "name": row["name"]}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()
