"""The payment port: what the payment flow needs from a provider (WeChat Pay, Alipay, the
sandbox). Implementations: `paysim_client.SandboxPayments` (HTTP, the `guahao paysim`
process) and `fake.InMemoryPayments` (unit tests).

Every call is idempotent on our ids (`out_trade_no`, `out_refund_no`), so a retried job or
request can never charge or refund twice. Amounts are integer fen.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

# the provider's view of one payment (WeChat Pay trade_state names)
TradeState = Literal["NOTPAY", "SUCCESS", "REFUND", "PAYERROR", "CLOSED"]
PAID_STATES = ("SUCCESS", "REFUND")  # REFUND: paid, then (partly) refunded


@dataclass(frozen=True)
class ProviderPayment:
    out_trade_no: str
    trade_state: TradeState
    amount: int
    txn_id: str | None = None
    paid_at: dt.datetime | None = None

    @property
    def paid(self) -> bool:
        return self.trade_state in PAID_STATES


@dataclass(frozen=True)
class Notification:
    """A verified, parsed payment notification."""

    id: str
    event_type: str  # TRANSACTION.SUCCESS | TRANSACTION.FAIL
    payment: ProviderPayment


@dataclass(frozen=True)
class ProviderRefund:
    out_refund_no: str
    out_trade_no: str
    amount: int
    refund_id: str
    status: Literal["SUCCESS", "PROCESSING"]
    succeeded_at: dt.datetime | None


@dataclass(frozen=True)
class BillEntry:
    """One line of the provider's daily bill (对账单)."""

    kind: Literal["payment", "refund"]
    out_trade_no: str
    amount: int
    at: dt.datetime
    txn_id: str | None = None
    out_refund_no: str | None = None


class ProviderError(Exception):
    """The provider could not be reached or answered with an error: retry later."""


class ProviderRefused(Exception):
    """The provider understood and refused (unknown order, already paid, amount too high):
    retrying the same call cannot help."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class NotificationRejected(Exception):
    """A notification that failed verification: forged, tampered, stale or malformed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # signature_invalid | timestamp_out_of_window | malformed


class PaymentPort(Protocol):
    name: str

    async def create_payment(self, *, out_trade_no: str, amount: int, description: str, notify_url: str,
                             return_url: str) -> str:
        """Open a payment at the provider; returns the URL the patient pays at."""

    async def query(self, out_trade_no: str) -> ProviderPayment | None:
        """The provider's state of a payment; None if it has never heard of it."""

    async def close(self, out_trade_no: str) -> None:
        """Stop a payment from being paid (the hold is over). ProviderRefused('ORDERPAID')
        when it was paid meanwhile."""

    async def refund(self, *, out_trade_no: str, out_refund_no: str, amount: int) -> ProviderRefund:
        """Refund; the same out_refund_no always means the same single refund."""

    async def bill(self, day: dt.date) -> list[BillEntry]:
        """The provider's payments and refunds of a day (Asia/Shanghai), for reconciliation."""

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Check signature and timestamp, then parse; raises NotificationRejected."""
