"""Response bodies of the job operations API. Payload values are never shown: they can carry
ids that, together, identify a patient; operators see the keys, the topic and the error."""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel


class JobRead(BaseModel):
    id: int
    topic: str
    state: str
    hospital_id: int | None
    dedupe_key: str
    payload_keys: list[str]
    attempts: int
    last_error: str | None
    available_at: dt.datetime
    created_at: dt.datetime
    done_at: dt.datetime | None

    @classmethod
    def of(cls, m) -> JobRead:
        return cls(id=m.id, topic=m.topic, state=m.state, hospital_id=m.hospital_id, dedupe_key=m.dedupe_key,
                   payload_keys=sorted(m.payload or {}), attempts=m.attempts, last_error=m.last_error,
                   available_at=m.available_at, created_at=m.created_at, done_at=m.done_at)


class JobPage(BaseModel):
    items: list[JobRead]
    next_before_id: int | None  # pass as before_id for the next (older) page


class JobTopicCount(BaseModel):
    topic: str
    state: str
    count: int


class JobStats(BaseModel):
    by_state: dict[str, int]
    by_topic: list[JobTopicCount]
    oldest_due_seconds: float  # queue lag: age of the oldest pending message that is due
