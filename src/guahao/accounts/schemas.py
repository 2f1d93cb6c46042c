"""Request and response bodies of the accounts API. Phone numbers leave only masked."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

Locale = Literal["zh-CN", "en"]


class SmsCodeCreate(BaseModel):
    phone: str = Field(min_length=1, max_length=32, examples=["13812345678"])


class SmsCodeSent(BaseModel):
    phone: str = Field(description="masked, e.g. 138****5678")
    expires_in: int = Field(description="seconds until the code expires")


class LoginCreate(BaseModel):
    phone: str = Field(min_length=1, max_length=32)
    code: str = Field(pattern=r"^\d{6}$")


class AccountRead(BaseModel):
    id: int
    phone: str = Field(description="masked, e.g. 138****5678")
    locale: Locale


class LoginRead(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: dt.datetime
    account: AccountRead


class AccountUpdate(BaseModel):
    locale: Locale
