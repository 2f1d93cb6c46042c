"""An in-memory payment provider for unit tests: the same port and the same signed wire
format as the sandbox, without a process or a network. Flow tests use the real sandbox."""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from guahao.core.clock import Clock, SystemClock
from guahao.payments import wire
from guahao.payments.port import (
    BillEntry,
    Notification,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    ProviderRefused,
)


@dataclass
class _Order:
    payment: ProviderPayment
    notify_url: str
    refunded: int = 0


@dataclass
class InMemoryPayments:
    key: str = "fake-key"
    name: str = "paysim"
    clock: Clock = field(default_factory=SystemClock)
    down: bool = False  # every call raises ProviderError
    orders: dict[str, _Order] = field(default_factory=dict)
    refunds: dict[str, ProviderRefund] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise ProviderError(f"{what}: down")

    async def create_payment(self, *, out_trade_no: str, amount: int, description: str, notify_url: str,
                             return_url: str) -> str:
        self._check("create")
        order = self.orders.get(out_trade_no)
        if order is not None and order.payment.amount != amount:
            raise ProviderRefused("OUT_TRADE_NO_USED")
        if order is None:
            self.orders[out_trade_no] = _Order(ProviderPayment(out_trade_no, "NOTPAY", amount), notify_url)
        return f"https://fake.pay/pay/{out_trade_no}"

    async def query(self, out_trade_no: str) -> ProviderPayment | None:
        self._check("query")
        order = self.orders.get(out_trade_no)
        return order.payment if order else None

    async def close(self, out_trade_no: str) -> None:
        self._check("close")
        order = self.orders[out_trade_no]
        if order.payment.paid:
            raise ProviderRefused("ORDERPAID")
        order.payment = replace(order.payment, trade_state="CLOSED")

    async def refund(self, *, out_trade_no: str, out_refund_no: str, amount: int) -> ProviderRefund:
        self._check("refund")
        if out_refund_no in self.refunds:
            return self.refunds[out_refund_no]
        order = self.orders.get(out_trade_no)
        if order is None or not order.payment.paid:
            raise ProviderRefused("ORDER_NOT_PAID")
        if amount > order.payment.amount - order.refunded:
            raise ProviderRefused("NOT_ENOUGH")
        order.refunded += amount
        order.payment = replace(order.payment, trade_state="REFUND")
        result = ProviderRefund(out_refund_no, out_trade_no, amount, f"RF{uuid.uuid4().hex[:12]}", "SUCCESS",
                                self.clock.now())
        self.refunds[out_refund_no] = result
        return result

    async def bill(self, day: dt.date) -> list[BillEntry]:
        self._check("bill")
        out = [BillEntry("payment", o.payment.out_trade_no, o.payment.amount, o.payment.paid_at, o.payment.txn_id)
               for o in self.orders.values() if o.payment.paid_at and o.payment.paid_at.astimezone(wire.CST).date() == day]
        out += [BillEntry("refund", r.out_trade_no, r.amount, r.succeeded_at, out_refund_no=r.out_refund_no)
                for r in self.refunds.values() if r.succeeded_at.astimezone(wire.CST).date() == day]
        return out

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes) -> Notification:
        wire.verify(self.key, headers, body, now=self.clock.now())
        return wire.parse_notification(body)

    # --- what a test does as the patient / the provider -------------------------------------
    def pay(self, out_trade_no: str, *, amount: int | None = None) -> tuple[dict[str, str], bytes]:
        """Mark paid; returns the signed notification (headers, body) to post to us."""
        order = self.orders[out_trade_no]
        if not order.payment.paid:
            order.payment = replace(order.payment, trade_state="SUCCESS", txn_id=f"42{uuid.uuid4().int % 10**20:020d}",
                                    paid_at=self.clock.now())
        reported = order.payment if amount is None else replace(order.payment, amount=amount)
        return self.notification(reported, "TRANSACTION.SUCCESS")

    def fail(self, out_trade_no: str) -> tuple[dict[str, str], bytes]:
        order = self.orders[out_trade_no]
        order.payment = replace(order.payment, trade_state="PAYERROR")
        return self.notification(order.payment, "TRANSACTION.FAIL")

    def notification(self, payment: ProviderPayment, event_type: str) -> tuple[dict[str, str], bytes]:
        now = self.clock.now()
        body = wire.notification_body(str(uuid.uuid4()), event_type, payment, at=now)
        return wire.sign(self.key, body, at=now), body
