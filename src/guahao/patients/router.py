"""HTTP routes of the patients feature: the logged-in account's 就诊人.

Each state change runs in one transaction (`db.begin()`), and the response is built after
the block has committed, so a 2xx answer means the row is durable (I7).
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from guahao.core.clock import SHANGHAI as PLATFORM_ZONE  # a patient belongs to no hospital
from guahao.core.deps import ClockDep, CurrentAccount, Db
from guahao.core.localtime import localize
from guahao.patients import cards, service
from guahao.patients.schemas import (
    PatientCreate,
    PatientPage,
    PatientRead,
    PatientUpdate,
    VerifyRequest,
    VisitCardIn,
    VisitCardRead,
)

router = APIRouter(prefix="/api/v1/me/patients", tags=["patients"])
# Bounded so that an absurd id is a validation error, not a BIGINT overflow in the database.
PatientId = Annotated[int, Path(ge=1, le=2**63 - 1)]
HospitalId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PatientRead)
async def add_patient(body: PatientCreate, request: Request, account: CurrentAccount, db: Db,
                      clock: ClockDep) -> PatientRead:
    """Add a 就诊人 to your account (ID number checked by its check digit; identity verification follows)."""
    now = clock.now()
    max_patients = request.app.state.settings.max_patients_per_account
    async with db.begin() as session:
        patient = await service.do_add_patient(session, account_id=account.account_id, data=body,
                                               max_patients=max_patients, now=now)
    return localize(PatientRead.from_patient(patient, today=service.local_today(now)), PLATFORM_ZONE)


@router.get("", response_model=PatientPage)
async def list_patients(request: Request, account: CurrentAccount, db: Db, clock: ClockDep) -> PatientPage:
    """Your 就诊人, masked."""
    async with db.read() as session:
        patients = await service.list_for_account(session, account.account_id)
    today = service.local_today(clock.now())
    return localize(PatientPage(items=[PatientRead.from_patient(p, today=today) for p in patients],
                                total=len(patients), max_patients=request.app.state.settings.max_patients_per_account),
                    PLATFORM_ZONE)


@router.get("/{patient_id}", response_model=PatientRead)
async def get_patient(patient_id: PatientId, account: CurrentAccount, db: Db, clock: ClockDep) -> PatientRead:
    """One of your 就诊人, masked."""
    async with db.read() as session:
        patient = await service.get_or_raise(session, account.account_id, patient_id)
    return localize(PatientRead.from_patient(patient, today=service.local_today(clock.now())), PLATFORM_ZONE)


@router.patch("/{patient_id}", response_model=PatientRead)
async def update_patient(patient_id: PatientId, body: PatientUpdate, account: CurrentAccount, db: Db,
                         clock: ClockDep) -> PatientRead:
    """Change a 就诊人's contact details and optional fields; sensitive fields need their consent."""
    now = clock.now()
    async with db.begin() as session:
        patient = await service.do_update_patient(session, account_id=account.account_id, patient_id=patient_id,
                                                  data=body, now=now)
    return localize(PatientRead.from_patient(patient, today=service.local_today(now)), PLATFORM_ZONE)


@router.delete("/{patient_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_patient(patient_id: PatientId, request: Request, account: CurrentAccount, db: Db,
                         clock: ClockDep) -> Response:
    """Remove a 就诊人 with no live bookings (the record stays for past bookings, hidden)."""
    async with db.begin() as session:
        await service.do_remove_patient(session, account_id=account.account_id, patient_id=patient_id,
                                        now=clock.now(), bookings=request.app.state.providers["bookings"])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{patient_id}/verify", response_model=PatientRead)
async def verify_patient(patient_id: PatientId, body: VerifyRequest, request: Request, account: CurrentAccount,
                         db: Db, clock: ClockDep) -> PatientRead:
    """Verify the patient's identity with a face check (real-name verification).

    Send the `liveness_token` the face-check provider's SDK returns after its liveness step.
    Answers: the patient with `verification = "verified"`; 422 `identity_check_failed` (the
    failure is recorded); 503 `identity_check_unavailable` when the provider cannot be reached
    or none is configured (`GUAHAO_FACE_CHECK_PROVIDER=none`). A verified patient is returned
    as is, without a second check.

    **Sandbox** (`GUAHAO_FACE_CHECK_PROVIDER=sandbox`, the development default; refused in
    production): no SDK and no camera. A token that starts with `pass` (e.g. `pass`,
    `pass-demo`) passes; any other token (e.g. `fail`) fails with reason `face_mismatch`.
    Name and ID number are not compared with anything.
    """
    # No transaction here: the service reads, calls the provider with none open, then writes.
    patient = await service.verify_identity(db, request.app.state.face_check, request.app.state.limiter, clock,
                                            account_id=account.account_id, patient_id=patient_id,
                                            liveness_token=body.liveness_token)
    return localize(PatientRead.from_patient(patient, today=service.local_today(clock.now())), PLATFORM_ZONE)


# --- 就诊卡号 per hospital ------------------------------------------------------------------

@router.get("/{patient_id}/visit-cards", response_model=list[VisitCardRead])
async def list_visit_cards(patient_id: PatientId, account: CurrentAccount, db: Db) -> list[VisitCardRead]:
    """The card numbers hospitals gave this patient, masked."""
    async with db.read() as session:
        found = await cards.list_cards(session, account.account_id, patient_id)
    return localize([VisitCardRead(**vars(c)) for c in found], PLATFORM_ZONE)


@router.put("/{patient_id}/visit-cards/{hospital_id}", response_model=list[VisitCardRead])
async def set_visit_card(patient_id: PatientId, hospital_id: HospitalId, body: VisitCardIn, account: CurrentAccount,
                         db: Db, clock: ClockDep) -> list[VisitCardRead]:
    """Add or replace this hospital's card number; answers the patient's cards, masked. A
    hospital that requires an existing record (建档) and has no HIS connection accepts a hold
    for a patient with its card on file (booking/records_step.py)."""
    async with db.begin() as session:
        await cards.do_set_card(session, account_id=account.account_id, patient_id=patient_id,
                                hospital_id=hospital_id, card_number=body.card_number, now=clock.now())
    return await list_visit_cards(patient_id, account, db)


@router.delete("/{patient_id}/visit-cards/{hospital_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_visit_card(patient_id: PatientId, hospital_id: HospitalId, account: CurrentAccount,
                            db: Db) -> Response:
    """Forget the visit card number this 就诊人 has at a hospital."""
    async with db.begin() as session:
        await cards.do_remove_card(session, account_id=account.account_id, patient_id=patient_id,
                                   hospital_id=hospital_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
