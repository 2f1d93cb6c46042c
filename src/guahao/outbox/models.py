"""The transactional outbox: messages written in the same transaction as the state change
that causes them, delivered after commit by workers (notifications, payments, HIS)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

# pending -> in_progress (claimed, leased) -> done | pending (retry) | dead (operators retry it)
OUTBOX_STATES = ("pending", "in_progress", "done", "dead")


class OutboxMessage(IdMixin, Base):
    __tablename__ = "outbox"

    hospital_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(60))
    # a consumer's effect happens once per key: e.g. "notify:booking_confirmed:42"
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # the lease of the worker running it: another worker may reclaim the message once
    # locked_until has passed; only the holder of lease_token may finish it
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # when it finished: done, or dead-lettered
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_outbox_state_available_at", "state", "available_at"),
        CheckConstraint(f"state IN {OUTBOX_STATES!r}", name="state"),
    )
