"""The sandbox provider's own ledger: payments, refunds and notifications to deliver, in its
own SQLite file (it is another company's system; it shares nothing with guahao's database).

Concurrency story: the sandbox is one process and every ledger call runs on its event-loop
thread (async endpoints, no thread pool), each call one short SQLite transaction, so calls
are atomic with respect to each other without any locking of ours.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from guahao.payments import wire
from guahao.payments.port import ProviderPayment

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    out_trade_no TEXT PRIMARY KEY, amount INTEGER NOT NULL, description TEXT NOT NULL,
    notify_url TEXT NOT NULL, return_url TEXT, state TEXT NOT NULL, txn_id TEXT UNIQUE,
    refunded INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, paid_at REAL);
CREATE TABLE IF NOT EXISTS refunds (
    out_refund_no TEXT PRIMARY KEY, out_trade_no TEXT NOT NULL REFERENCES payments(out_trade_no),
    amount INTEGER NOT NULL, refund_id TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY, out_trade_no TEXT NOT NULL, notify_url TEXT NOT NULL, body BLOB NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
    created_at REAL NOT NULL, delivered_at REAL, last_status TEXT, headers TEXT);
CREATE INDEX IF NOT EXISTS ix_notifications_due ON notifications (state, next_at);
CREATE INDEX IF NOT EXISTS ix_refunds_trade ON refunds (out_trade_no);
"""


class LedgerError(Exception):
    status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class NotFoundError(LedgerError):
    status = 404


class Unavailable(LedgerError):
    status = 503


@dataclass
class Switches:
    """Test and demo switches, changed through the admin API."""

    drop_notifications: bool = False  # record notifications but never send them
    delay_seconds: float = 0.0  # first delivery attempt only after this
    duplicate: int = 1  # send every delivery attempt this many times at once
    fail_refunds: bool = False  # refund calls answer 503 SYSTEM_ERROR

    def update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            if not hasattr(self, name):
                raise LedgerError("PARAM_ERROR", f"unknown switch {name}")
            setattr(self, name, type(getattr(self, name))(value))
        self.duplicate = max(1, min(self.duplicate, 20))


def _at(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)


