"""Account holders (login by mobile + SMS code), SMS codes and server-side sessions."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.crypto import Encrypted, encrypted_rows
from guahao.core.db import Base, BigId, IdMixin, UTCDateTime


@encrypted_rows
class Account(IdMixin, Base):
    __tablename__ = "accounts"

    phone: Mapped[str] = mapped_column(Encrypted("accounts.phone"))  # E.164, encrypted
    phone_hash: Mapped[str] = mapped_column(String(64), unique=True)
    locale: Mapped[str] = mapped_column(String(10), default="zh-CN")
    # whether the holder chose `locale` (the web's switch, PATCH /me): only a choice outranks
    # the browser's Accept-Language on the pages; the default zh-CN is no choice
    locale_chosen: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # random, set when the object is built: binds the encrypted phone to this row (core/crypto)
    row_key: Mapped[str] = mapped_column(String(32), unique=True)


class SmsCode(IdMixin, Base):
    """A login code: stored hashed, single use, short-lived, a few attempts."""

    __tablename__ = "sms_codes"

    phone_hash: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(20), default="login")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_sms_codes_phone_hash_created_at", "phone_hash", "created_at"),)


class AuthSession(IdMixin, Base):
    """An opaque session token (only its SHA-256 is stored) for an account or a staff user."""

    __tablename__ = "auth_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("(account_id IS NULL) <> (staff_id IS NULL)", name="one_subject"),
    )


class Consent(IdMixin, Base):
    """A consent the account holder gave (PIPL): which text, which version, when. Separate
    consents (personal information at login, the ID number of a 就诊人) are separate rows;
    a new version of a text is asked for again and recorded as a new row."""

    __tablename__ = "account_consents"

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    version: Mapped[str] = mapped_column(String(20))
    consented_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_account_consents_account_id_kind", "account_id", "kind"),)
