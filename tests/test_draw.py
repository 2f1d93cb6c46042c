"""Release by draw (摇号放号, issue 13 part 2), on SQLite and PostgreSQL: entering, the
commit-reveal, the allocation through the hold's rules, and the audit a stranger can verify."""
from __future__ import annotations

import ast
import asyncio
import datetime as dt
import hashlib
import sys

import pytest
from sqlalchemy import select, update

from guahao.booking.models import Booking, Restriction
from guahao.catalog.models import HospitalRules
from guahao.draw import allocation
from guahao.draw import entries as draw_entries
from guahao.draw import jobs as draw_jobs
from guahao.draw.errors import DrawClosed
from guahao.draw.models import Draw, DrawEntry
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import JobContext, RetryLater
from guahao.scheduling.models import Schedule
from tests.booking_builders import make_id_number, make_patient
from tests.builders import auth, make_account, make_staff
from tests.draw_support import (
    VERIFIER,
    bookings_of,
    draw_row,
    draw_world,
    enter,
    entries,
    patients,
    run_draw,
    verify,
)


async def test_commitment_is_public_before_the_window_and_the_secret_only_after(client, db, clock, tmp_path):
    world = await draw_world(db, clock, capacity=3)
    secret = (await draw_row(db, world)).secret
    before = await client.get(f"/api/v1/schedules/{world.schedule_id}/draw")
    assert before.status_code == 200, before.text
    body = before.json()
    assert body["status"] == "open" and body["secret"] is None and body["seed"] is None
    assert body["commitment"] == hashlib.sha256(bytes.fromhex(secret)).hexdigest()
    assert body["opens_at"].endswith("+08:00")
    people = await patients(db, clock, 6)
    clock.set(world.release_at + dt.timedelta(seconds=1))
    answers = [await enter(client, world, t, p) for t, _a, p in people]
    seen = [before.text] + [a.text for a in answers]
    seen.append((await client.get(f"/api/v1/schedules/{world.schedule_id}/draw")).text)
    seen.append((await client.get(f"/api/v1/schedules/{world.schedule_id}/draw/audit")).text)
    page = await client.get(f"/schedules/{world.schedule_id}/draw")  # the patient page, anonymous
    assert page.status_code == 200 and body["commitment"] in page.text
    seen.append(page.text)
    seen += [(await client.get(f"/api/v1/schedules/{world.schedule_id}/draw/entries/mine?patient_id={p}",
                               headers=auth(t))).text for t, _a, p in people]
    assert all(secret not in text for text in seen)  # nowhere before the draw
    early = await client.get(f"/api/v1/schedules/{world.schedule_id}/draw/audit")
    assert early.status_code == 409 and early.json()["code"] == "draw_not_drawn"
    assert await run_draw(db, clock, world) == "allocated"
    after = (await client.get(f"/api/v1/schedules/{world.schedule_id}/draw")).json()
    assert after["secret"] == secret and after["seed"]
    assert secret in (await client.get(f"/schedules/{world.schedule_id}/draw")).text


