"""就诊卡号 per hospital: the card number each hospital gave a 就诊人, as the patient typed it.

One row per patient and hospital (a unique key); the number is personal data, so it is
encrypted (`VisitCard.card_number`) and leaves the service masked (`****1234`), except to the
hold's 建档 step (booking/records_step.py), which only asks whether there is one.

Writes lock the account's row first, like every other change to an account's patients
(patients/service.py), so an add racing an add for the same hospital becomes an update.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.accounts import service as accounts_service
from guahao.catalog import service as catalog_service
from guahao.core.crypto import mask_card
from guahao.core.errors import NotFound
from guahao.patients import errors, service
from guahao.patients.models import VisitCard
from guahao.patients.validation import normalise_card

MAX_CARDS = 20  # per patient: more hospitals than anybody visits


@dataclass(frozen=True)
class CardView:
    hospital_id: int
    hospital_name: str
    card_number: str  # masked
    updated_at: dt.datetime


async def list_cards(session: AsyncSession, account_id: int, patient_id: int) -> list[CardView]:
    """The patient's cards, masked, with their hospital's name (NotFound for another
    account's patient)."""
    await service.get_or_raise(session, account_id, patient_id)
    rows = list(await session.scalars(select(VisitCard).where(VisitCard.patient_id == patient_id)
                                      .order_by(VisitCard.updated_at.desc(), VisitCard.id.desc())))
    views = []
    for row in rows:
        hospital = await catalog_service.get_hospital_or_raise(session, row.hospital_id, include_inactive=True)
        views.append(CardView(hospital_id=row.hospital_id, hospital_name=hospital.name,
                              card_number=mask_card(row.card_number), updated_at=row.updated_at))
    return views


async def do_set_card(session: AsyncSession, *, account_id: int, patient_id: int, hospital_id: int,
                      card_number: str, now: dt.datetime) -> None:
    """Add or replace the card number of one hospital."""
    number = normalise_card(card_number)
    if number is None:
        raise errors.InvalidCardNumber()
    await accounts_service.lock_account(session, account_id)
    await service.get_or_raise(session, account_id, patient_id)
    await catalog_service.get_hospital_or_raise(session, hospital_id)
    row = await session.scalar(select(VisitCard).where(VisitCard.patient_id == patient_id,
                                                       VisitCard.hospital_id == hospital_id))
    if row is None:
        count = len(list(await session.scalars(select(VisitCard.id).where(VisitCard.patient_id == patient_id))))
        if count >= MAX_CARDS:
            raise errors.TooManyVisitCards(limit=MAX_CARDS)
        session.add(VisitCard(patient_id=patient_id, hospital_id=hospital_id, card_number=number, created_at=now,
                              updated_at=now))
    else:
        row.card_number = number
        row.updated_at = now
    await session.flush()


async def do_remove_card(session: AsyncSession, *, account_id: int, patient_id: int, hospital_id: int) -> None:
    await accounts_service.lock_account(session, account_id)
    await service.get_or_raise(session, account_id, patient_id)
    row = await session.scalar(select(VisitCard).where(VisitCard.patient_id == patient_id,
                                                       VisitCard.hospital_id == hospital_id))
    if row is None:
        raise NotFound("visit_card")
    await session.delete(row)
    await session.flush()


async def has_card(session: AsyncSession, *, patient_id: int, hospital_id: int) -> bool:
    """Whether the patient recorded a card of this hospital (the hold's 建档 step)."""
    return await session.scalar(select(VisitCard.id).where(VisitCard.patient_id == patient_id,
                                                           VisitCard.hospital_id == hospital_id)) is not None