class Ledger:
    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.clock = clock
        self.switches = Switches()

    def _tx(self):
        return _Tx(self.db)

    # --- payments ---------------------------------------------------------------------------
    def create(self, *, out_trade_no: str, amount: int, description: str, notify_url: str,
               return_url: str | None) -> sqlite3.Row:
        with self._tx():
            row = self._get(out_trade_no)
            if row is not None:
                if row["amount"] != amount or row["notify_url"] != notify_url:
                    raise LedgerError("OUT_TRADE_NO_USED", "商户订单号重复")
                return row
            self.db.execute("INSERT INTO payments (out_trade_no, amount, description, notify_url, return_url, state,"
                            " created_at) VALUES (?, ?, ?, ?, ?, 'NOTPAY', ?)",
                            (out_trade_no, amount, description, notify_url, return_url, self.clock()))
            return self._get(out_trade_no)

    def get(self, out_trade_no: str) -> sqlite3.Row:
        row = self._get(out_trade_no)
        if row is None:
            raise NotFoundError("ORDER_NOT_EXIST", "订单不存在")
        return row

    def _get(self, out_trade_no: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM payments WHERE out_trade_no = ?", (out_trade_no,)).fetchone()

    def pay(self, out_trade_no: str) -> sqlite3.Row:
        with self._tx():
            row = self.get(out_trade_no)
            if row["state"] in ("SUCCESS", "REFUND"):
                return row  # paying twice is one payment
            if row["state"] != "NOTPAY":
                raise LedgerError("ORDER_CLOSED" if row["state"] == "CLOSED" else "ORDER_FAILED", "订单已关闭或已失败")
            txn_id = f"4200{uuid.uuid4().int % 10**24:024d}"
            self.db.execute("UPDATE payments SET state = 'SUCCESS', txn_id = ?, paid_at = ? WHERE out_trade_no = ?",
                            (txn_id, self.clock(), out_trade_no))
            row = self.get(out_trade_no)
            self._enqueue(row, "TRANSACTION.SUCCESS")
            return row

    def fail(self, out_trade_no: str) -> sqlite3.Row:
        with self._tx():
            row = self.get(out_trade_no)
            if row["state"] == "PAYERROR":
                return row
            if row["state"] != "NOTPAY":
                raise LedgerError("ORDER_NOT_PAYABLE", "订单状态不允许此操作")
            self.db.execute("UPDATE payments SET state = 'PAYERROR' WHERE out_trade_no = ?", (out_trade_no,))
            row = self.get(out_trade_no)
            self._enqueue(row, "TRANSACTION.FAIL")
            return row

    def close(self, out_trade_no: str) -> sqlite3.Row:
        with self._tx():
            row = self.get(out_trade_no)
            if row["state"] in ("SUCCESS", "REFUND"):
                raise LedgerError("ORDERPAID", "订单已支付")
            self.db.execute("UPDATE payments SET state = 'CLOSED' WHERE out_trade_no = ?", (out_trade_no,))
            return self.get(out_trade_no)

    def tamper_amount(self, out_trade_no: str, amount: int) -> sqlite3.Row:
        """Admin only: make the provider disagree with the merchant about an amount."""
        with self._tx():
            self.get(out_trade_no)
            self.db.execute("UPDATE payments SET amount = ? WHERE out_trade_no = ?", (amount, out_trade_no))
            return self.get(out_trade_no)

    @staticmethod
    def as_payment(row: sqlite3.Row) -> ProviderPayment:
        return ProviderPayment(out_trade_no=row["out_trade_no"], trade_state=row["state"], amount=row["amount"],
                               txn_id=row["txn_id"], paid_at=_at(row["paid_at"]))

    # --- refunds ----------------------------------------------------------------------------
    def refund(self, *, out_trade_no: str, out_refund_no: str, amount: int) -> sqlite3.Row:
        with self._tx():
            existing = self.db.execute("SELECT * FROM refunds WHERE out_refund_no = ?", (out_refund_no,)).fetchone()
            if existing is not None:  # the same refund number is the same refund, whatever retried it
                if existing["out_trade_no"] != out_trade_no or existing["amount"] != amount:
                    raise LedgerError("INVALID_REQUEST", "退款单号已用于其他退款")
                return existing
            if self.switches.fail_refunds:
                raise Unavailable("SYSTEM_ERROR", "系统繁忙,请稍后重试")
            pay = self.get(out_trade_no)
            if pay["state"] not in ("SUCCESS", "REFUND"):
                raise LedgerError("ORDER_NOT_PAID", "订单未支付")
            if amount <= 0 or amount > pay["amount"] - pay["refunded"]:
                raise LedgerError("NOT_ENOUGH", "退款金额超过可退金额")
            refund_id = f"5030{uuid.uuid4().int % 10**24:024d}"
            self.db.execute("INSERT INTO refunds (out_refund_no, out_trade_no, amount, refund_id, created_at)"
                            " VALUES (?, ?, ?, ?, ?)", (out_refund_no, out_trade_no, amount, refund_id, self.clock()))
            self.db.execute("UPDATE payments SET refunded = refunded + ?, state = 'REFUND' WHERE out_trade_no = ?",
                            (amount, out_trade_no))
            return self.db.execute("SELECT * FROM refunds WHERE out_refund_no = ?", (out_refund_no,)).fetchone()

    def get_refund(self, out_refund_no: str) -> sqlite3.Row:
        row = self.db.execute("SELECT * FROM refunds WHERE out_refund_no = ?", (out_refund_no,)).fetchone()
        if row is None:
            raise NotFoundError("RESOURCE_NOT_EXISTS", "退款单不存在")
        return row

    def refunds_of(self, out_trade_no: str | None = None) -> list[sqlite3.Row]:
        if out_trade_no is None:
            return self.db.execute("SELECT * FROM refunds ORDER BY created_at").fetchall()
        return self.db.execute("SELECT * FROM refunds WHERE out_trade_no = ? ORDER BY created_at",
                               (out_trade_no,)).fetchall()

    def bill(self, day: dt.date) -> list[dict[str, Any]]:
        """对账单: payments and refunds whose time falls on `day` in China Standard Time."""
        start = dt.datetime.combine(day, dt.time(0), tzinfo=wire.CST).timestamp()
        end = start + 86400
        pays = self.db.execute("SELECT * FROM payments WHERE paid_at >= ? AND paid_at < ? ORDER BY paid_at",
                               (start, end)).fetchall()
        refunds = self.db.execute("SELECT * FROM refunds WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
                                  (start, end)).fetchall()
        return ([{"kind": "payment", "out_trade_no": p["out_trade_no"], "transaction_id": p["txn_id"],
                  "amount": p["amount"], "time": wire.iso(_at(p["paid_at"]))} for p in pays]
                + [{"kind": "refund", "out_trade_no": r["out_trade_no"], "out_refund_no": r["out_refund_no"],
                    "amount": r["amount"], "time": wire.iso(_at(r["created_at"]))} for r in refunds])

    # --- notifications ----------------------------------------------------------------------
    def _enqueue(self, row: sqlite3.Row, event_type: str) -> None:
        now = self.clock()
        nid = str(uuid.uuid4())
        body = wire.notification_body(nid, event_type, self.as_payment(row), at=_at(now))
        state = "dropped" if self.switches.drop_notifications else "pending"
        self.db.execute("INSERT INTO notifications (id, out_trade_no, notify_url, body, state, next_at, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (nid, row["out_trade_no"], row["notify_url"], body, state,
                         now + self.switches.delay_seconds, now))

    def due_notifications(self, limit: int, exclude: set[str]) -> list[sqlite3.Row]:
        rows = self.db.execute("SELECT * FROM notifications WHERE state = 'pending' AND next_at <= ?"
                               " ORDER BY next_at LIMIT ?", (self.clock(), limit + len(exclude))).fetchall()
        return [r for r in rows if r["id"] not in exclude][:limit]

    def record_attempt(self, nid: str, *, delivered: bool, status: str, headers: dict[str, str],
                       next_in: float | None) -> None:
        """One delivery attempt; next_in None after the last one (the provider gives up)."""
        now = self.clock()
        with self._tx():
            if delivered:
                self.db.execute("UPDATE notifications SET state = 'delivered', attempts = attempts + 1,"
                                " delivered_at = ?, last_status = ?, headers = ? WHERE id = ?",
                                (now, status, json.dumps(headers), nid))
            else:
                self.db.execute("UPDATE notifications SET state = ?, attempts = attempts + 1, next_at = ?,"
                                " last_status = ?, headers = ? WHERE id = ? AND state = 'pending'",
                                ("pending" if next_in is not None else "failed", now + (next_in or 0), status,
                                 json.dumps(headers), nid))

    def notifications(self, out_trade_no: str | None = None) -> list[sqlite3.Row]:
        if out_trade_no is None:
            return self.db.execute("SELECT * FROM notifications ORDER BY created_at").fetchall()
        return self.db.execute("SELECT * FROM notifications WHERE out_trade_no = ? ORDER BY created_at",
                               (out_trade_no,)).fetchall()

    def notification_states(self, out_trade_nos: set[str]) -> list[sqlite3.Row]:
        rows = self.db.execute("SELECT id, out_trade_no, state, attempts, last_status FROM notifications"
                               " ORDER BY created_at").fetchall()
        return [r for r in rows if r["out_trade_no"] in out_trade_nos]

    def redeliver(self, nid: str) -> None:
        with self._tx():
            if self.db.execute("UPDATE notifications SET state = 'pending', next_at = ? WHERE id = ?",
                               (self.clock(), nid)).rowcount != 1:
                raise NotFoundError("RESOURCE_NOT_EXISTS", "通知不存在")

    def abandon_pending(self) -> int:
        with self._tx():
            return self.db.execute("UPDATE notifications SET state = 'abandoned' WHERE state = 'pending'").rowcount


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.depth_owner = db, False

    def __enter__(self):
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.depth_owner = True
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.depth_owner:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
