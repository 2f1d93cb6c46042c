"""Accounts: SMS-code login and server-side sessions.

Codes. A code is six random digits; only a keyed hash bound to the phone number is stored.
Only the newest code of a number counts (issuing one expires the older ones). Checking a code
never reads-then-writes without a guard: a wrong try is `attempts = attempts + 1 WHERE
attempts < max`, a right one is `used_at = now WHERE used_at IS NULL AND attempts < max AND
expires_at > now`, and the rowcount decides. Under concurrency (PostgreSQL READ COMMITTED
re-checks the WHERE after the row lock is released; SQLite serialises writers with BEGIN
IMMEDIATE) exactly one login consumes a code and no more than `max` wrong tries are counted.
"""
from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import phonenumbers
from sqlalchemy import bindparam, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from guahao.accounts.errors import (
    CodeAttemptsExceeded,
    CodeExpired,
    CodeInvalid,
    CodeNotRequested,
    CodeUsed,
    InvalidPhone,
)
from guahao.accounts.models import Account, AuthSession, Consent, SmsCode
from guahao.core import raw_pg, signing
from guahao.core.crypto import for_row, lock_lookup, lookup_hash, lookup_hashes, new_row_key
from guahao.core.db import delete_oldest
from guahao.core.errors import GuahaoError, NotFound
from guahao.core.idempotency import IdempotencyKey

LOGIN = "login"
LOCALES = ("zh-CN", "en")
_MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


# --- phone numbers --------------------------------------------------------------------------

def normalize_mobile(raw: str) -> str:
    """A mainland China mobile number in E.164 ("+8613812345678"), or InvalidPhone.

    Accepts "13812345678", "+8613812345678", "138 1234 5678", "+86 138-1234-5678".
    """
    try:
        number = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone() from exc
    if (not phonenumbers.is_valid_number(number) or phonenumbers.region_code_for_number(number) != "CN"
            or phonenumbers.number_type(number) not in _MOBILE_TYPES):
        raise InvalidPhone()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_hash(phone_e164: str) -> str:
    """The hash to store (current index key)."""
    return lookup_hash("phone", phone_e164)


def phone_hashes(phone_e164: str) -> list[str]:
    """The hashes to look up by: one per active index key, so rows written before an index-key
    switch are still found (docs/KEYS.md)."""
    return lookup_hashes("phone", phone_e164)


# --- SMS codes ------------------------------------------------------------------------------

def _code_hash(phone_e164: str, code: str) -> str:
    # keyed and bound to the number: a leaked table reveals neither codes nor which are valid
    return lookup_hash("sms_code", f"{phone_e164}:{code}")


def _code_matches(stored: str, phone_e164: str, code: str) -> bool:
    # a code issued just before an index-key switch was hashed under the previous key
    candidates = lookup_hashes("sms_code", f"{phone_e164}:{code}")
    return any([hmac.compare_digest(stored, candidate) for candidate in candidates])


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


async def do_issue_code(session: AsyncSession, phone_e164: str, *, now: dt.datetime, ttl: dt.timedelta,
                        purpose: str = LOGIN) -> str:
    """Store a fresh code (hashed) for the number, supersede older unused ones, return the code.

    The caller sends it only after the transaction commits.
    """
    key = phone_hash(phone_e164)
    await session.execute(
        update(SmsCode)
        .where(SmsCode.phone_hash.in_(phone_hashes(phone_e164)), SmsCode.purpose == purpose, SmsCode.used_at.is_(None),
               SmsCode.expires_at > now)
        .values(expires_at=now)
    )
    code = new_code()
    session.add(SmsCode(phone_hash=key, code_hash=_code_hash(phone_e164, code), purpose=purpose,
                        created_at=now, expires_at=now + ttl, attempts=0))
    await session.flush()
    return code