async def test_verifier_recomputes_a_real_draw_and_catches_tampering(client, db, clock, tmp_path):
    world = await draw_world(db, clock, capacity=4, bands=2)
    people = await patients(db, clock, 12)
    clock.set(world.release_at)
    for token, _a, patient in people:
        assert (await enter(client, world, token, patient)).status_code == 202
    await run_draw(db, clock, world)
    record = (await client.get(f"/api/v1/schedules/{world.schedule_id}/draw/audit")).json()
    assert sum(e["outcome"] == "won" for e in record["entries"]) == 4
    result = verify(record, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # the ranks in the database are the ones the verifier computed, winners hold the seats
    rows = await entries(db, world)
    assert [e.receipt for e in rows] == [e["receipt"] for e in record["entries"]]
    booked = {b.id: b for b in await bookings_of(db, world.schedule_id)}
    assert {e.booking_id for e in rows if e.outcome == "won"} == set(booked)
    assert all(b.state == "held" and b.hold_expires_at is not None for b in booked.values())
    mine = verify(record, tmp_path, "--receipt", record["entries"][0]["receipt"])
    assert "rank 1" in mine.stdout
    # tampering: another secret, a changed receipt, a swapped winner
    bad_secret = {**record, "secret": "00" * 32}
    assert "commitment" in verify(bad_secret, tmp_path).stdout
    changed = {**record, "entries": [{**record["entries"][0], "receipt": "ff" * 16}] + record["entries"][1:]}
    assert verify(changed, tmp_path).returncode == 1
    swapped = [dict(e) for e in record["entries"]]
    swapped[0]["outcome"], swapped[-1]["outcome"] = swapped[-1]["outcome"], swapped[0]["outcome"]
    assert "won after the seats had run out" in verify({**record, "entries": swapped}, tmp_path).stdout


def test_the_verifier_imports_only_the_standard_library():
    tree = ast.parse(VERIFIER.read_text(encoding="utf-8"))
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert names - {"__future__"} <= set(sys.stdlib_module_names), names


async def test_one_person_from_20_devices_and_3_accounts_is_one_entry(client, db, clock):
    world = await draw_world(db, clock)
    id_number = make_id_number()
    holders = []
    for _ in range(3):
        account_id, token = await make_account(db, clock.now())
        holders.append((token, await make_patient(db, clock.now(), account_id, id_number=id_number)))
    clock.set(world.release_at + dt.timedelta(seconds=2))
    answers = await asyncio.gather(*(enter(client, world, *holders[i % 3]) for i in range(20)))
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    assert len({a.json()["receipt"] for a in answers}) == 1
    assert sum(not a.json()["already_entered"] for a in answers) == 1
    assert len(await entries(db, world)) == 1
    mine = await client.get(f"/api/v1/schedules/{world.schedule_id}/draw/entries/mine?patient_id={holders[2][1]}",
                            headers=auth(holders[2][0]))
    assert [e["receipt"] for e in mine.json()] == [answers[0].json()["receipt"]]


async def test_entries_only_in_the_window_and_only_verified_patients(client, db, clock):
    world = await draw_world(db, clock, prequeue=5)
    (token, account_id, patient), = await patients(db, clock, 1)
    unverified = await make_patient(db, clock.now(), account_id, verified=False)
    early = await enter(client, world, token, patient)
    assert early.status_code == 409 and early.json()["code"] == "draw_not_open"
    clock.set(world.release_at - dt.timedelta(minutes=5))  # the pre-queue
    assert (await enter(client, world, token, patient)).status_code == 202
    refused = await enter(client, world, token, unverified)
    assert refused.status_code == 409 and refused.json()["code"] == "patient_not_verified"
    clock.set(world.release_at + dt.timedelta(seconds=30))
    late = await enter(client, world, token, unverified)
    assert late.status_code == 409 and late.json()["code"] == "draw_closed"


async def test_holds_on_a_draw_schedule_are_refused_until_the_draw_is_done(client, db, clock):
    world = await draw_world(db, clock, capacity=2)
    (token, _a, patient), (token2, _b, patient2) = await patients(db, clock, 2)
    clock.set(world.release_at + dt.timedelta(seconds=5))
    hold = await client.post("/api/v1/bookings", json={"slot_id": world.slot_ids[0], "patient_id": patient},
                             headers={**auth(token), "Idempotency-Key": "k1"})
    assert hold.status_code == 409 and hold.json()["code"] == "release_by_draw"
    assert (await enter(client, world, token, patient)).status_code == 202
    await run_draw(db, clock, world)
    # what the draw left is booked first come
    again = await client.post("/api/v1/bookings", json={"slot_id": world.slot_ids[0], "patient_id": patient2},
                              headers={**auth(token2), "Idempotency-Key": "k2"})
    assert again.status_code == 201, again.text


async def test_entry_that_arrived_before_the_close_but_finished_after_counts(db, clock):
    world = await draw_world(db, clock, window=10)
    (_t, account_id, patient), (_t2, account2, patient2) = await patients(db, clock, 2)
    close = world.release_at + dt.timedelta(seconds=10)
    async with db.begin() as s:  # arrived 1 ms before the close, committed 1.5 s after it
        await draw_entries.do_enter(s, account_id=account_id, patient_id=patient, schedule_id=world.schedule_id,
                                    waitlist_opt_in=False, arrived_at=close - dt.timedelta(milliseconds=1),
                                    now=close + dt.timedelta(seconds=1.5))
    with pytest.raises(DrawClosed):
        async with db.begin() as s:  # arrived at the close: too late
            await draw_entries.do_enter(s, account_id=account2, patient_id=patient2, schedule_id=world.schedule_id,
                                        waitlist_opt_in=False, arrived_at=close, now=close)
    clock.set(close)
    await run_draw(db, clock, world)
    rows = await entries(db, world)
    assert [(e.patient_id, e.rank, e.outcome) for e in rows] == [(patient, 1, "won")]


async def test_an_entry_after_the_ranking_is_refused_not_lost(db, clock):
    world = await draw_world(db, clock)
    (_t, account_id, patient), = await patients(db, clock, 1)
    draw = await draw_row(db, world)
    clock.set(draw.result_at)
    async with db.begin() as s:
        assert await allocation.do_rank(s, world.draw_id, now=clock.now())
    with pytest.raises(DrawClosed):
        async with db.begin() as s:  # a straggler that arrived in time but commits after the ranking
            await draw_entries.do_enter(s, account_id=account_id, patient_id=patient, schedule_id=world.schedule_id,
                                        waitlist_opt_in=False, arrived_at=draw.closes_at - dt.timedelta(seconds=1),
                                        now=clock.now())


async def test_blacklisted_or_already_booked_winner_is_skipped_and_the_next_rank_gets_the_seat(client, db, clock,
                                                                                                tmp_path):
    world = await draw_world(db, clock, capacity=2)
    people = await patients(db, clock, 8)
    clock.set(world.release_at)
    for token, _a, patient in people:
        await enter(client, world, token, patient)
    # rank the draw, then restrict whoever came first
    clock.set((await draw_row(db, world)).result_at)
    async with db.begin() as s:
        await allocation.do_rank(s, world.draw_id, now=clock.now())
    first = (await entries(db, world))[0]
    async with db.begin() as s:
        s.add(Restriction(person_id=first.person_id, hospital_id=world.hospital_id, starts_at=clock.now(),
                          until=clock.now() + dt.timedelta(days=30), reason="test", strikes=3))
    await run_draw(db, clock, world)
    rows = await entries(db, world)
    assert [(e.rank, e.outcome, e.reason) for e in rows[:4]] == [
        (1, "skipped", "restricted_until"), (2, "won", None), (3, "won", None), (4, "lost", "no_seat")]
    record = (await client.get(f"/api/v1/schedules/{world.schedule_id}/draw/audit")).json()
    assert verify(record, tmp_path).returncode == 0
    # everyone is told: one result message per entry (the outbox), none twice
    async with db.read() as s:
        keys = list(await s.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.topic == "notify.draw_result")))
    assert sorted(keys) == sorted(f"notify.draw_result:{e.id}" for e in rows)


