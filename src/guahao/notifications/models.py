"""Tables of the notifications feature."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

SENT_MESSAGE_STATES = ("sending", "sent", "failed")


class SentMessage(IdMixin, Base):
    """One row per message we mean to send once, keyed like `booking_confirmed:42`.

    `sending` with a lease: a worker claimed it and is talking to the gateway; `sent`: done,
    every later attempt is a no-op; `failed`: the last attempt failed, the next may claim it.
    Neither the phone number nor the text is stored: they are rebuilt from the booking.
    """

    __tablename__ = "sent_messages"

    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    template: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    hospital_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    booking_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("bookings.id", ondelete="SET NULL"))
    locale: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint(f"state IN {SENT_MESSAGE_STATES!r}", name="state"),)
