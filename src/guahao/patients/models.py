"""Real-name patients (就诊人) owned by accounts; personal fields encrypted at rest."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.crypto import Encrypted, encrypted_rows
from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

ID_TYPES = ("resident_id", "passport", "hk_macau_permit", "taiwan_permit")
RELATIONSHIPS = ("self", "spouse", "child", "parent", "relative", "friend", "other")
VERIFICATION_STATES = ("unverified", "verified", "failed")


class Person(IdMixin, Base):
    """One real human, keyed by the lookup hash of (ID type, ID number), shared by every
    account that registered them. Person-level limits (one per department per day, the
    blacklist) hang off this row."""

    __tablename__ = "persons"

    identity_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


@encrypted_rows
class Patient(IdMixin, Base):
    __tablename__ = "patients"

    # NULL for a walk-in registered at a hospital's window (patients.service.do_window_patient)
    account_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(BigId, ForeignKey("persons.id"), index=True)
    relationship: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(Encrypted("patients.name"))
    id_type: Mapped[str] = mapped_column(String(20))
    id_number: Mapped[str] = mapped_column(Encrypted("patients.id_number"))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1))
    phone: Mapped[str] = mapped_column(Encrypted("patients.phone"))
    # keyed lookup hash of the phone (core.crypto.lookup_hash "phone"): the front desk finds a
    # patient by phone through it, never by decrypting every row; NULL for rows older than it
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    insurance_card: Mapped[str | None] = mapped_column(Encrypted("patients.insurance_card"))
    visit_card: Mapped[str | None] = mapped_column(Encrypted("patients.visit_card"))
    email: Mapped[str | None] = mapped_column(Encrypted("patients.email"))
    address: Mapped[str | None] = mapped_column(Encrypted("patients.address", length=1024))
    # health information (既往病史): sensitive personal information, kept only with its own
    # consent (health_consent_at), never shown back in full
    medical_history: Mapped[str | None] = mapped_column(Encrypted("patients.medical_history", length=2048))
    health_consent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    verification: Mapped[str] = mapped_column(String(20), default="unverified")
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # random, set when the object is built: binds the encrypted columns to this row (core/crypto)
    row_key: Mapped[str] = mapped_column(String(32), unique=True)

    __table_args__ = (
        CheckConstraint(f"id_type IN {ID_TYPES!r}", name="id_type"),
        CheckConstraint(f"relationship IN {RELATIONSHIPS!r}", name="relationship"),
        CheckConstraint(f"verification IN {VERIFICATION_STATES!r}", name="verification"),
        CheckConstraint("sex IN ('M', 'F')", name="sex"),
        # a person appears at most once among an account's current patients
        Index("uq_patients_account_person_live", "account_id", "person_id", unique=True,
              sqlite_where=text("removed_at IS NULL"), postgresql_where=text("removed_at IS NULL")),
        # at most one 'self' per account
        Index("uq_patients_account_self_live", "account_id", unique=True,
              sqlite_where=text("relationship = 'self' AND removed_at IS NULL"),
              postgresql_where=text("relationship = 'self' AND removed_at IS NULL")),
    )


@encrypted_rows
class VisitCard(IdMixin, Base):
    """就诊卡号: the card number one hospital gave this patient, as the patient recorded it.
    One per patient and hospital; personal data, so encrypted and shown masked."""

    __tablename__ = "patient_visit_cards"

    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id", ondelete="CASCADE"))
    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"), index=True)
    card_number: Mapped[str] = mapped_column(Encrypted("patient_visit_cards.card_number"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # random, set when the object is built: binds the encrypted column to this row (core/crypto)
    row_key: Mapped[str] = mapped_column(String(32), unique=True)

    __table_args__ = (UniqueConstraint("patient_id", "hospital_id"),)
