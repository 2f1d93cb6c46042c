"""The medical-record cache (建档): a person's record at one hospital's HIS, once known.

Implements booking's `records_step.MedicalRecords` port (wired in `providers.py`):
`cached` reads the cache inside the caller's transaction; `look_up` asks the hospital's HIS
with no transaction open (find by ID number and name; create when asked to and none exists),
then stores the answer in a transaction of its own.

One row per person and hospital (a unique key). Two first holds of one person at once both
ask the HIS: the look-up comes first, and creating is idempotent on the ID number at the HIS
(a real HIS keys its records by it too), so both get the same record; the insert is
insert-or-nothing on the key, and both read back the one row that won. A record is never
deleted here: a hospital patient id does not stop being the patient's.

The visit card number is encrypted like every other personal value (I9); the hospital patient
id is the hospital's identifier, shown on the booking. Nothing personal is logged.
"""
from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy import ForeignKey, String, UniqueConstraint, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from guahao.booking import errors as booking_errors
from guahao.core import crypto
from guahao.core.crypto import Encrypted, encrypted_rows
from guahao.core.db import Base, BigId, Database, IdMixin, UTCDateTime
from guahao.his import client as his_client
from guahao.his import connections

log = structlog.get_logger("guahao.his.records")

RESIDENT_ID = "resident_id"  # the only document the HIS keys records by (18 characters)


@encrypted_rows
class HisRecord(IdMixin, Base):
    """A person's record (建档) at a hospital's HIS: its patient id and visit card."""

    __tablename__ = "his_records"

    person_id: Mapped[int] = mapped_column(BigId, ForeignKey("persons.id"))
    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id"), index=True)
    his_patient_id: Mapped[str] = mapped_column(String(64))
    card_no: Mapped[str | None] = mapped_column(Encrypted("his_records.card_no"))
    source: Mapped[str] = mapped_column(String(10))  # found (existed at the HIS) | created (by us)
    found_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # random, set when the object is built: binds the encrypted column to this row (core/crypto)
    row_key: Mapped[str] = mapped_column(String(32), unique=True)

    __table_args__ = (UniqueConstraint("person_id", "hospital_id"),)


async def cached(session: AsyncSession, *, person_id: int, hospital_id: int) -> str | None:
    """The cached hospital patient id of this person at this hospital, or None."""
    return await session.scalar(select(HisRecord.his_patient_id).where(
        HisRecord.person_id == person_id, HisRecord.hospital_id == hospital_id))


async def connected(session: AsyncSession, *, hospital_id: int) -> bool:
    """Whether the hospital has a HIS connection (no network: the row only)."""
    return await connections.get_connection(session, hospital_id) is not None


async def get(session: AsyncSession, *, person_id: int, hospital_id: int) -> HisRecord | None:
    return await session.scalar(select(HisRecord).where(
        HisRecord.person_id == person_id, HisRecord.hospital_id == hospital_id))


async def look_up(db: Database, *, hospital_id: int, person_id: int, id_type: str, id_number: str, name: str,
                  create: bool, now: dt.datetime) -> str | None:
    """Ask the hospital's HIS for the person's record (creating it when `create`), cache it,
    return the hospital patient id. None: no record, no HIS connection, or a document the HIS
    does not key records by. `booking.errors.HisUnavailable` when the HIS cannot answer."""
    if id_type != RESIDENT_ID:
        return None
    async with db.read() as session:
        found = await cached(session, person_id=person_id, hospital_id=hospital_id)
        if found is not None:
            return found
        client = await connections.client_for(session, hospital_id)
    if client is None:
        return None
    record, source = await _ask(client, id_number.upper(), name, create=create, hospital_id=hospital_id)
    if record is None:
        return None
    return await _store(db, hospital_id=hospital_id, person_id=person_id, record=record, source=source, now=now)


async def _ask(client, id_number: str, name: str, *, create: bool, hospital_id: int):
    """(record, "found" | "created") or (None, None); the network, no transaction open."""
    try:
        try:
            record = await client.find_patient(id_number, name)
        except his_client.HisRefused as exc:
            # the HIS knows this ID number under another name: not this patient's record
            log.info("his_record_refused", hospital_id=hospital_id, code=exc.code, call="find")
            return None, None
        if record is not None:
            return record, "found"
        if not create:
            return None, None
        try:
            return await client.create_patient(id_number, name), "created"
        except his_client.HisOutcomeUnknown:
            # creating is idempotent on the ID number: whether it happened, the look-up says
            record = await client.find_patient(id_number, name)
            return (record, "created") if record is not None else (None, None)
        except his_client.HisRefused as exc:
            log.info("his_record_refused", hospital_id=hospital_id, code=exc.code, call="create")
            return None, None
    except (his_client.HisUnavailable, his_client.HisBadAnswer, his_client.HisOutcomeUnknown) as exc:
        log.warning("his_record_unavailable", hospital_id=hospital_id, error=type(exc).__name__)
        raise booking_errors.HisUnavailable() from exc


async def _store(db: Database, *, hospital_id: int, person_id: int, record, source: str, now: dt.datetime) -> str:
    """Insert-or-nothing on (person, hospital); the row that is there afterwards wins."""
    row_key = crypto.new_row_key()
    values = dict(person_id=person_id, hospital_id=hospital_id, his_patient_id=record.patient_id,
                  card_no=crypto.for_row(record.card_no, row_key) if record.card_no else None, source=source,
                  found_at=now, row_key=row_key)
    async with db.begin() as session:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        await session.execute(insert(HisRecord).values(**values)
                              .on_conflict_do_nothing(index_elements=["person_id", "hospital_id"]))
        stored = await cached(session, person_id=person_id, hospital_id=hospital_id)
    log.info("his_record_cached", hospital_id=hospital_id, person_id=person_id, source=source)
    return stored
