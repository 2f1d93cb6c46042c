"""Patients (就诊人): add, list, edit, remove, identity verification.

Other features use `get_for_account` / `get_or_raise` (the account's live patient, never
another account's), `Patient.person_id` for person-level limits and `lock_person` to count
against them under the person's row lock.

Concurrency story. Every write to an account's patient list first locks that account's row
(`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite each write transaction starts with BEGIN
IMMEDIATE, so writers are already serialised). With that lock held, the count against the
per-account maximum and the duplicate / 'self' checks cannot race a concurrent add; the
partial unique indexes stay as the database's backstop. Lock order is always account row,
then patient row. No network I/O happens in these transactions: identity verification reads
in one short transaction, calls the provider with no transaction open, then writes.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.accounts import service as accounts_service
from guahao.core.clock import SHANGHAI, Clock
from guahao.core.crypto import lock_lookup, lookup_hash, lookup_hashes
from guahao.core.db import Database
from guahao.core.errors import Conflict, NotFound
from guahao.core.idcard import validate_document
from guahao.core.ratelimit import RateLimiter
from guahao.patients import errors
from guahao.patients.face_check import FaceCheckPort
from guahao.patients.models import Patient, Person, VisitCard
from guahao.patients.schemas import PatientCreate, PatientUpdate
from guahao.patients.validation import (
    age_on,
    check_birth_date,
    normalise_card,
    normalise_email,
    normalise_mobile,
    normalise_name,
    normalise_text,
)

log = structlog.get_logger("guahao.patients")


class LiveBookings(Protocol):
    """The one question patients asks of booking, which sits above it in the layers: the
    booking feature answers it (`guahao.booking.queries`), `providers.py` wires the two."""

    async def patient_has_live_bookings(self, session: AsyncSession, patient_id: int) -> bool: ...

# Each face check costs money at the provider and invites guessing; cap attempts per account.
FACE_CHECK_LIMIT = "5/minute;20/day"
# under this age a patient may have no phone of its own: the guardian's account number is used
GUARDIAN_MANAGED_AGE = 14


def local_today(now: dt.datetime) -> dt.date:
    """Birth dates and ages are calendar dates in China."""
    return now.astimezone(SHANGHAI).date()


def identity_hash(id_type: str, normalised_number: str) -> str:
    """The key of a real person across accounts (a keyed hash; the number stays encrypted),
    under the current index key: the one to store."""
    return lookup_hash("identity", f"{id_type}:{normalised_number}")


def identity_hashes(id_type: str, normalised_number: str) -> list[str]:
    """The person's hashes under every active index key, the current one first: the ones to
    look up by while an index key is being rotated (docs/KEYS.md)."""
    return lookup_hashes("identity", f"{id_type}:{normalised_number}")


def phone_hash(normalised_phone: str) -> str:
    """The keyed lookup hash of a patient's phone under the current index key (stored)."""
    return lookup_hash("phone", normalised_phone)


# --- reads --------------------------------------------------------------------------------

