"""Look-ups for the hospital's front desk: a person by ID number, patients by phone, both
through their keyed lookup hashes (never by decrypting rows), an identity check against a
document, and masked identities for lists (restrictions)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core.crypto import lookup_hashes, mask_id_number, mask_name
from guahao.core.errors import GuahaoError
from guahao.core.idcard import validate_document
from guahao.patients.models import ID_TYPES, Patient, Person
from guahao.patients.service import identity_hashes
from guahao.patients.validation import normalise_mobile


async def person_ids_by_id_number(session: AsyncSession, id_number: str, *, today: dt.date) -> list[int]:
    """The persons whose ID number (of any document type it is valid for) is `id_number`,
    found through the identity hashes under every active index key: never by decrypting rows."""
    hashes = []
    for id_type in ID_TYPES:
        try:
            document = validate_document(id_type, id_number, today=today)
        except GuahaoError:
            continue
        hashes += identity_hashes(document.id_type, document.number)
    if not hashes:
        return []
    return list(await session.scalars(select(Person.id).where(Person.identity_hash.in_(hashes)).order_by(Person.id)))


def same_identity(patient: Patient, id_number: str, *, today: dt.date) -> bool:
    """Whether `id_number` (as typed or scanned at the window) is this patient's document number."""
    try:
        document = validate_document(patient.id_type, id_number, today=today)
    except GuahaoError:
        return False
    return document.number == patient.id_number


async def patient_ids_by_phone(session: AsyncSession, phone: str) -> list[int]:
    """Patients (removed ones too: their bookings stay) with this phone, through its lookup hash."""
    try:
        normalised = normalise_mobile(phone)
    except GuahaoError:  # not a mobile number: nobody has it
        return []
    hashes = lookup_hashes("phone", normalised)
    return list(await session.scalars(select(Patient.id).where(Patient.phone_hash.in_(hashes)).order_by(Patient.id)))


async def masked_identity_of_persons(session: AsyncSession, person_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """{person_id: (masked name, masked ID number)} from the person's first patient row (every
    row of a person carries the same identity). Masked here: the plaintext never leaves."""
    ids = set(person_ids)
    if not ids:
        return {}
    rows = await session.execute(select(Patient.person_id, Patient.name, Patient.id_number)
                                 .where(Patient.person_id.in_(ids)).order_by(Patient.person_id, Patient.id))
    found: dict[int, tuple[str, str]] = {}
    for person_id, name, number in rows:
        found.setdefault(person_id, (mask_name(name), mask_id_number(number)))
    return found
