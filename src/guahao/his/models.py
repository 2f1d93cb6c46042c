"""A hospital's connection to its HIS: where it is, who we are to it, and the shared key.

The platform operator manages these rows (hospital staff never see the key). The key is
encrypted at rest like personal data: whoever reads the database must not be able to sign
requests to a hospital's HIS.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.crypto import Encrypted, encrypted_rows
from guahao.core.db import Base, BigId, IdMixin, UTCDateTime


@encrypted_rows
class HisConnection(IdMixin, Base):
    __tablename__ = "his_connections"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"), unique=True)
    base_url: Mapped[str] = mapped_column(String(300))
    platform: Mapped[str] = mapped_column(String(64))  # our platform (channel) id at this HIS
    pool: Mapped[str] = mapped_column(String(64))  # the HIS pool we sell
    key: Mapped[str] = mapped_column(Encrypted("his_connections.key"))  # hex of our per-platform key
    timeout_ms: Mapped[int] = mapped_column(Integer, default=2000)
    cache_ms: Mapped[int] = mapped_column(Integer, default=2000)  # availability cache of realtime mode
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    row_key: Mapped[str] = mapped_column(String(32), unique=True)

    __table_args__ = (
        CheckConstraint("timeout_ms BETWEEN 100 AND 60000", name="timeout_ms"),
        CheckConstraint("cache_ms BETWEEN 0 AND 60000", name="cache_ms"),
    )
