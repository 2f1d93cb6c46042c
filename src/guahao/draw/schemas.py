"""API shapes of the draw."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DrawRead(BaseModel):
    """A schedule's draw. `secret`, `root` and `seed` are null until the entries are closed
    and the draw is held: before that only the commitment (SHA-256 of the secret) is public."""

    model_config = ConfigDict(from_attributes=True)

    draw_id: int
    schedule_id: int
    status: Literal["open", "ranked", "allocated"]
    opens_at: dt.datetime = Field(description="entries from (the release instant minus the pre-queue)")
    release_at: dt.datetime
    closes_at: dt.datetime = Field(description="entries that arrive before this instant count")
    result_at: dt.datetime = Field(description="the draw is held from this instant")
    commitment: str = Field(description="SHA-256 (hex) of the secret, published before the draw opens")
    entries: int
    seats: int | None = None
    secret: str | None = None
    root: str | None = None
    seed: str | None = None


class DrawEntryCreate(BaseModel):
    patient_id: int = Field(gt=0)
    waitlist_opt_in: bool = Field(default=False, description="if not drawn, join the waitlist (候补) in draw order")


class DrawEntryReceipt(BaseModel):
    draw_id: int
    receipt: str = Field(description="the entry's public token: find it in the audit record after the draw")
    arrived_at: dt.datetime
    waitlist_opt_in: bool
    closes_at: dt.datetime
    result_at: dt.datetime
    already_entered: bool = Field(description="this person had entered already (another device or account): "
                                              "still one entry")


class DrawEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    entry_id: int
    patient_id: int
    receipt: str
    arrived_at: dt.datetime
    waitlist_opt_in: bool
    rank: int | None = None
    outcome: Literal["won", "lost", "skipped"] | None = None
    reason: str | None = None
    booking_id: int | None = None
    visit_no: int | None = None


class ReleaseModeUpdate(BaseModel):
    mode: Literal["fifo", "draw", "inherit"] = Field(description="inherit: follow the department / hospital rule")


class ReleaseModes(BaseModel):
    hospital_mode: Literal["fifo", "draw"]
    draw_window_seconds: int
    draw_prequeue_minutes: int
    departments: dict[int, Literal["fifo", "draw"]]
    schedules: dict[int, Literal["fifo", "draw"]]
    changed_schedules: int = 0