async def test_allocation_is_idempotent_chunk_by_chunk(db, clock):
    world = await draw_world(db, clock, capacity=7)
    people = await patients(db, clock, 15)
    clock.set(world.release_at)
    for _t, account_id, patient in people:
        async with db.begin() as s:
            await draw_entries.do_enter(s, account_id=account_id, patient_id=patient, schedule_id=world.schedule_id,
                                        waitlist_opt_in=True, arrived_at=clock.now(), now=clock.now())
    clock.set((await draw_row(db, world)).result_at)
    async with db.begin() as s:
        await allocation.do_rank(s, world.draw_id, now=clock.now())
        await allocation.do_rank(s, world.draw_id, now=clock.now())  # a second ranking changes nothing
    ranks = [(e.id, e.rank) for e in await entries(db, world)]
    while True:  # chunks of 3, as if restarted between each
        async with db.begin() as s:
            if await allocation.do_allocate_chunk(s, world.draw_id, now=clock.now(), limit=3) == 0:
                break
    assert await allocation.run(db, world.draw_id, now_fn=clock.now) == "allocated"  # a late duplicate run
    rows = await entries(db, world)
    assert [(e.id, e.rank) for e in rows] == ranks
    assert [e.outcome for e in rows] == ["won"] * 7 + ["lost"] * 8
    booked = await bookings_of(db, world.schedule_id)
    assert len(booked) == 7 and sorted(b.visit_no for b in booked) == list(range(1, 8))