async def get_for_account(session: AsyncSession, account_id: int, patient_id: int, *,
                          for_update: bool = False) -> Patient | None:
    """The account's live patient with this id, or None (also for another account's patient)."""
    stmt = select(Patient).where(Patient.id == patient_id, Patient.account_id == account_id,
                                 Patient.removed_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


def verified_patient_of(account_id, patient_id):
    """SELECT id, person_id of the account's live, verified patient `patient_id` (SQL
    expressions both): get_for_account's rule plus verification, as a statement other
    features compose into one round trip (the draw's entry fast path)."""
    return select(Patient.id, Patient.person_id).where(
        Patient.id == patient_id, Patient.account_id == account_id, Patient.removed_at.is_(None),
        Patient.verification == "verified")


async def live_by_id(session: AsyncSession, patient_ids: Iterable[int]) -> dict[int, Any]:
    """{id: row} of the live patients among these ids, one statement per 1,000: the plain
    columns a rule checks (id, account_id, person_id, verification, birth_date, sex), nothing
    to decrypt; the caller checks each one's account as `get_for_account` does."""
    ids, out, p = sorted(set(patient_ids)), {}, Patient
    for start in range(0, len(ids), 1000):
        out.update((row.id, row) for row in await session.execute(
            select(p.id, p.account_id, p.person_id, p.verification, p.birth_date, p.sex)
            .where(p.id.in_(ids[start:start + 1000]), p.removed_at.is_(None))))
    return out


async def get_or_raise(session: AsyncSession, account_id: int, patient_id: int, *,
                       for_update: bool = False) -> Patient:
    """Like get_for_account, but raises NotFound: another account's patient answers exactly
    like a missing one, so ids leak nothing (I8)."""
    patient = await get_for_account(session, account_id, patient_id, for_update=for_update)
    if patient is None:
        raise NotFound("patient")
    return patient


async def get_one(session: AsyncSession, patient_id: int) -> Patient:
    """A patient by id, removed ones too: a booking keeps showing whom it was made for."""
    return await session.get_one(Patient, patient_id)


async def names_by_id(session: AsyncSession, patient_ids: Iterable[int]) -> dict[int, str]:
    """{patient_id: name}, removed patients too (rosters of bookings already made)."""
    ids = set(patient_ids)
    if not ids:
        return {}
    return dict((await session.execute(select(Patient.id, Patient.name).where(Patient.id.in_(ids)))).all())


async def lock_person(session: AsyncSession, person_id: int, *, read: Callable[[Any], Any] | None = None):
    """Lock a person's row: second in the lock order schedule → person → seats → booking →
    payment (DESIGN.md section 5). It serialises what is counted per person across the
    accounts that list them (holds, strikes).

    `read`, given the person-id column, builds a scalar subquery whose value is returned,
    read in the same statement as the lock so the caller pays no extra round trip (booking
    reads the person's running restriction so). Without it: the person's id, None if absent."""
    column = Person.id if read is None else read(Person.id)
    return await session.scalar(select(column).where(Person.id == person_id).with_for_update(of=Person))


async def lock_persons(session: AsyncSession, person_ids: Iterable[int], *, read: Callable[[Any], Any]) -> dict[int, Any]:
    """`lock_person` for many, in id order, one statement per 1,000: {person id: `read`'s value}."""
    ids, out = sorted(set(person_ids)), {}
    for start in range(0, len(ids), 1000):
        out.update((await session.execute(select(Person.id, read(Person.id)).where(Person.id.in_(ids[start:start + 1000]))
                                          .order_by(Person.id).with_for_update(of=Person))).all())
    return out


async def list_for_account(session: AsyncSession, account_id: int) -> list[Patient]:
    rows = await session.scalars(
        select(Patient).where(Patient.account_id == account_id, Patient.removed_at.is_(None)).order_by(Patient.id)
    )
    return list(rows)


async def count_live(session: AsyncSession, account_id: int) -> int:
    return await session.scalar(
        select(func.count()).select_from(Patient).where(Patient.account_id == account_id,
                                                        Patient.removed_at.is_(None))
    ) or 0


# --- helpers (never commit) ---------------------------------------------------------------

async def get_or_create_person(session: AsyncSession, id_hash: str | list[str], *, now: dt.datetime) -> int:
    """The Person id for an identity hash (or the hashes under every active index key, the
    current one first, as `identity_hashes` gives them), created on first sight.

    Race-safe without a savepoint: INSERT ... ON CONFLICT DO NOTHING (PostgreSQL and SQLite
    both speak it) waits for a concurrent inserter of the same hash and then does nothing,
    and the re-select (a new snapshot under READ COMMITTED) sees that inserter's row. A plain
    INSERT that failed would abort the whole PostgreSQL transaction instead.

    The same person stored under the previous index key is found by its other hash;
    `lock_lookup` keeps two creators with different current keys from making two persons.
    """
    hashes = [id_hash] if isinstance(id_hash, str) else list(id_hash)
    id_hash = hashes[0]
    await lock_lookup(session, hashes)
    stmt = select(Person.id).where(Person.identity_hash.in_(hashes)).order_by(Person.id).limit(1)
    person_id = await session.scalar(stmt)
    if person_id is not None:
        return person_id
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(Person).values(identity_hash=id_hash, created_at=now).on_conflict_do_nothing(
            index_elements=[Person.identity_hash])
    )
    person_id = await session.scalar(stmt)
    if person_id is None:  # pragma: no cover - a conflicting row that vanished: ask for a retry
        raise Conflict()
    return person_id


async def _self_taken(session: AsyncSession, account_id: int, *, except_id: int | None = None) -> bool:
    stmt = select(Patient.id).where(Patient.account_id == account_id, Patient.relationship == "self",
                                    Patient.removed_at.is_(None))
    if except_id is not None:
        stmt = stmt.where(Patient.id != except_id)
    return (await session.scalar(stmt.limit(1))) is not None


async def _person_taken(session: AsyncSession, account_id: int, person_id: int) -> bool:
    stmt = select(Patient.id).where(Patient.account_id == account_id, Patient.person_id == person_id,
                                    Patient.removed_at.is_(None))
    return (await session.scalar(stmt.limit(1))) is not None


