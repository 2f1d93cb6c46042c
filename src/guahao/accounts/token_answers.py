"""A refusal recorded as an Idempotency-Key's answer for the account behind a session token,
in one statement: the sold-out fast path of the release rush (booking/fast_path.py)."""
from __future__ import annotations

import datetime as dt
import functools

from sqlalchemy import JSON, String, bindparam, case, cast, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from guahao.accounts.models import Account, AuthSession
from guahao.accounts.service import token_hash
from guahao.core import i18n, raw_pg
from guahao.core.idempotency import IdempotencyKey

_ANSWER_COLUMNS = ("account_id", "key", "request_hash", "status_code", "response", "created_at", "replay_until")


@functools.cache
def _answer_for_token_template(dialect: str):
    """INSERT ... SELECT of an Idempotency-Key answer for the account behind a live session
    token, in the account's saved language when the request named none (`body_<i>` per
    supported language, `body` otherwise); on a key that has an answer already it does what
    core.idempotency's claim does (takes over only an ended refusal of the same request).
    Built once per dialect: constructing it costs more than running it."""
    t, a, k = AuthSession.__table__, Account.__table__, IdempotencyKey.__table__
    def json_param(name: str):
        # the caller's JSON text, serialised once: PostgreSQL is told it is json; on SQLite a
        # CAST to JSON would mean NUMERIC affinity (the text would become 0), and the column
        # stores the text as it is
        param = bindparam(name, type_=String())
        return cast(param, JSON) if dialect == "postgresql" else param
    body = case(*[(a.c.locale_chosen & (a.c.locale == lang), json_param(f"body_{i}"))
                  for i, lang in enumerate(i18n.SUPPORTED)], else_=json_param("body"))
    source = (select(t.c.account_id, bindparam("key", type_=k.c.key.type),
                     bindparam("request_hash", type_=k.c.request_hash.type),
                     bindparam("status_code", type_=k.c.status_code.type), body,
                     bindparam("created_at", type_=k.c.created_at.type),
                     bindparam("replay_until", type_=k.c.replay_until.type))
              .select_from(t.join(a, a.c.id == t.c.account_id))
              .where(t.c.token_hash == bindparam("token_hash"), t.c.revoked_at.is_(None),
                     t.c.expires_at > bindparam("now", type_=t.c.expires_at.type)))
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(k).from_select(list(_ANSWER_COLUMNS), source)
    return stmt.on_conflict_do_update(
        index_elements=[k.c.account_id, k.c.key],
        set_={name: stmt.excluded[name] for name in ("status_code", "response", "created_at", "replay_until")},
        where=k.c.replay_until.is_not(None) & (k.c.replay_until <= bindparam("now", type_=k.c.replay_until.type))
        & (k.c.request_hash == stmt.excluded.request_hash),
    ).returning(k.c.account_id, k.c.response)


async def record_answer_for_token(conn: AsyncConnection | AsyncSession, token: str, *, key: str, req_hash: str,
                                  status: int, bodies: dict[str, str], header_language: str | None,
                                  now: dt.datetime, replay_until: dt.datetime | None):
    """Authenticate `token` and make (status, body) its account's answer for `key` in one
    statement. `bodies` has the answer in every supported language, as JSON text; `header_language` is the
    one the request asked for (None: the account's saved choice, else the default). Returns
    (account_id, stored body) when this answer became the key's answer, None otherwise: the
    token is not a live patient session, or the key has an answer (or a write in flight) of
    its own, which the caller then serves the ordinary way."""
    default = bodies[header_language or i18n.DEFAULT]
    params: dict = {"token_hash": token_hash(token), "now": now, "key": key, "request_hash": req_hash,
                    "status_code": status, "created_at": now, "replay_until": replay_until, "body": default}
    for i, lang in enumerate(i18n.SUPPORTED):
        params[f"body_{i}"] = default if header_language else bodies[lang]
    dialect = conn.bind.dialect.name if isinstance(conn, AsyncSession) else conn.dialect.name
    if dialect != "postgresql" or isinstance(conn, AsyncSession):
        row = (await conn.execute(_answer_for_token_template(dialect), params)).first()
        return None if row is None else (row[0], row[1])
    # PostgreSQL: compiled once, sent by asyncpg itself (core/raw_pg.py); the connection is
    # ours alone inside `db.peek()`, in autocommit
    row = await raw_pg.fetchrow(conn, _answer_for_token_asyncpg(), params)
    return None if row is None else (row[0], raw_pg.json_value(row[1]))


@functools.cache
def _answer_for_token_asyncpg() -> raw_pg.Compiled:
    return raw_pg.Compiled.of(_answer_for_token_template("postgresql"))
