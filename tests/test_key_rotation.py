"""Field encryption: values bound to their row and column, keyrings with key ids, and an
online rotation of the data and index keys (docs/KEYS.md), on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import base64
import itertools
import os
import secrets
from contextlib import asynccontextmanager

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select, text

from guahao.accounts import service as accounts_service
from guahao.accounts.models import Account
from guahao.app import create_app
from guahao.config import DEV_DATA_KEY, Settings
from guahao.core import crypto
from guahao.keys.rotation import reencrypt
from guahao.patients import service as patients_service
from guahao.patients.models import Patient, Person
from tests.builders import auth
from tests.conftest import _wipe, remember_sensitive
from tests.test_patients import new_resident_id, patient_body

KEYS = {kid: base64.b64encode(secrets.token_bytes(32)).decode() for kid in ("a", "b")}
_numbers = itertools.count(1)


def ring(*kids: str) -> str:
    return ",".join(f"{kid}:{KEYS[kid]}" for kid in kids)


def keys(data: tuple[str, ...], index: tuple[str, ...], current: str) -> dict[str, str]:
    return {"data_keys": ring(*data), "data_key_current": current,
            "index_keys": ring(*index), "index_key_current": current}


def new_phone() -> tuple[str, str]:
    local = f"137{next(_numbers):08d}"
    remember_sensitive(local, "+86" + local)
    return local, "+86" + local


def first_format(value: str, kid: str = "a") -> str:
    """A value as the first release stored it: one key, no key id, no associated data."""
    nonce = os.urandom(12)
    sealed = AESGCM(base64.b64decode(KEYS[kid])).encrypt(nonce, value.encode(), b"")
    return "v1:" + base64.b64encode(nonce + sealed).decode()


@pytest.fixture(autouse=True)
def keep_configured_cipher():
    saved = crypto._cipher
    yield
    crypto._cipher = saved


@asynccontextmanager
async def running(settings: Settings, clock, **keyrings):
    """The service as deployed with these keyrings."""
    application = create_app(settings.model_copy(update=keyrings), clock=clock)
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield application, client
    finally:
        await application.state.db.dispose()


async def log_in(app, client, phone: tuple[str, str]) -> tuple[int, str]:
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": phone[0]})
    assert r.status_code == 202, r.text
    r = await client.post("/api/v1/auth/login", json={"phone": phone[0], "code": app.state.sms.last_code(phone[1])})
    assert r.status_code == 200, r.text
    return r.json()["account"]["id"], r.json()["token"]


async def add_patient(client, token: str, id_number: str):
    return await client.post("/api/v1/me/patients", json=patient_body(id_number=id_number), headers=auth(token))


async def person_of(db, patient_id: int) -> int:
    async with db.read() as s:
        return await s.scalar(select(Patient.person_id).where(Patient.id == patient_id))


async def raw_tokens(db) -> list[str]:
    async with db.read() as s:
        rows = (await s.execute(text("SELECT name, id_number, phone FROM patients"))).all()
        rows += (await s.execute(text("SELECT phone FROM accounts"))).all()
    return [v for row in rows for v in row if v is not None]


# --- the cipher alone ---------------------------------------------------------------------

def test_a_value_opens_only_in_its_own_row_and_column():
    c = crypto.build(ring("a"), ring("a"))
    token = c.seal("张三", crypto.RowValue("patients.name", "r1"))
    assert token.startswith("v2:a:") and c.open(token, crypto.RowValue("patients.name", "r1")) == "张三"
    for elsewhere in (crypto.RowValue("patients.name", "r2"), crypto.RowValue("patients.phone", "r1")):
        with pytest.raises(crypto.UnreadableCiphertext):
            c.open(token, elsewhere)


def test_decryption_picks_the_key_by_id_and_encryption_uses_the_current_one():
    old = crypto.build(ring("a"), ring("a"))
    both = crypto.build(ring("a", "b"), ring("a", "b"), data_key_current="b")
    where = crypto.RowValue("accounts.phone", "r1")
    under_a = old.seal("+8613700000000", where)
    assert both.open(under_a, where) == "+8613700000000"
    assert both.seal("x", where).startswith("v2:b:") and not both.is_current(under_a)
    with pytest.raises(crypto.UnreadableCiphertext):  # key a retired
        crypto.build(ring("b"), ring("b")).open(under_a, where)


def test_the_first_format_is_still_read_with_any_data_key():
    v1 = first_format("李四")
    c = crypto.build(ring("b", "a"), ring("a"), data_key_current="b")
    assert c.open(v1, crypto.RowValue("patients.name", "any")) == "李四" and c.token_kid(v1) is None


def test_lookups_use_every_active_index_key_current_first():
    both = crypto.build(ring("a"), ring("a", "b"), index_key_current="b")
    hashes = both.lookup_hashes("phone", "+86137")
    assert hashes[0] == both.lookup_hash("phone", "+86137") == crypto.build(ring("a"), ring("b")).lookup_hash(
        "phone", "+86137")
    assert hashes[1] == crypto.build(ring("a"), ring("a")).lookup_hash("phone", "+86137")


@pytest.mark.parametrize("spec, current", [("a", ""), ("a:xx", ""), ("a:" + KEYS["a"] + ",a:" + KEYS["b"], ""),
                                           ("a:" + KEYS["a"], "b"), ("bad kid:" + KEYS["a"], "")],
                         # the keys are random per process: stable ids let xdist workers agree
                         ids=["no-key", "not-base64", "kid-twice", "current-missing", "bad-kid"])
def test_malformed_keyrings_are_refused(spec, current):
    with pytest.raises(ValueError):
        crypto.parse_keyring(spec, current, single_key=KEYS["a"])


def test_single_key_settings_are_a_keyring_of_one_and_dev_keys_are_refused_in_a_production_ring():
    keys_, current = crypto.parse_keyring("", "", single_key=KEYS["a"])
    assert current == crypto.DEFAULT_KID and list(keys_) == [crypto.DEFAULT_KID]
    settings = Settings(env="production", data_keys=f"k1:{DEV_DATA_KEY}", index_keys=ring("a"),
                        secret_key=secrets.token_urlsafe(32), payment_provider="none", sms_provider="none",
                        face_check_provider="none")
    with pytest.raises(ValueError):
        crypto.configure_from(settings)


async def test_a_plain_value_cannot_be_written_to_an_encrypted_column_without_its_row(db, clock):
    from sqlalchemy import insert
    from sqlalchemy.exc import StatementError

    async with db.begin() as s:
        with pytest.raises(StatementError, match="for_row"):
            await s.execute(insert(Account).values(phone="+8613712345678", phone_hash="x", row_key="r",
                                                   locale="zh-CN", created_at=clock.now()))


# --- swapped ciphertexts --------------------------------------------------------------------

async def test_a_value_copied_to_another_row_or_column_is_refused_with_a_problem_not_a_500(settings, clock):
    async with running(settings, clock, **keys(("a",), ("a",), "a")) as (app, client):
        await _wipe(app.state.db)
        _, token_1 = await log_in(app, client, new_phone())
        _, token_2 = await log_in(app, client, new_phone())
        p1 = (await add_patient(client, token_1, new_resident_id())).json()["id"]
        p2 = (await add_patient(client, token_2, new_resident_id())).json()["id"]
        async with app.state.db.begin() as s:  # what an attacker with write access might do
            await s.execute(text("UPDATE patients SET name = (SELECT name FROM patients WHERE id = :a) "
                                 "WHERE id = :b"), {"a": p1, "b": p2})
            await s.execute(text("UPDATE patients SET phone = name WHERE id = :a"), {"a": p1})
        for token, patient_id in ((token_2, p2), (token_1, p1)):
            r = await client.get(f"/api/v1/me/patients/{patient_id}", headers=auth(token))
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "personal_data_unavailable"
        report = await reencrypt(app.state.db, dry_run=True)
        assert sorted(report.unreadable) == [("patients.name", p2), ("patients.phone", p1)]


# --- rotation, end to end -------------------------------------------------------------------

async def test_rotating_both_keys_online_keeps_logins_and_one_person_per_id_number(settings, clock):
    phone_1, phone_2, phone_3 = new_phone(), new_phone(), new_phone()
    id_1 = new_resident_id()
    # 1. everything written under key a
    async with running(settings, clock, **keys(("a",), ("a",), "a")) as (app, client):
        await _wipe(app.state.db)
        account_1, token_1 = await log_in(app, client, phone_1)
        patient_1 = (await add_patient(client, token_1, id_1)).json()["id"]
        person_1 = await person_of(app.state.db, patient_1)
        # a code requested now is consumed after the switch below
        assert (await client.post("/api/v1/auth/sms-codes", json={"phone": phone_2[0]})).status_code == 202
        pending_code = app.state.sms.last_code(phone_2[1])
    # 2. key b added and current (a still active): old rows are read and found, new ones use b
    async with running(settings, clock, **keys(("a", "b"), ("a", "b"), "b")) as (app, client):
        r = await client.post("/api/v1/auth/login", json={"phone": phone_2[0], "code": pending_code})
        assert r.status_code == 200, r.text
        account_2, token_2 = r.json()["account"]["id"], r.json()["token"]
        assert (await log_in(app, client, phone_1))[0] == account_1
        r = await add_patient(client, token_2, id_1)
        assert r.status_code == 201, r.text
        assert await person_of(app.state.db, r.json()["id"]) == person_1  # same person, old hash
        assert (await add_patient(client, token_1, id_1)).json()["code"] == "duplicate_patient"
        r = await client.get(f"/api/v1/me/patients/{patient_1}", headers=auth(token_1))
        assert r.status_code == 200 and r.json()["id_number"][-1] == id_1[-1]
        account_3, token_3 = await log_in(app, client, phone_3)
        tokens = await raw_tokens(app.state.db)
        assert any(t.startswith("v2:a:") for t in tokens) and any(t.startswith("v2:b:") for t in tokens)
        # 3. the job rewrites everything under b; a second pass has nothing left to do
        before = await reencrypt(app.state.db, dry_run=True)
        assert before.values_rewritten > 0 and before.hashes_rewritten >= 2 and not before.clean
        done = await reencrypt(app.state.db, batch_size=2)
        assert (done.values_rewritten, done.hashes_rewritten) == (before.values_rewritten, before.hashes_rewritten)
        assert (await reencrypt(app.state.db, dry_run=True)).clean
        assert not any(t.startswith("v2:a:") for t in await raw_tokens(app.state.db))
    # 4. key a retired: everything is still readable and found
    async with running(settings, clock, **keys(("b",), ("b",), "b")) as (app, client):
        for phone, account in ((phone_1, account_1), (phone_2, account_2), (phone_3, account_3)):
            assert (await log_in(app, client, phone))[0] == account
        r = await client.get("/api/v1/me/patients", headers=auth(token_2))
        assert r.status_code == 200 and r.json()["total"] == 1
        _, token_4 = await log_in(app, client, new_phone())
        r = await add_patient(client, token_4, id_1)
        assert await person_of(app.state.db, r.json()["id"]) == person_1
        async with app.state.db.read() as s:
            assert await s.scalar(select(func.count()).select_from(Account)) == 4
            assert await s.scalar(select(func.count()).select_from(Person)) == 1


async def test_first_format_rows_are_read_and_upgraded_by_the_job(settings, clock):
    async with running(settings, clock, **keys(("a",), ("a",), "a")) as (app, client):
        await _wipe(app.state.db)
        _, token = await log_in(app, client, new_phone())
        patient_id = (await add_patient(client, token, new_resident_id())).json()["id"]
        v1 = first_format("王五")
        remember_sensitive("王五")
        async with app.state.db.begin() as s:
            await s.execute(text("UPDATE patients SET name = :v WHERE id = :id"), {"v": v1, "id": patient_id})
        assert (await client.get(f"/api/v1/me/patients/{patient_id}", headers=auth(token))).json()["name"] == "王*"
        assert (await reencrypt(app.state.db)).values_rewritten == 1
        async with app.state.db.read() as s:
            assert (await s.get(Patient, patient_id)).name == "王五"
            assert (await s.scalar(text("SELECT name FROM patients"))).startswith("v2:a:")


async def test_an_interrupted_job_resumes_and_a_rerun_changes_nothing(settings, clock, monkeypatch):
    from guahao.keys import rotation

    async with running(settings, clock, **keys(("a",), ("a",), "a")) as (app, client):
        await _wipe(app.state.db)
        for _ in range(5):
            _, token = await log_in(app, client, new_phone())
            assert (await add_patient(client, token, new_resident_id())).status_code == 201
    async with running(settings, clock, **keys(("a", "b"), ("a", "b"), "b")) as (app, client):
        real, calls = rotation._value_batch, itertools.count()

        async def crash_on_third_batch(*args, **kwargs):
            if next(calls) == 2:
                raise RuntimeError("worker killed")
            return await real(*args, **kwargs)

        monkeypatch.setattr(rotation, "_value_batch", crash_on_third_batch)
        with pytest.raises(RuntimeError):
            await reencrypt(app.state.db, batch_size=2)
        monkeypatch.setattr(rotation, "_value_batch", real)
        committed = sum(t.startswith("v2:b:") for t in await raw_tokens(app.state.db))
        assert committed == 4  # two batches of two accounts committed before the crash
        rest = await reencrypt(app.state.db, batch_size=2)
        assert rest.values_rewritten == 5 * 3 + 5 - committed and not rest.unreadable
        again = await reencrypt(app.state.db, batch_size=2)
        assert (again.values_rewritten, again.hashes_rewritten) == (0, 0)


async def test_the_job_never_undoes_a_change_the_application_made_meanwhile(settings, clock, backend, monkeypatch):
    """The job reads a batch, then writes: an edit committed in between must survive. On
    PostgreSQL the edit is made to land exactly there; on SQLite the job's batch holds the
    write lock, so the edits can only run around the batches, and they race them."""
    from guahao.keys import rotation
    from guahao.patients.schemas import PatientUpdate
    from tests.booking_builders import make_patient
    from tests.builders import make_account

    async with running(settings, clock, **keys(("a",), ("a",), "a")) as (app, client):
        await _wipe(app.state.db)
        account_id, _ = await make_account(app.state.db, clock.now())
        patient_ids = [await make_patient(app.state.db, clock.now(), account_id) for _ in range(10)]
    async with running(settings, clock, **keys(("a", "b"), ("a", "b"), "b")) as (app, client):
        db = app.state.db
        new_names = {pid: f"新名{chr(0x4e00 + pid)}" for pid in patient_ids}
        remember_sensitive(*new_names.values())

        async def edit(patient_id: int) -> None:
            async with db.begin() as s:
                await patients_service.do_update_patient(s, account_id=account_id, patient_id=patient_id,
                                                         data=PatientUpdate(name=new_names[patient_id]),
                                                         now=clock.now())

        if backend == "postgresql":
            real, pending = rotation._guarded_update, set(patient_ids)

            async def edit_in_between(session, table, row_id, column, *args):
                if table.name == "patients" and row_id in pending:
                    pending.discard(row_id)
                    await edit(row_id)  # commits after the job read the row, before it writes
                return await real(session, table, row_id, column, *args)

            monkeypatch.setattr(rotation, "_guarded_update", edit_in_between)
            report = await reencrypt(db, batch_size=1)  # nothing of the batch written yet at the edit
            assert not pending and report.changed_meanwhile == len(patient_ids)
        else:
            await asyncio.gather(reencrypt(db, batch_size=1), *(edit(pid) for pid in patient_ids))
        async with db.read() as s:
            assert {p.id: p.name for p in await s.scalars(select(Patient))} == new_names
        assert all(t.startswith("v2:b:") for t in await raw_tokens(db))


async def test_the_hourly_job_upgrades_stray_values_cheaply_and_finishes_a_rotation(settings, clock):
    from guahao.jobs import handlers
    from guahao.keys import jobs as key_jobs
    from guahao.outbox import registry

    handlers.load(settings)
    assert registry.HANDLERS["keys.reencrypt"] is key_jobs.reencrypt
    assert "keys.reencrypt" in [job.topic for job in registry.PERIODIC]
    async with running(settings, clock, **keys(("a",), ("a",), "a")) as (app, client):
        await _wipe(app.state.db)
        _, token = await log_in(app, client, new_phone())
        patient_id = (await add_patient(client, token, new_resident_id())).json()["id"]
        remember_sensitive("赵六")
        async with app.state.db.begin() as s:
            await s.execute(text("UPDATE patients SET name = :v WHERE id = :id"),
                            {"v": first_format("赵六"), "id": patient_id})
        ctx = registry.JobContext(db=app.state.db, clock=clock, settings=app.state.settings)
        await key_jobs.reencrypt(ctx, {})
        assert (await reencrypt(app.state.db, dry_run=True)).clean
    async with running(settings, clock, **keys(("a", "b"), ("a", "b"), "b")) as (app, client):
        assert not (await reencrypt(app.state.db, dry_run=True)).clean
        await key_jobs.reencrypt(registry.JobContext(db=app.state.db, clock=clock, settings=app.state.settings), {})
        assert (await reencrypt(app.state.db, dry_run=True)).clean
        assert all(t.startswith("v2:b:") for t in await raw_tokens(app.state.db))


# --- uniqueness while two index keys are active ---------------------------------------------

ROUNDS = 5


async def warm_pool(db) -> None:
    """Open the pool's connections first, so the racers start together instead of queueing
    behind connection set-up."""
    all_open = asyncio.Barrier(5)

    async def hold():
        async with db.read() as s:
            await s.execute(text("SELECT 1"))
            await all_open.wait()

    await asyncio.gather(*(hold() for _ in range(5)))

async def test_concurrent_first_logins_under_two_current_keys_make_one_account(db, clock):
    """Two generations of a rolling key switch (current a, current b) run side by side."""
    generations = [crypto.build(ring("a", "b"), ring("a", "b"), index_key_current=current) for current in "ab"]
    await warm_pool(db)
    for _ in range(ROUNDS):
        _, e164 = new_phone()

        async def first_login(generation):
            with crypto.using(generation):
                async with db.begin() as s:
                    return (await accounts_service.do_get_or_create_account(s, e164, now=clock.now())).id

        ids = await asyncio.gather(*(first_login(generations[i % 2]) for i in range(10)))
        assert len(set(ids)) == 1
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Account)) == ROUNDS


async def test_concurrent_new_persons_under_two_current_keys_make_one_person(db, clock):
    generations = [crypto.build(ring("a", "b"), ring("a", "b"), index_key_current=current) for current in "ab"]
    await warm_pool(db)
    for _ in range(ROUNDS):
        number = new_resident_id()

        async def first_sight(generation):
            with crypto.using(generation):
                async with db.begin() as s:
                    return await patients_service.get_or_create_person(
                        s, patients_service.identity_hashes("resident_id", number), now=clock.now())

        ids = await asyncio.gather(*(first_sight(generations[i % 2]) for i in range(10)))
        assert len(set(ids)) == 1
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Person)) == ROUNDS
