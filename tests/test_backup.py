"""`guahao backup` / `guahao restore` (ops/backup.py) and the invariant audit (ops/invariants.py).

A backup is taken while 40 patients are holding and cancelling at once; it is restored into a
fresh database, which must pass the audit and must hold a consistent prefix of the writes
(every booking in it with its seat). The audit is shown able to fail on a broken copy."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select, text

from guahao import migrations_api
from guahao.booking import actions
from guahao.booking.models import Booking
from guahao.core.db import create_database
from guahao.core.errors import GuahaoError
from guahao.ops import backup as backups
from guahao.ops.invariants import check_all
from tests.booking_builders import make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital
from tests.conftest import _pg_admin, pg_url_for

PATIENTS = 40
SEATS = 30


async def _world(db, now: dt.datetime) -> tuple[list[int], list[tuple[int, int]]]:
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                   day=now.date() + dt.timedelta(days=2), capacity=SEATS, bands=3)
    people = []
    for _ in range(PATIENTS):
        account, _token = await make_account(db, now)
        people.append((account, await make_patient(db, now, account)))
    return slots, people


async def _patient_at_work(db, now, slots, account: int, patient: int, index: int) -> None:
    """Hold, sometimes cancel and hold again: writes that keep going while the copy runs."""
    for round_ in range(3):
        try:
            async with db.begin() as s:
                booking = await actions.do_hold(s, account_id=account, patient_id=patient,
                                                slot_id=slots[(index + round_) % len(slots)], now=now)
            if (index + round_) % 2:
                async with db.begin() as s:
                    await actions.do_cancel(s, account_id=account, booking_id=booking.id, now=now)
        except GuahaoError:
            pass  # sold out, or this person already holds one: a refusal is a normal answer
        await asyncio.sleep(0)


@pytest.fixture
async def fresh_url(backend, tmp_path):
    """An empty database of the same kind, to restore into."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"
        return
    name = f"guahao_restore_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url_for(name)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_backup_taken_during_writes_restores_to_a_database_that_passes_the_audit(
        db, clock, settings, tmp_path, fresh_url, backend):
    now = clock.now()
    slots, people = await _world(db, now)
    target = tmp_path / "guahao.backup"
    writers = [asyncio.create_task(_patient_at_work(db, now, slots, a, p, i)) for i, (a, p) in enumerate(people)]
    for _ in range(400):  # let the rush get under way (some bookings committed) before the copy
        async with db.read() as s:
            if await s.scalar(select(func.count()).select_from(Booking)) >= 5:
                break
        await asyncio.sleep(0.01)
    copied = await asyncio.to_thread(backups.backup, settings.database_url, target)
    await asyncio.gather(*writers)
    assert copied.path == target and target.exists() and copied.size > 0
    assert copied.kind == ("sqlite" if backend == "sqlite" else "pg_dump")
    assert not list(tmp_path.glob("*.partial"))

    if backend == "sqlite":
        await asyncio.to_thread(migrations_api.upgrade, fresh_url)  # restore over an existing database
    await asyncio.to_thread(backups.restore, target, fresh_url)
    restored = create_database(fresh_url)
    try:
        assert await check_all(restored, now=now) == []
        async with restored.read() as s:
            copied_rows = await s.scalar(select(func.count()).select_from(Booking))
            head = await s.scalar(text("SELECT version_num FROM alembic_version"))
        async with db.read() as s:
            live_rows = await s.scalar(select(func.count()).select_from(Booking))
        assert 0 < copied_rows <= live_rows  # a snapshot of some instant during the writes
        assert head == migrations_api.head_revision()
        assert await check_all(db, now=now) == []

        # the audit can fail: take a live booking's seat away in the copy
        async with restored.begin() as s:
            victim = await s.scalar(select(Booking.id).where(Booking.state == "held").limit(1))
            await s.execute(text("UPDATE slot_positions SET booking_id = NULL WHERE booking_id = :b"), {"b": victim})
        problems = await check_all(restored, now=now)
        assert problems == [f"I1: live booking {victim} holds no seat"]
    finally:
        await restored.dispose()


def test_a_damaged_copy_is_refused_before_the_database_is_touched(tmp_path):
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    target = tmp_path / "live.db"
    url = f"sqlite+aiosqlite:///{target}"
    migrations_api.upgrade(url)
    before = target.read_bytes()
    with pytest.raises(backups.BackupError):
        backups.restore(damaged, url)
    assert target.read_bytes() == before
    with pytest.raises(backups.BackupError, match="does not exist"):
        backups.backup(f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}", tmp_path / "x.backup")
