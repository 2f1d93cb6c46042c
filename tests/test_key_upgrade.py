"""An existing database (first ciphertext format, no row keys) upgrades in place and is then
rotated with the `guahao keys` commands, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import secrets
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, text
from typer.testing import CliRunner

from guahao import migrations_api
from guahao.accounts import service as accounts_service
from guahao.cli import app as cli_app
from guahao.config import get_settings
from guahao.core import crypto
from guahao.core.db import create_database
from guahao.patients import service as patients_service
from guahao.patients.models import Patient
from tests.conftest import _pg_admin, _pg_reachable, pg_url_for, remember_sensitive

OLD, NEW = (base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(2))
PHONE, NAME, NUMBER = "+8613600000001", "钱七", "110101199003070011"
NOW = dt.datetime(2026, 11, 19, 2, 0, tzinfo=dt.UTC)


def v1(value: str) -> str:
    nonce = os.urandom(12)
    return "v1:" + base64.b64encode(nonce + AESGCM(base64.b64decode(OLD)).encrypt(nonce, value.encode(), b"")).decode()


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    if problem := await _pg_reachable():
        pytest.skip(f"PostgreSQL half skipped: {problem}")
    name = f"guahao_keys_{uuid.uuid4().hex[:10]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url_for(name)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def keep_configured_cipher():
    saved = crypto._cipher
    yield
    crypto._cipher = saved
    get_settings.cache_clear()


async def write_as_the_first_release(url: str) -> None:
    """Rows as the code before key ids wrote them: v1 values, hashes under the single key."""
    await asyncio.to_thread(migrations_api.upgrade, url, "0001")
    old = crypto.build(f"k0:{OLD}", f"k0:{OLD}")
    db = create_database(url)
    async with db.begin() as s:
        account_id = (await s.execute(text(
            "INSERT INTO accounts (phone, phone_hash, locale, created_at) VALUES (:p, :h, 'zh-CN', :now) RETURNING id"),
            {"p": v1(PHONE), "h": old.lookup_hash("phone", PHONE), "now": NOW})).scalar_one()
        person_id = (await s.execute(text(
            "INSERT INTO persons (identity_hash, created_at) VALUES (:h, :now) RETURNING id"),
            {"h": old.lookup_hash("identity", f"resident_id:{NUMBER}"), "now": NOW})).scalar_one()
        await s.execute(text(
            "INSERT INTO patients (account_id, person_id, relationship, name, id_type, id_number, birth_date, sex,"
            " phone, verification, created_at, updated_at) VALUES (:a, :p, 'self', :name, 'resident_id', :number,"
            " :birth, 'M', :phone, 'unverified', :now, :now)"),
            {"a": account_id, "p": person_id, "name": v1(NAME), "number": v1(NUMBER), "phone": v1(PHONE),
             "birth": dt.date(1990, 3, 7), "now": NOW})
    await db.dispose()


def run_cli(monkeypatch, url: str, data: str, index: str, *args: str):
    for name, value in {"GUAHAO_ENV": "test", "GUAHAO_DATABASE_URL": url, "GUAHAO_SECRET_KEY": "s" * 32,
                        "GUAHAO_SMS_PROVIDER": "recording", "GUAHAO_DATA_KEYS": data, "GUAHAO_INDEX_KEYS": index}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return CliRunner().invoke(cli_app, ["keys", *args])


async def test_an_old_database_upgrades_reads_and_rotates_with_the_commands(fresh_url, monkeypatch):
    remember_sensitive(PHONE, PHONE[3:], NAME, NUMBER)
    await write_as_the_first_release(fresh_url)
    await asyncio.to_thread(migrations_api.upgrade, fresh_url)
    # after the upgrade, with the old key as k0 and a new current key b
    crypto.configure("", "", data_keys=f"k0:{OLD},b:{NEW}", index_keys=f"k0:{OLD},b:{NEW}")
    db = create_database(fresh_url)
    async with db.begin() as s:
        patient = await s.scalar(select(Patient))
        assert (patient.name, patient.id_number, patient.phone) == (NAME, NUMBER, PHONE) and len(patient.row_key) == 32
        account = await accounts_service.do_get_or_create_account(s, PHONE, now=NOW)
        assert account.id == patient.account_id and account.phone == PHONE
        assert await patients_service.get_or_create_person(
            s, patients_service.identity_hashes("resident_id", NUMBER), now=NOW) == patient.person_id
    await db.dispose()

    ring = f"k0:{OLD},b:{NEW}"
    status = await asyncio.to_thread(run_cli, monkeypatch, fresh_url, ring, ring, "status")
    # three hashes: the account's phone, the person's identity, and the patient's phone hash (a
    # row older than that column has none: the pass fills it)
    assert status.exit_code == 1 and "values due: 4" in status.output and "lookup hashes due: 3" in status.output
    assert "patients.name under v1: 1" in status.output and NAME not in status.output
    done = await asyncio.to_thread(run_cli, monkeypatch, fresh_url, ring, ring, "reencrypt", "--batch-size", "1")
    assert done.exit_code == 0, done.output
    retired = await asyncio.to_thread(run_cli, monkeypatch, fresh_url, f"b:{NEW}", f"b:{NEW}", "status")
    assert retired.exit_code == 0, retired.output

    crypto.configure("", "", data_keys=f"b:{NEW}", index_keys=f"b:{NEW}")
    db = create_database(fresh_url)
    async with db.begin() as s:
        assert (await accounts_service.get_by_phone(s, PHONE)).phone == PHONE
        assert (await s.scalar(select(Patient))).name == NAME
        assert await patients_service.get_or_create_person(
            s, patients_service.identity_hashes("resident_id", NUMBER), now=NOW) == patient.person_id
        assert not (await s.execute(text("SELECT 1 FROM patients WHERE name LIKE 'v1:%'"))).first()
    await db.dispose()
