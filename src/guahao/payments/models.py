"""Payments, refunds and the log of provider notifications. Money is integer fen.

The database carries the money invariant (DESIGN I5) where it can:
- `out_trade_no` (our id at the provider) and `provider_txn_id` are unique;
- at most one open (`created`) payment per booking, and at most one payment that paid for a
  booking's visit (`settled_as = 'booking'`);
- exactly one refund per payment (`refunds.payment_id` unique), with a refund number fixed
  per payment, so the provider's idempotent refund API can never pay twice;
- a verified notification is recorded once per provider id: a duplicate is a no-op.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

PAYMENT_STATES = ("created", "paid", "failed", "closed")
# what a paid payment went to: the booking's fee, or (it came too late) a refund
SETTLEMENTS = ("booking", "refund")
REFUND_STATES = ("pending", "succeeded", "failed")
# the booking states in which a paid fee is kept (the visit happened or is due)
PAY_METHODS = ("wechat", "alipay", "card")
FEE_KEPT_STATES = ("confirmed", "checked_in", "completed", "no_show")


class Payment(IdMixin, Base):
    __tablename__ = "payments"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    booking_id: Mapped[int] = mapped_column(BigId, ForeignKey("bookings.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    provider: Mapped[str] = mapped_column(String(20))
    # how the patient chose to pay on the pay page (wechat | alipay | card); all go through
    # `provider` (the sandbox for now); NULL when the client did not say
    method: Mapped[str | None] = mapped_column(String(10))
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    amount: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    pay_url: Mapped[str | None] = mapped_column(String(500))
    provider_txn_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # the provider's time of payment (its bill is dated by it); our own time is settled_at
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    settled_as: Mapped[str | None] = mapped_column(String(20))
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # set when the provider reported something we refuse to act on (e.g. another amount)
    flagged_reason: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"state IN {PAYMENT_STATES!r}", name="state"),
        CheckConstraint(f"settled_as IS NULL OR settled_as IN {SETTLEMENTS!r}", name="settled_as"),
        CheckConstraint("amount > 0", name="amount"),
        CheckConstraint(f"method IS NULL OR method IN {PAY_METHODS!r}", name="method"),
        Index("ix_payments_booking_id", "booking_id"),
        Index("uq_payments_booking_open", "booking_id", unique=True,
              sqlite_where=text("state = 'created'"), postgresql_where=text("state = 'created'")),
        Index("uq_payments_booking_fee", "booking_id", unique=True,
              sqlite_where=text("settled_as = 'booking'"), postgresql_where=text("settled_as = 'booking'")),
        Index("ix_payments_state_created_at", "state", "created_at"),
        Index("ix_payments_hospital_paid_at", "hospital_id", "paid_at"),
    )


class Refund(IdMixin, Base):
    __tablename__ = "refunds"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    payment_id: Mapped[int] = mapped_column(BigId, ForeignKey("payments.id", ondelete="CASCADE"), unique=True)
    booking_id: Mapped[int] = mapped_column(BigId, ForeignKey("bookings.id", ondelete="CASCADE"), index=True)
    out_refund_no: Mapped[str] = mapped_column(String(40), unique=True)
    amount: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    # late_payment | booking_cancelled | booking_revoked | ...
    reason: Mapped[str] = mapped_column(String(40))
    provider_refund_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # the provider's time of the refund; our bookkeeping time is updated_at
    succeeded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"state IN {REFUND_STATES!r}", name="state"),
        CheckConstraint("amount > 0", name="amount"),
        Index("ix_refunds_hospital_created_at", "hospital_id", "created_at"),
    )


class PaymentNotification(IdMixin, Base):
    """Every notification that reached the callback, verified or not (for operators).

    Only verified ones are unique by the provider's id: a forged notification that names a
    real id must not be able to pre-empt (and so swallow) the genuine one.
    """

    __tablename__ = "payment_notifications"

    hospital_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(20))
    notification_id: Mapped[str | None] = mapped_column(String(64))
    payment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("payments.id", ondelete="CASCADE"))
    body_sha256: Mapped[str] = mapped_column(String(64))
    verified: Mapped[bool] = mapped_column(Boolean)
    # confirmed | late_refund | already_settled | failed | ignored | amount_mismatch |
    # unknown_payment | signature_invalid | timestamp_out_of_window | malformed
    outcome: Mapped[str] = mapped_column(String(30))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("uq_payment_notifications_verified_id", "provider", "notification_id", unique=True,
              sqlite_where=text("verified"), postgresql_where=text("verified")),
        Index("ix_payment_notifications_payment_id", "payment_id"),
        Index("ix_payment_notifications_received_at", "received_at"),
    )



class RejectedNotificationCount(IdMixin, Base):
    """How many notifications failed verification, per provider, reason and hour.

    Forged or broken notifications are counted here, one row per hour and reason however
    many arrive; only the first few of each hour are also kept in full in
    payment_notifications as a sample for operators (see `rejections`)."""

    __tablename__ = "payment_notification_rejections"

    provider: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(30))
    hour: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("uq_payment_notification_rejections_bucket", "provider", "reason", "hour", unique=True),
    )