async def _write_or_explain(session: AsyncSession, account_id: int, person_id: int | None,
                            apply: Callable[[], None]) -> None:
    """Apply a change and flush it inside a savepoint. If a partial unique index refuses the
    row (possible only if some path skipped the account lock), answer with the matching typed
    error. The change must be made inside the savepoint: SQLAlchemy then discards it on
    rollback, whereas an object added or dirtied before would fail the whole transaction."""
    try:
        async with session.begin_nested():
            apply()
            await session.flush()
    except IntegrityError:
        if person_id is not None and await _person_taken(session, account_id, person_id):
            raise errors.DuplicatePatient() from None
        if await _self_taken(session, account_id):
            raise errors.SelfAlreadyExists() from None
        raise


# --- state changes (one transaction each, opened by the caller) ---------------------------

async def do_add_patient(session: AsyncSession, *, account_id: int, data: PatientCreate,
                         max_patients: int, now: dt.datetime) -> Patient:
    today = local_today(now)
    # Validate everything before taking the lock: the lock is held as briefly as possible.
    name = normalise_name(data.name)
    phone = normalise_mobile(data.phone) if data.phone else None
    insurance_card, visit_card = normalise_card(data.insurance_card), normalise_card(data.visit_card)
    email, address = normalise_email(data.email), normalise_text(data.address)
    history = normalise_text(data.medical_history)
    if history is not None and not data.health_consent:
        raise errors.HealthConsentRequired()
    document = validate_document(data.id_type, data.id_number, today=today)
    if document.birth_date is not None:
        if data.birth_date is not None or data.sex is not None:
            raise errors.DerivedFromIdNumber()
        birth_date, sex = document.birth_date, document.sex
    else:
        if data.birth_date is None or data.sex is None:
            raise errors.BirthDateAndSexRequired()
        birth_date, sex = check_birth_date(data.birth_date, today=today), data.sex
    if phone is None:
        # a child without a phone of its own is reached through the guardian's account
        if age_on(birth_date, today) >= GUARDIAN_MANAGED_AGE:
            raise errors.InvalidPhone()
        guardian = await accounts_service.get(session, account_id)
        if guardian is None:
            raise errors.InvalidPhone()
        phone = guardian.phone

    await accounts_service.lock_account(session, account_id)
    if await count_live(session, account_id) >= max_patients:
        raise errors.TooManyPatients(limit=max_patients)
    if data.relationship == "self" and await _self_taken(session, account_id):
        raise errors.SelfAlreadyExists()
    person_id = await get_or_create_person(session, identity_hashes(document.id_type, document.number), now=now)
    if await _person_taken(session, account_id, person_id):
        raise errors.DuplicatePatient()

    patient = Patient(
        account_id=account_id, person_id=person_id, relationship=data.relationship, name=name,
        id_type=document.id_type, id_number=document.number, birth_date=birth_date, sex=sex,
        phone=phone, phone_hash=phone_hash(phone), insurance_card=insurance_card, visit_card=visit_card,
        email=email, address=address,
        medical_history=history, health_consent_at=now if history is not None else None,
        verification="unverified", created_at=now, updated_at=now,
    )
    await _write_or_explain(session, account_id, person_id, lambda: session.add(patient))
    log.info("patient_added", account_id=account_id, patient_id=patient.id, person_id=person_id)
    return patient


async def do_window_patient(session: AsyncSession, *, name: str, id_type: str, id_number: str, phone: str,
                            birth_date: dt.date | None, sex: str | None, now: dt.datetime) -> Patient:
    """The patient entry of a person registered at a hospital's window (a walk-in): no account
    owns it (account_id NULL). The same person's earlier window entry is reused; the person
    row is the one online bookings use, so per-person rules hold across both."""
    today = local_today(now)
    name, phone = normalise_name(name), normalise_mobile(phone)
    document = validate_document(id_type, id_number, today=today)
    if document.birth_date is not None:
        birth_date, sex = document.birth_date, document.sex
    elif birth_date is None or sex is None:
        raise errors.BirthDateAndSexRequired()
    else:
        birth_date = check_birth_date(birth_date, today=today)
    person_id = await get_or_create_person(session, identity_hashes(document.id_type, document.number), now=now)
    existing = await session.scalar(select(Patient).where(
        Patient.person_id == person_id, Patient.account_id.is_(None), Patient.removed_at.is_(None))
        .order_by(Patient.id).limit(1))
    if existing is not None:
        return existing
    patient = Patient(account_id=None, person_id=person_id, relationship="self", name=name,
                      id_type=document.id_type, id_number=document.number, birth_date=birth_date, sex=sex,
                      phone=phone, phone_hash=phone_hash(phone), verification="unverified", created_at=now,
                      updated_at=now)
    session.add(patient)
    await session.flush()
    log.info("window_patient_added", patient_id=patient.id, person_id=person_id)
    return patient