async def do_consume_code(session: AsyncSession, phone_e164: str, code: str, *, now: dt.datetime,
                          max_attempts: int, purpose: str = LOGIN) -> GuahaoError | None:
    """Check `code` against the newest code of the number. None when it is right (and now used).

    A refusal is *returned*, not raised, because a wrong try must be committed: the caller
    commits the unit of work and raises afterwards.
    """
    row = await session.scalar(
        select(SmsCode)
        .where(SmsCode.phone_hash.in_(phone_hashes(phone_e164)), SmsCode.purpose == purpose)
        .order_by(SmsCode.created_at.desc(), SmsCode.id.desc())
        .limit(1)
    )
    if row is None:
        return CodeNotRequested()
    if row.used_at is not None:
        return CodeUsed()
    if row.attempts >= max_attempts:
        return CodeAttemptsExceeded()
    if row.expires_at <= now:
        return CodeExpired()

    guard = (SmsCode.id == row.id, SmsCode.used_at.is_(None), SmsCode.attempts < max_attempts)
    if not _code_matches(row.code_hash, phone_e164, code):
        attempts = await session.scalar(
            update(SmsCode).where(*guard).values(attempts=SmsCode.attempts + 1).returning(SmsCode.attempts)
        )
        if attempts is None:  # a concurrent request used or killed the code meanwhile
            return CodeAttemptsExceeded()
        left = max_attempts - attempts
        return CodeInvalid(attempts_left=left) if left > 0 else CodeAttemptsExceeded()

    result = await session.execute(
        update(SmsCode).where(*guard, SmsCode.expires_at > now).values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return CodeUsed()  # lost the race against a concurrent login with the same code
    return None


# --- accounts -------------------------------------------------------------------------------

async def get(session: AsyncSession, account_id: int) -> Account | None:
    return await session.get(Account, account_id)


async def lock_account(session: AsyncSession, account_id: int) -> None:
    """Lock the account's row for the caller's transaction, or NotFound("account"). Other
    features serialise their per-account writes on it (patients: the patient list).
    with_for_update() renders nothing on SQLite, where BEGIN IMMEDIATE already serialises."""
    found = await session.scalar(select(Account.id).where(Account.id == account_id).with_for_update())
    if found is None:
        raise NotFound("account")


async def get_by_phone(session: AsyncSession, phone_e164: str) -> Account | None:
    return await session.scalar(select(Account).where(Account.phone_hash.in_(phone_hashes(phone_e164)))
                                .order_by(Account.id).limit(1))


async def do_get_or_create_account(session: AsyncSession, phone_e164: str, *, now: dt.datetime) -> Account:
    """The account of a number, created on first login.

    INSERT ... ON CONFLICT DO NOTHING on the unique phone_hash, then read: two first logins of
    the same number at once end with one account, and neither fails. While two index keys are
    active the account may be stored under either hash: look it up by both first, and
    `lock_lookup` keeps two creators with different current keys from both inserting.
    """
    keys = phone_hashes(phone_e164)
    await lock_lookup(session, keys)
    by_phone = select(Account).where(Account.phone_hash.in_(keys)).order_by(Account.id).limit(1)
    account = await session.scalar(by_phone)
    if account is None:
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        row_key = new_row_key()
        await session.execute(
            dialect.insert(Account)
            .values(phone=for_row(phone_e164, row_key), row_key=row_key, phone_hash=phone_hash(phone_e164),
                    locale="zh-CN", created_at=now)
            .on_conflict_do_nothing(index_elements=["phone_hash"])
        )
        account = await session.scalar(by_phone)
    assert account is not None
    account.last_login_at = now
    return account


async def do_set_locale(session: AsyncSession, account_id: int, locale: str) -> Account:
    if locale not in LOCALES:
        raise ValueError(f"unsupported locale {locale!r}")
    account = await session.get(Account, account_id)
    assert account is not None
    account.locale = locale
    account.locale_chosen = True
    await session.flush()
    return account


@dataclass(frozen=True)
class LoginResult:
    account: Account
    token: str
    expires_at: dt.datetime


async def do_login(session: AsyncSession, phone_e164: str, code: str, *, now: dt.datetime,
                   max_attempts: int, session_ttl: dt.timedelta) -> LoginResult | GuahaoError:
    """Consume the code, get or create the account, open a session.

    Returns the refusal instead of raising it (see `do_consume_code`).
    """
    refusal = await do_consume_code(session, phone_e164, code, now=now, max_attempts=max_attempts)
    if refusal is not None:
        return refusal
    account = await do_get_or_create_account(session, phone_e164, now=now)
    token = await do_create_session(session, now=now, ttl=session_ttl, account_id=account.id)
    return LoginResult(account=account, token=token, expires_at=now + session_ttl)


# --- sessions -------------------------------------------------------------------------------

def token_hash(token: str) -> str:
    # keyed with GUAHAO_SECRET_KEY (see core/signing.py for why)
    return signing.session_token_hash(token)


async def do_create_session(session: AsyncSession, *, now: dt.datetime, ttl: dt.timedelta,
                            account_id: int | None = None, staff_id: int | None = None) -> str:
    """Create a session row and return the opaque token (shown once, stored only hashed)."""
    token = secrets.token_urlsafe(32)
    session.add(AuthSession(token_hash=token_hash(token), account_id=account_id, staff_id=staff_id,
                            created_at=now, expires_at=now + ttl))
    await session.flush()
    return token


async def resolve_session(session: AsyncSession, token: str, *, now: dt.datetime) -> AuthSession | None:
    row = await session.scalar(select(AuthSession).where(AuthSession.token_hash == token_hash(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return row


def _token_statements():
    # The account's saved language (`locale`) comes with the session in the same statement:
    # pages and API messages use it, and asking for it costs no second round trip.
    t, k, a = AuthSession.__table__, IdempotencyKey.__table__, Account.__table__
    live = (t.c.token_hash == bindparam("token_hash"), t.c.revoked_at.is_(None), t.c.expires_at > bindparam("now"))
    chosen = case((a.c.locale_chosen, a.c.locale), else_=None).label("locale")  # NULL: never chosen
    plain = (select(t.c.id, t.c.account_id, t.c.staff_id, chosen)
             .select_from(t.outerjoin(a, a.c.id == t.c.account_id)).where(*live))
    with_key = (select(t.c.id, t.c.account_id, t.c.staff_id, chosen, k.c.status_code, k.c.request_hash,
                       k.c.response, k.c.replay_until)
                .select_from(t.outerjoin(a, a.c.id == t.c.account_id)
                             .outerjoin(k, (k.c.account_id == t.c.account_id) & (k.c.key == bindparam("key"))))
                .where(*live))
    return plain, with_key


# built once: on the hot path, constructing the expression cost more than running it
_TOKEN_PLAIN, _TOKEN_WITH_KEY = _token_statements()


async def resolve_token(conn: AsyncConnection, token: str, *, now: dt.datetime,
                        idempotency_key: str | None = None):
    """resolve_session for the hot path: one Core SELECT on a plain connection.

    Returns a row with id, account_id, staff_id, locale (the language the account holder
    chose; NULL when never chosen, and for staff), or None. With `idempotency_key`, the same
    statement also reads the account's stored answer for that key (status_code,
    request_hash, response, replay_until; NULL when none), so a write request pays one round trip for
    authentication and replay detection together."""
    params = {"token_hash": token_hash(token), "now": now}
    if idempotency_key is not None:
        params["key"] = idempotency_key
    if conn.dialect.name == "postgresql":  # every authenticated request: asyncpg itself (core/raw_pg.py)
        row = await raw_pg.fetchrow(conn, _TOKEN_RAW[idempotency_key is not None], params)
        return None if row is None else TokenRow(**{**row, **({"response": raw_pg.json_value(row["response"])}
                                                              if idempotency_key is not None else {})})
    return (await conn.execute(_TOKEN_PLAIN if idempotency_key is None else _TOKEN_WITH_KEY, params)).first()


@dataclass(frozen=True)
class TokenRow:
    """resolve_token's row on PostgreSQL, with the attribute names of the SQLAlchemy row."""
    id: int
    account_id: int | None
    staff_id: int | None
    locale: str | None
    status_code: int | None = None
    request_hash: str | None = None
    response: Any = None
    replay_until: dt.datetime | None = None


_TOKEN_RAW = {False: raw_pg.Compiled.of(_TOKEN_PLAIN), True: raw_pg.Compiled.of(_TOKEN_WITH_KEY)}


def live_account_of_token():
    """SELECT account_id of the live patient session whose token hash is the bind parameter
    `token_hash` (not revoked, expiring after the bind parameter `now`): the same rule as
    resolve_session, as a statement other features compose into one round trip (the draw's
    entry fast path)."""
    t = AuthSession.__table__
    return select(t.c.account_id).where(t.c.token_hash == bindparam("token_hash"), t.c.revoked_at.is_(None),
                                        t.c.expires_at > bindparam("now", type_=t.c.expires_at.type),
                                        t.c.account_id.is_not(None))


async def do_revoke_session(session: AsyncSession, session_id: int, *, now: dt.datetime) -> None:
    await session.execute(
        update(AuthSession).where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None)).values(revoked_at=now)
    )


async def do_revoke_staff_sessions(session: AsyncSession, staff_id: int, *, now: dt.datetime,
                                   keep: int | None = None) -> int:
    """End every live session of a staff user but `keep` (after a password change); how many."""
    stmt = update(AuthSession).where(AuthSession.staff_id == staff_id, AuthSession.revoked_at.is_(None))
    if keep is not None:
        stmt = stmt.where(AuthSession.id != keep)
    result = await session.execute(stmt.values(revoked_at=now).execution_options(synchronize_session=False))
    return result.rowcount or 0


async def purge_sms_codes(session: AsyncSession, *, before: dt.datetime, limit: int) -> int:
    """Retention: login codes that expired before `before`."""
    return await delete_oldest(session, SmsCode, SmsCode.expires_at < before, limit=limit)


async def purge_sessions(session: AsyncSession, *, before: dt.datetime, limit: int) -> int:
    """Retention: sessions that expired, or were revoked, before `before`."""
    return await delete_oldest(session, AuthSession,
                               or_(AuthSession.expires_at < before, AuthSession.revoked_at < before), limit=limit)


# --- consents (PIPL) ------------------------------------------------------------------------

async def do_record_consent(session: AsyncSession, account_id: int, *, kind: str, version: str,
                            now: dt.datetime) -> None:
    """Record that the account holder agreed to `kind` in `version`, once per version."""
    known = await session.scalar(select(Consent.id).where(Consent.account_id == account_id, Consent.kind == kind,
                                                          Consent.version == version))
    if known is None:
        session.add(Consent(account_id=account_id, kind=kind, version=version, consented_at=now))
        await session.flush()


async def consents_of(session: AsyncSession, account_id: int) -> dict[str, str]:
    """kind -> the newest version agreed to."""
    rows = await session.execute(select(Consent.kind, Consent.version).where(Consent.account_id == account_id)
                                 .order_by(Consent.id))
    return {kind: version for kind, version in rows}

