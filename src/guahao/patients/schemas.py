"""Request and response shapes. Responses carry personal values only masked (I9).

The request models check shape only (types, lengths); the meaning of the values (name
script, mobile number, ID number) is checked by the service, which raises typed errors with
stable codes rather than a generic validation error.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from guahao.core.crypto import mask_address, mask_card, mask_email, mask_id_number, mask_name, mask_phone
from guahao.patients.models import ID_TYPES, RELATIONSHIPS, VERIFICATION_STATES, Patient
from guahao.patients.validation import age_on

Relationship = Literal[RELATIONSHIPS]  # type: ignore[valid-type]
IdType = Literal[ID_TYPES]  # type: ignore[valid-type]
Verification = Literal[VERIFICATION_STATES]  # type: ignore[valid-type]
Sex = Literal["M", "F"]


class PatientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    relationship: Relationship
    name: str = Field(max_length=100, description="As printed on the ID document, 1-30 characters")
    id_type: IdType = "resident_id"
    id_number: str = Field(max_length=64)
    phone: str | None = Field(None, max_length=32, description="Mainland China mobile number; may be left out "
                              "for a child under 14 (the guardian's, i.e. the account's, number is used)")
    birth_date: dt.date | None = Field(None, description="Required unless id_type is resident_id (then derived)")
    sex: Sex | None = Field(None, description="Required unless id_type is resident_id (then derived)")
    insurance_card: str | None = Field(None, max_length=64, description="Medical insurance card number")
    visit_card: str | None = Field(None, max_length=64, description="Hospital visit card number")
    email: str | None = Field(None, max_length=254)
    address: str | None = Field(None, max_length=200, description="Home address (家庭住址)")
    medical_history: str | None = Field(None, max_length=500, description="既往病史: sensitive; needs health_consent")
    health_consent: bool = Field(False, description="Separate consent to keep the medical history (PIPL art. 29)")


class PatientUpdate(BaseModel):
    """Fields left out stay as they are; `insurance_card` / `visit_card` set to null clear it."""

    model_config = ConfigDict(extra="forbid")

    relationship: Relationship | None = None
    name: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=32)
    insurance_card: str | None = Field(None, max_length=64)
    visit_card: str | None = Field(None, max_length=64)
    email: str | None = Field(None, max_length=254)
    address: str | None = Field(None, max_length=200)
    medical_history: str | None = Field(None, max_length=500)
    health_consent: bool = False
    # Identity is immutable. These are accepted (and hidden from the schema) only so that a
    # client trying to change them gets `identity_immutable` telling them what to do instead.
    id_type: SkipJsonSchema[str | None] = None
    id_number: SkipJsonSchema[str | None] = None
    birth_date: SkipJsonSchema[str | None] = None
    sex: SkipJsonSchema[str | None] = None

    @property
    def touches_identity(self) -> bool:
        return bool({"id_type", "id_number", "birth_date", "sex"} & self.model_fields_set)


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    liveness_token: str = Field(min_length=1, max_length=512,
                                description="Token from the face-check provider's SDK after the liveness step")


class PatientRead(BaseModel):
    id: int
    relationship: Relationship
    name: str = Field(description="Masked, e.g. 张*")
    id_type: IdType
    id_number: str = Field(description="Masked, e.g. 1****************X")
    phone: str = Field(description="Masked, e.g. 138****1234")
    birth_date: dt.date
    age: int
    sex: Sex
    insurance_card: str | None = Field(None, description="Masked: last 4 characters only")
    visit_card: str | None = Field(None, description="Masked: last 4 characters only")
    email: str | None = Field(None, description="Masked, e.g. z***@example.com")
    address: str | None = Field(None, description="Masked: the first 6 characters only")
    medical_history_on_file: bool = Field(False, description="Whether a medical history is kept (never returned)")
    verification: Verification
    verified_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_patient(cls, patient: Patient, *, today: dt.date) -> PatientRead:
        return cls(
            id=patient.id,
            relationship=patient.relationship,
            name=mask_name(patient.name),
            id_type=patient.id_type,
            id_number=mask_id_number(patient.id_number),
            phone=mask_phone(patient.phone),
            birth_date=patient.birth_date,
            age=age_on(patient.birth_date, today),
            sex=patient.sex,
            insurance_card=mask_card(patient.insurance_card) if patient.insurance_card else None,
            visit_card=mask_card(patient.visit_card) if patient.visit_card else None,
            email=mask_email(patient.email) if patient.email else None,
            address=mask_address(patient.address) if patient.address else None,
            medical_history_on_file=bool(patient.medical_history),
            verification=patient.verification,
            verified_at=patient.verified_at,
            created_at=patient.created_at,
            updated_at=patient.updated_at,
        )


class PatientPage(BaseModel):
    items: list[PatientRead]
    total: int
    max_patients: int = Field(description="How many patients this account may hold")


class VisitCardIn(BaseModel):
    card_number: str = Field(min_length=1, max_length=64, description="就诊卡号 as printed on the hospital's card")


class VisitCardRead(BaseModel):
    hospital_id: int
    hospital_name: str
    card_number: str = Field(description="masked (****1234)")
    updated_at: dt.datetime
