"""Operators see dead letters, retry them (audited) and read queue counts; nobody else does."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from guahao.core.audit import AuditEntry
from guahao.jobs.router import router as jobs_router
from guahao.jobs.runner import JobConfig, drain
from guahao.outbox import service as outbox
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import JobContext
from tests.builders import auth, make_hospital, make_staff


@pytest.fixture
async def jobs_api(app, db, clock):
    """The app with the jobs router mounted (until app.py mounts it itself)."""
    if not any(getattr(r, "path", "").startswith("/api/v1/staff/jobs") for r in app.routes):
        app.include_router(jobs_router)
    hid = await make_hospital(db, clock.now())
    _, operator = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hid)
    return {"hospital": hid, "operator": auth(operator), "admin": auth(admin)}


async def _dead_message(db, clock, settings, key: str, hospital_id: int | None = None) -> int:
    async with db.begin() as s:
        await outbox.enqueue(s, topic="test.nobody_listens", dedupe_key=key, payload={"booking_id": 1},
                             now=clock.now(), hospital_id=hospital_id)
    await drain(JobContext(db=db, clock=clock, settings=settings), config=JobConfig())
    async with db.read() as s:
        m = await s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))
    assert m.state == "dead"
    return m.id


async def test_operator_lists_dead_jobs_without_payload_values(client, db, clock, settings, jobs_api):
    ids = [await _dead_message(db, clock, settings, f"dead:{i}", jobs_api["hospital"]) for i in range(3)]
    r = await client.get("/api/v1/staff/jobs/dead", params={"limit": 2}, headers=jobs_api["operator"])
    assert r.status_code == 200, r.text
    page = r.json()
    assert [item["id"] for item in page["items"]] == sorted(ids, reverse=True)[:2]
    item = page["items"][0]
    assert item["topic"] == "test.nobody_listens" and item["payload_keys"] == ["booking_id"]
    assert "payload" not in item and "no handler" in item["last_error"]
    r = await client.get("/api/v1/staff/jobs/dead", params={"before_id": page["next_before_id"]},
                         headers=jobs_api["operator"])
    assert [item["id"] for item in r.json()["items"]] == [min(ids)]


async def test_operator_retries_a_dead_job_once_and_it_is_audited(client, db, clock, settings, jobs_api):
    mid = await _dead_message(db, clock, settings, "dead:1", jobs_api["hospital"])
    r = await client.post(f"/api/v1/staff/jobs/{mid}/retry", headers=jobs_api["operator"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["state"], body["attempts"], body["available_at"]) == ("pending", 0, "2026-11-19T10:00:00+08:00")
    again = await client.post(f"/api/v1/staff/jobs/{mid}/retry", headers=jobs_api["operator"])
    assert again.status_code == 409 and again.json()["code"] == "job_not_dead"
    missing = await client.post("/api/v1/staff/jobs/999999/retry", headers=jobs_api["operator"])
    assert missing.status_code == 404
    async with db.read() as s:
        entries = list(await s.scalars(select(AuditEntry).where(AuditEntry.action == "job.retry")))
    assert [(e.object_type, e.object_id, e.hospital_id) for e in entries] == [
        ("outbox_message", str(mid), jobs_api["hospital"])]


async def test_stats_count_messages_per_state_and_topic(client, db, clock, settings, jobs_api):
    await _dead_message(db, clock, settings, "dead:1")
    async with db.begin() as s:
        await outbox.enqueue(s, topic="test.later", dedupe_key="later:1", payload={}, now=clock.now())
    clock.advance(seconds=30)
    r = await client.get("/api/v1/staff/jobs/stats", headers=jobs_api["operator"])
    assert r.status_code == 200, r.text
    stats = r.json()
    assert stats["by_state"] == {"pending": 1, "in_progress": 0, "done": 0, "dead": 1}
    assert {"topic": "test.later", "state": "pending", "count": 1} in stats["by_topic"]
    assert stats["oldest_due_seconds"] == 30


@pytest.mark.parametrize("path,method", [("/api/v1/staff/jobs/dead", "get"), ("/api/v1/staff/jobs/stats", "get"),
                                         ("/api/v1/staff/jobs/1/retry", "post")])
async def test_only_platform_operators_reach_the_job_routes(client, jobs_api, path, method):
    r = await getattr(client, method)(path, headers=jobs_api["admin"])
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await getattr(client, method)(path)
    assert r.status_code == 401
