"""建档 (the patient's medical record at the hospital's HIS) before a hold.

The hospital's `record_requirement` rule says what a hold needs:
- `existing_record_required`: the patient must already have a record at the HIS; it is looked
  up (ID number and name) and cached per person and hospital once found. No record:
  `record_required` (register at the hospital first).
- `auto_create_in_his`: the record is created at the HIS when first needed (the first hold at
  that hospital) and cached; the booking shows the hospital patient id. A hospital with no HIS
  connection, or a HIS that cannot create it (another name on that ID number), books without
  one, and the booking then tells the patient to register at the hospital, as below.
- `create_at_hospital`: nothing is asked of the HIS; the booking, its detail and the
  confirmation SMS tell the patient to register at the window or kiosk before the visit.
- `none`: nothing.

The HIS is another system across the network, and no network call happens inside a database
transaction. `do_hold` only reads the cache (`cached_record`); when the rule needs a record
and none is cached yet, it raises `RecordLookupNeeded`, which rolls its transaction back. The
hold (`booking/hold_flow.py`, `hold_once`) then calls `ensure_record`, which reads in a short
read transaction, talks to the HIS with none open and stores what it found in a transaction of
its own, and holds again (`record_looked_up=True`). A record is never removed, so what the
look-up stored is still there. Holds at hospitals without the rule, and every hold after a
person's first at such a hospital, pay nothing for it: the cache read is one indexed SELECT.

The record cache is the HIS feature's table, above booking in the layers, so booking owns the
port (`MedicalRecords`) and `providers.py` wires `guahao.his.records` into it.
"""
from __future__ import annotations

import datetime as dt
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import errors
from guahao.booking.context import load_slot_context
from guahao.core.db import Database
from guahao.core.errors import GuahaoError
from guahao.patients import cards as patients_cards
from guahao.patients import service as patients_service

EXISTING = "existing_record_required"
AUTO_CREATE = "auto_create_in_his"
AT_HOSPITAL = "create_at_hospital"
RECORD_AT_HIS = (EXISTING, AUTO_CREATE)

_NOTICE = {
    "zh-CN": "请在就诊前到医院窗口或自助机办理建档(就诊卡),再签到取号。",
    "en": "Please register at the hospital's window or self-service machine (to get a visit card) "
          "before your visit, then check in.",
}


class MedicalRecords(Protocol):
    """The per-person, per-hospital record cache and the HIS look-up behind it."""

    async def cached(self, session: AsyncSession, *, person_id: int, hospital_id: int) -> str | None:
        """The cached hospital patient id, or None."""

    async def connected(self, session: AsyncSession, *, hospital_id: int) -> bool:
        """Whether the hospital has a HIS connection to ask at all."""

    async def look_up(self, db: Database, *, hospital_id: int, person_id: int, id_type: str, id_number: str,
                      name: str, create: bool, now: dt.datetime) -> str | None:
        """Ask the hospital's HIS (no transaction open), creating the record when `create`;
        cache and return the hospital patient id. None: no record (or no HIS connection).
        Raises `errors.HisUnavailable` when the HIS cannot be reached."""


def needs_notice(record_requirement: str, his_patient_id: str | None) -> bool:
    """Whether the patient must register at the hospital before the visit."""
    return record_requirement == AT_HOSPITAL or (record_requirement == AUTO_CREATE and his_patient_id is None)


def record_notice(record_requirement: str, his_patient_id: str | None, locale: str) -> str | None:
    if not needs_notice(record_requirement, his_patient_id):
        return None
    return _NOTICE["en" if locale == "en" else "zh-CN"]


async def ensure_record(db: Database, records: MedicalRecords | None, *, account_id: int, patient_id: int,
                        slot_id: int, now: dt.datetime) -> None:
    """Before the hold transaction: make sure the record the hospital's rule asks for is
    cached, or refuse (`record_required`, `his_unavailable`). Does nothing when the hold would
    be refused anyway for a reason of its own (unknown slot or patient, not open, unverified):
    the hold gives that answer, and the HIS is not asked for a hold that cannot happen."""
    if records is None:
        return
    async with db.read() as session:
        ctx = await load_slot_context(session, slot_id)
        if ctx is None or ctx.rules.record_requirement not in RECORD_AT_HIS:
            return
        patient = await patients_service.get_for_account(session, account_id, patient_id)
        if patient is None or (ctx.rules.verification_required and patient.verification != "verified"):
            return
        if not _open(ctx, now):
            return
        if await records.cached(session, person_id=patient.person_id, hospital_id=ctx.hospital_id) is not None:
            return
        person_id, id_type, id_number, name = patient.person_id, patient.id_type, patient.id_number, patient.name
    requirement = ctx.rules.record_requirement
    found = await records.look_up(db, hospital_id=ctx.hospital_id, person_id=person_id, id_type=id_type,
                                  id_number=id_number, name=name, create=requirement == AUTO_CREATE, now=now)
    if found is None and requirement == EXISTING:
        raise errors.RecordRequired()


def _open(ctx, now: dt.datetime) -> bool:
    from guahao.booking.actions import check_schedule_open  # actions imports this module

    try:
        check_schedule_open(ctx, now)
    except GuahaoError:
        return False
    return True


class RecordLookupNeeded(Exception):
    """Raised inside the hold transaction (which it rolls back) when the hospital's rule needs
    the patient's HIS record and none is cached: the caller runs `ensure_record` with no
    transaction open and holds again with `looked_up=True`. Not a refusal (no GuahaoError):
    it is never anybody's answer."""


async def cached_record(session: AsyncSession, records: MedicalRecords | None, *, record_requirement: str,
                        person_id: int, hospital_id: int, looked_up: bool = False,
                        patient_id: int | None = None) -> str | None:
    """Inside the hold transaction: the hospital patient id the booking carries, from the
    cache. A miss before the HIS was asked raises `RecordLookupNeeded`; after it was asked
    (`looked_up`), or without the port, `existing_record_required` refuses the hold and
    `auto_create_in_his` books without a record (the booking then says: register first).

    就诊卡号 the patient recorded (patients/cards.py), and what a real integration does with it:
    - a hospital with no HIS connection has nobody to ask, so the card number it issued is
      the patient's evidence of a record there: an `existing_record_required` hold goes
      through without a look-up, and the window checks the card against the patient's ID
      document at the visit (as it does for walk-ins). Without a card it refuses, naming it.
    - a hospital with a HIS keeps the look-up by ID number and name: the HIS is the system of
      record and a typed card number proves nothing (anyone can type one, or a digit wrong),
      so the card never skips the question nor overrides a "no record" answer; the record
      the HIS returns carries the hospital's own card number, and that is the one used.
    Both extra reads happen only on a cache miss at such a hospital, never on a normal hold."""
    if record_requirement not in RECORD_AT_HIS:
        return None
    if records is not None:
        found = await records.cached(session, person_id=person_id, hospital_id=hospital_id)
        if found is not None:
            return found
    if record_requirement == EXISTING and patient_id is not None and (
            records is None or not await records.connected(session, hospital_id=hospital_id)):
        if await patients_cards.has_card(session, patient_id=patient_id, hospital_id=hospital_id):
            return None
        raise errors.VisitCardRequired()
    if records is not None and not looked_up:
        raise RecordLookupNeeded()
    if record_requirement == EXISTING:
        raise errors.RecordRequired()
    return None