async def test_switching_modes_before_opening_and_frozen_after(client, db, clock):
    world = await draw_world(db, clock, mode="fifo")
    assert world.draw_id == 0
    _sid, token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=world.hospital_id)
    path = f"/api/v1/staff/hospitals/{world.hospital_id}/release-modes"
    on = await client.put(f"{path}/departments/{world.department_id}", json={"mode": "draw"}, headers=auth(token))
    assert on.status_code == 200, on.text
    assert on.json()["changed_schedules"] == 1 and on.json()["departments"] == {str(world.department_id): "draw"}
    assert (await client.get(f"/api/v1/schedules/{world.schedule_id}/draw")).status_code == 200
    off = await client.put(f"{path}/schedules/{world.schedule_id}", json={"mode": "fifo"}, headers=auth(token))
    assert off.status_code == 200 and off.json()["changed_schedules"] == 1
    assert (await client.get(f"/api/v1/schedules/{world.schedule_id}/draw")).json()["code"] == "no_draw"
    back = await client.put(f"{path}/schedules/{world.schedule_id}", json={"mode": "inherit"}, headers=auth(token))
    assert back.json()["changed_schedules"] == 1
    clock.set(world.release_at)
    frozen = await client.put(f"{path}/schedules/{world.schedule_id}", json={"mode": "fifo"}, headers=auth(token))
    assert frozen.status_code == 409 and frozen.json()["code"] == "release_mode_frozen"


async def test_losers_who_opted_in_reach_the_waitlist_hook_in_rank_order(db, clock, monkeypatch):
    world = await draw_world(db, clock, capacity=2)
    people = await patients(db, clock, 6)
    clock.set(world.release_at)
    for i, (_t, account_id, patient) in enumerate(people):
        async with db.begin() as s:
            await draw_entries.do_enter(s, account_id=account_id, patient_id=patient, schedule_id=world.schedule_id,
                                        waitlist_opt_in=i % 2 == 0, arrived_at=clock.now(), now=clock.now())
    calls = []

    async def hook(session, schedule_id, ranked, now):
        calls.append((schedule_id, list(ranked)))

    monkeypatch.setattr(allocation, "_enqueue_losers", hook)
    await run_draw(db, clock, world)
    rows = await entries(db, world)
    expected = [(e.account_id, e.patient_id) for e in sorted(rows, key=lambda e: e.rank)
                if e.outcome == "lost" and e.waitlist_opt_in]
    assert calls == [(world.schedule_id, expected)]


async def test_losers_who_opted_in_wait_for_a_seat_in_rank_order(db, clock):
    """The hook for real: the draw's losers who asked for 候补 are queued by draw rank, and the
    others are not queued at all."""
    from guahao.waitlist import queries as waitlist_queries

    world = await draw_world(db, clock, capacity=2)
    people = await patients(db, clock, 6)
    clock.set(world.release_at)
    for i, (_t, account_id, patient) in enumerate(people):
        async with db.begin() as s:
            await draw_entries.do_enter(s, account_id=account_id, patient_id=patient, schedule_id=world.schedule_id,
                                        waitlist_opt_in=i % 2 == 0, arrived_at=clock.now(), now=clock.now())
    await run_draw(db, clock, world)
    rows = await entries(db, world)
    expected = [e.patient_id for e in sorted(rows, key=lambda e: e.rank) if e.outcome == "lost" and e.waitlist_opt_in]
    assert expected  # 6 entrants, 2 seats: some who opted in lost
    async with db.read() as s:
        queued = await waitlist_queries.all_entries(s, world.schedule_id)
    assert [q.patient_id for q in sorted(queued, key=lambda q: q.position)] == expected
    assert all(q.state == "waiting" for q in queued)


async def test_free_registration_winner_is_confirmed_at_once(db, clock):
    world = await draw_world(db, clock, capacity=1, fee=0)
    (_t, account_id, patient), = await patients(db, clock, 1)
    clock.set(world.release_at)
    async with db.begin() as s:
        await draw_entries.do_enter(s, account_id=account_id, patient_id=patient, schedule_id=world.schedule_id,
                                    waitlist_opt_in=False, arrived_at=clock.now(), now=clock.now())
    await run_draw(db, clock, world)
    (booking,) = await bookings_of(db, world.schedule_id)
    assert booking.state == "confirmed"


