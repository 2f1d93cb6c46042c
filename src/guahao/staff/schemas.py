"""Request and response bodies of the staff API: login, staff users, audit (a hospital's rules
are catalog's: `guahao.catalog.schemas`)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from guahao.staff.models import ROLES

Role = Literal[ROLES]  # type: ignore[valid-type]


# --- auth and staff users -------------------------------------------------------------------

class StaffLogin(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    otp: str | None = Field(default=None, max_length=10, description="the authenticator's 6-digit code, "
                                                                      "for users with two-step verification")


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=10, max_length=256)


class OtpCode(BaseModel):
    code: str = Field(min_length=6, max_length=10)


class TotpEnrolment(BaseModel):
    otpauth_uri: str = Field(description="shown once: add it to the authenticator app (or show it as a QR code)")


class TotpStatus(BaseModel):
    enabled: bool


class StaffUserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    hospital_id: int | None
    active: bool
    created_at: dt.datetime


class StaffLoginRead(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: dt.datetime
    staff: StaffUserRead


class StaffUserCreate(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
    password: str = Field(min_length=10, max_length=256)
    role: Role
    hospital_id: int | None = Field(default=None, description="required for every role but platform_operator; "
                                                              "a hospital admin's own hospital by default")
    display_name: str = Field(default="", max_length=64)


# --- audit ----------------------------------------------------------------------------------

class AuditRead(BaseModel):
    id: int
    at: dt.datetime
    staff_id: int | None
    account_id: int | None
    hospital_id: int | None
    action: str
    object_type: str
    object_id: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditRead]
    next_cursor: int | None = Field(description="pass as `before_id` for the next page; null on the last page")