async def do_update_patient(session: AsyncSession, *, account_id: int, patient_id: int,
                            data: PatientUpdate, now: dt.datetime) -> Patient:
    if data.touches_identity:
        raise errors.IdentityImmutable()
    changes = data.model_dump(exclude_unset=True)
    name = normalise_name(data.name) if data.name is not None else None
    phone = normalise_mobile(data.phone) if data.phone is not None else None
    cards = {key: normalise_card(changes[key]) for key in ("insurance_card", "visit_card") if key in changes}
    if "email" in changes:
        cards["email"] = normalise_email(changes["email"])
    if "address" in changes:
        cards["address"] = normalise_text(changes["address"])
    if "medical_history" in changes:
        history = normalise_text(changes["medical_history"])
        if history is not None and not data.health_consent:
            raise errors.HealthConsentRequired()
        cards.update(medical_history=history, health_consent_at=now if history is not None else None)

    await accounts_service.lock_account(session, account_id)
    patient = await get_or_raise(session, account_id, patient_id, for_update=True)
    values: dict[str, Any] = dict(cards, updated_at=now)
    if data.relationship is not None and data.relationship != patient.relationship:
        if data.relationship == "self" and await _self_taken(session, account_id, except_id=patient.id):
            raise errors.SelfAlreadyExists()
        values["relationship"] = data.relationship
    if name is not None and name != patient.name:
        # The face check matched this face to (name, ID number); a new name needs a new check.
        values.update(name=name, verification="unverified", verified_at=None)
    if phone is not None:
        values.update(phone=phone, phone_hash=phone_hash(phone))

    def apply() -> None:
        for key, value in values.items():
            setattr(patient, key, value)

    await _write_or_explain(session, account_id, None, apply)
    log.info("patient_updated", account_id=account_id, patient_id=patient.id,
             fields=sorted(k for k in changes if k != "health_consent"))
    return patient


async def do_remove_patient(session: AsyncSession, *, account_id: int, patient_id: int, now: dt.datetime,
                            bookings: LiveBookings) -> None:
    """Soft removal: bookings and history keep pointing at the row; the person may be re-added."""
    await accounts_service.lock_account(session, account_id)
    patient = await get_or_raise(session, account_id, patient_id, for_update=True)
    if await bookings.patient_has_live_bookings(session, patient.id):
        raise errors.PatientHasBookings()
    patient.removed_at = patient.updated_at = now
    # the row stays for the bookings; the hospitals' card numbers serve nothing any more
    await session.execute(delete(VisitCard).where(VisitCard.patient_id == patient.id))
    await session.flush()
    log.info("patient_removed", account_id=account_id, patient_id=patient.id)


# --- identity verification: owns its transactions -----------------------------------------

async def verify_identity(db: Database, face_check: FaceCheckPort, limiter: RateLimiter, clock: Clock, *,
                          account_id: int, patient_id: int, liveness_token: str) -> Patient:
    """Run the face check for a patient and record the outcome.

    The provider is called with no transaction open (it may take seconds, and no row lock may
    be held across network I/O), so this function opens its own two short transactions
    instead of taking a session. A failed check is committed before IdentityCheckFailed is
    raised, so the patient's state shows the failure.
    """
    async with db.read() as session:
        patient = await get_or_raise(session, account_id, patient_id)
    if patient.verification == "verified":
        return patient  # idempotent: a retried request does not pay for a second check
    await limiter.hit(FACE_CHECK_LIMIT, "face_check", str(account_id))
    try:
        result = await face_check.verify(name=patient.name, id_number=patient.id_number,
                                         liveness_token=liveness_token)
    except Exception as exc:  # any provider failure leaves the state unchanged
        log.warning("face_check_unavailable", patient_id=patient_id, error_type=type(exc).__name__)
        raise errors.IdentityCheckUnavailable() from None

    now = clock.now()
    async with db.begin() as session:
        # Conditional update: a name edited meanwhile (the edit resets verification and bumps
        # updated_at) makes this result stale, and a concurrent pass is never downgraded.
        result_rows = await session.execute(
            update(Patient)
            .where(Patient.id == patient.id, Patient.account_id == account_id, Patient.removed_at.is_(None),
                   Patient.updated_at == patient.updated_at, Patient.verification != "verified")
            .values(verification="verified" if result.passed else "failed",
                    verified_at=now if result.passed else None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        applied = result_rows.rowcount == 1
        patient = await get_or_raise(session, account_id, patient_id)
    log.info("patient_face_check", patient_id=patient_id, passed=result.passed, applied=applied,
             reason=result.reason)
    if patient.verification == "verified":
        return patient
    if not applied:
        raise Conflict()  # the patient changed during the check: reload and verify again
    raise errors.IdentityCheckFailed()