async def test_a_suspended_schedule_allocates_nothing(db, clock):
    world = await draw_world(db, clock, capacity=3)
    (_t, account_id, patient), = await patients(db, clock, 1)
    clock.set(world.release_at)
    async with db.begin() as s:
        await draw_entries.do_enter(s, account_id=account_id, patient_id=patient, schedule_id=world.schedule_id,
                                    waitlist_opt_in=False, arrived_at=clock.now(), now=clock.now())
        await s.execute(update(Schedule).where(Schedule.id == world.schedule_id).values(status="suspended"))
    await run_draw(db, clock, world)
    assert [(e.outcome, e.reason) for e in await entries(db, world)] == [("lost", "schedule_suspended")]
    async with db.read() as s:
        assert await s.scalar(select(Booking.id).where(Booking.schedule_id == world.schedule_id)) is None
        assert await s.scalar(select(DrawEntry.booking_id)) is None


async def test_result_messages_say_won_with_the_pay_deadline_not_won_and_skipped(client, db, clock):
    from guahao.notifications import draw_messages

    world = await draw_world(db, clock, capacity=1)
    people = await patients(db, clock, 4)
    clock.set(world.release_at)
    for token, _a, patient in people:
        await enter(client, world, token, patient)
    clock.set((await draw_row(db, world)).result_at)
    async with db.begin() as s:
        await allocation.do_rank(s, world.draw_id, now=clock.now())
    first = (await entries(db, world))[0]
    async with db.begin() as s:
        s.add(Restriction(person_id=first.person_id, hospital_id=world.hospital_id, starts_at=clock.now(),
                          until=clock.now() + dt.timedelta(days=30), reason="test", strikes=3))
    await run_draw(db, clock, world)
    texts = {}
    async with db.read() as s:
        for e in await entries(db, world):
            (message,) = await draw_messages.compose_draw_result(s, e.id, clock.now())
            texts[e.outcome] = (message.template, message.params)
    assert texts["skipped"][0] == "draw_skipped" and "暂停线上预约" in texts["skipped"][1]["reason"]
    assert texts["won"][0] == "draw_won" and texts["won"][1]["deadline"]
    assert texts["lost"][0] == "draw_not_won" and texts["lost"][1]["patient"].endswith("*")


async def test_the_jobs_prepare_a_new_draw_schedule_and_run_the_draw_when_due(db, clock, settings):
    world = await draw_world(db, clock, capacity=2, mode="fifo")
    async with db.begin() as s:  # the hospital switches its rule to draw; the minute job applies it
        await s.execute(update(HospitalRules).where(HospitalRules.hospital_id == world.hospital_id)
                        .values(release_mode="draw"))
    ctx = JobContext(db=db, clock=clock, settings=settings)
    await draw_jobs.prepare(ctx, {})
    async with db.read() as s:
        draw = await s.scalar(select(Draw).where(Draw.schedule_id == world.schedule_id))
        mode = await s.scalar(select(Schedule.release_mode).where(Schedule.id == world.schedule_id))
        queued = await s.scalar(select(OutboxMessage.available_at).where(OutboxMessage.dedupe_key == f"draw.run:{draw.id}"))
    assert draw.status == "open" and mode == "draw" and queued == draw.result_at
    world.draw_id = draw.id
    (_t, account_id, patient), = await patients(db, clock, 1)
    clock.set(world.release_at)
    async with db.begin() as s:
        await draw_entries.do_enter(s, account_id=account_id, patient_id=patient, schedule_id=world.schedule_id,
                                    waitlist_opt_in=False, arrived_at=clock.now(), now=clock.now())
    with pytest.raises(RetryLater):  # delivered early: waits, not counted as a failure
        await draw_jobs.run_draw(ctx, {"draw_id": draw.id})
    clock.set(draw.result_at)
    await draw_jobs.run_draw(ctx, {"draw_id": draw.id})
    assert [(e.outcome, e.rank) for e in await entries(db, world)] == [("won", 1)]
    async with db.read() as s:
        assert await s.scalar(select(Schedule.release_mode).where(Schedule.id == world.schedule_id)) == "drawn"
