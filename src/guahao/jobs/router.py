"""Operator routes for the job queue: dead letters, retry, counts. Platform operators only
(`require` lets operators through every role check, so this checks `is_operator` itself)."""
from __future__ import annotations

from fastapi import APIRouter, Query

from guahao.core.clock import SHANGHAI
from guahao.core.deps import ClockDep, CurrentStaff, Db
from guahao.core.errors import Forbidden
from guahao.core.localtime import localize
from guahao.jobs import service as jobs_service
from guahao.jobs.schemas import JobPage, JobRead, JobStats, JobTopicCount

router = APIRouter(prefix="/api/v1/staff/jobs", tags=["jobs"])


def _operator_only(staff) -> None:
    if not staff.is_operator:
        raise Forbidden()


@router.get("/dead", response_model=JobPage)
async def list_dead(staff: CurrentStaff, db: Db, topic: str | None = None,
                    limit: int = Query(50, ge=1, le=200), before_id: int | None = None) -> JobPage:
    """Dead-lettered jobs, newest first, with their last error."""
    _operator_only(staff)
    async with db.read() as session:
        messages = await jobs_service.list_dead(session, limit=limit, before_id=before_id, topic=topic)
    items = [JobRead.of(m) for m in messages]
    # the operator's queue spans hospitals: times in the platform's zone
    return localize(JobPage(items=items, next_before_id=items[-1].id if len(items) == limit else None), SHANGHAI)


@router.post("/{message_id}/retry", response_model=JobRead)
async def retry(message_id: int, staff: CurrentStaff, db: Db, clock: ClockDep) -> JobRead:
    """Put a dead job back in the queue, due now, with its attempts reset (audited)."""
    _operator_only(staff)
    async with db.begin() as session:
        message = await jobs_service.do_retry_dead(session, message_id, now=clock.now(), staff_id=staff.staff_id)
        return localize(JobRead.of(message), SHANGHAI)


@router.get("/stats", response_model=JobStats)
async def stats(staff: CurrentStaff, db: Db, clock: ClockDep) -> JobStats:
    """Message counts per state and per topic, and the queue lag."""
    _operator_only(staff)
    async with db.read() as session:
        by_state, rows, lag = await jobs_service.stats(session, now=clock.now())
    return JobStats(by_state=by_state, by_topic=[JobTopicCount(topic=t, state=s, count=c) for t, s, c in rows],
                    oldest_due_seconds=lag)
