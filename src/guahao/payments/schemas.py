"""Payment API shapes. Money is integer fen."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from guahao.core import fees


class PaymentStart(BaseModel):
    """Optional body of "pay for a hold": how the patient chose to pay (recorded on the payment)."""

    method: Literal["wechat", "alipay", "card"] | None = None


class PaymentStarted(BaseModel):
    payment_id: int
    booking_id: int
    pay_url: str
    amount: int = Field(description=fees.TOTAL_FEE)
    state: str
    # the hold deadline: pay before it, or the seat is released
    expires_at: dt.datetime


class RefundRead(BaseModel):
    id: int
    out_refund_no: str
    amount: int
    state: str
    reason: str
    attempts: int
    created_at: dt.datetime
    succeeded_at: dt.datetime | None


class PaymentRead(BaseModel):
    id: int
    booking_id: int
    out_trade_no: str
    amount: int = Field(description=fees.TOTAL_FEE)
    state: str
    pay_url: str | None
    provider: str
    method: str | None = Field(None, description="wechat | alipay | card, as the patient chose (null: not said)")
    provider_txn_id: str | None
    paid_at: dt.datetime | None
    settled_as: str | None
    flagged_reason: str | None
    created_at: dt.datetime
    refund: RefundRead | None


class BookingMoney(BaseModel):
    booking_id: int
    hospital_id: int
    booking_state: str
    amount_due: int = Field(description=fees.TOTAL_FEE)
    paid: int
    refunded: int
    refund_pending: int
    payments: list[PaymentRead]


class DailyTotal(BaseModel):
    date: dt.date
    hospital_id: int
    paid: int
    payments: int
    refunded: int
    refunds: int
    refund_pending: int


class MoneyTotals(BaseModel):
    date_from: dt.date
    date_to: dt.date
    timezone: str
    rows: list[DailyTotal]
    paid: int
    refunded: int
    refund_pending: int


class Difference(BaseModel):
    kind: str
    out_trade_no: str
    out_refund_no: str | None = None
    ours: int | None = None
    provider: int | None = None
    payment_id: int | None = None
    booking_id: int | None = None
    hospital_id: int | None = None


class LedgerSide(BaseModel):
    payments: int
    paid: int
    refunds: int
    refunded: int


class ReconciliationReport(BaseModel):
    date: dt.date
    provider: str
    ours: LedgerSide
    theirs: LedgerSide
    differences: list[Difference]
    balanced: bool


class FlaggedPaymentRead(PaymentRead):
    hospital_id: int


class FlaggedPage(BaseModel):
    items: list[FlaggedPaymentRead]
    next_before_id: int | None


class PaymentResolve(BaseModel):
    # why the operator acts: kept in the audit log with the operator's id
    reason: str = Field(min_length=4, max_length=200)


class PaymentResolved(BaseModel):
    payment_id: int
    outcome: str  # mismatch_refund | refund_requeued | closed
    payment: PaymentRead
