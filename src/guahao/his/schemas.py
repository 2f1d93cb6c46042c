"""What the operator writes and reads about a hospital's HIS connection. The key is write-only."""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


class HisConnectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: HttpUrl
    platform: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    pool: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    # the per-platform key the hospital gave us, hex (never returned)
    key: str = Field(min_length=32, max_length=128, pattern=r"^[0-9a-fA-F]+$")
    timeout_ms: int = Field(default=2000, ge=100, le=60000)
    cache_ms: int = Field(default=2000, ge=0, le=60000)


class HisConnectionRead(BaseModel):
    hospital_id: int
    base_url: str
    platform: str
    pool: str
    key_set: bool
    timeout_ms: int
    cache_ms: int
    updated_at: dt.datetime
