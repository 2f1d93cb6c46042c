"""Personal data at rest: AES-256-GCM for values, HMAC-SHA256 lookup hashes, and masks.

Columns holding names, phone numbers and ID numbers use the `Encrypted` type, so plaintext
never reaches the database; equality lookups (login by phone, one-per-person limits by ID
number) use keyed hashes that cannot be reversed without an index key.

Keys live in two keyrings (data keys, index keys), each a set of keys named by a key id with
one current key. Rotation is online (docs/KEYS.md):

- Ciphertexts read `v2:<kid>:<base64(nonce | ciphertext)>`. Encryption always uses the current
  data key; decryption picks the key by its id, so old and new keys coexist until the
  re-encryption job (`guahao keys reencrypt`) has rewritten every value. The first format,
  `v1:<base64>` (one key, no associated data), is still read, with any data key, until that
  job upgrades it.
- The associated data of a v2 value binds it to its place: a stable column label (set in the
  model, independent of later table renames), the row's `row_key` and the key id. A value
  copied into another row or column fails authentication instead of showing someone else's
  name. The row key is a random per-row value assigned in Python when the object is built,
  because the autoincrement primary key does not exist yet when the INSERT's parameters are
  encrypted (and SQLite has no sequence to take it from early).
- Lookups query by the hash under every active index key (`lookup_hashes`); writes store the
  hash under the current one (`lookup_hash`). See `lock_lookup` for why creating a row keyed
  by a hash stays unique while two index keys are active.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import String, event, text, type_coerce
from sqlalchemy.types import TypeDecorator

from guahao.core.errors import GuahaoError

log = structlog.get_logger("guahao.crypto")

_V1, _V2 = "v1", "v2"
DEFAULT_KID = "k0"  # the key id of the single-key settings (GUAHAO_DATA_KEY / GUAHAO_INDEX_KEY)
_KID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_ROW_SEPARATOR = "|"  # between a token and its row key in what `Encrypted` selects


class UnreadableCiphertext(GuahaoError):
    """A stored value does not open: moved from another row or column, tampered with, or
    sealed under a key no longer in the keyring. Nothing the client can fix, and not a crash
    either: the operator must restore the key or the value (docs/KEYS.md)."""

    code, status = "personal_data_unavailable", 503
    zh = "个人信息暂时无法读取,请联系客服。"
    en = "Personal data cannot be read at the moment; please contact support."


# --- keyrings ---------------------------------------------------------------------------

def _decode_key(kid: str, key_b64: str) -> bytes:
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"key {kid!r} is not base64") from exc
    if len(raw) != 32:
        raise ValueError(f"key {kid!r} must decode to 32 bytes")
    return raw


def parse_keyring(spec: str, current: str, *, single_key: str) -> tuple[dict[str, bytes], str]:
    """Keys by id and the current id from "kid:base64,kid:base64" (empty: the single key as
    kid `k0`). Without an explicit current id, the last listed key is current."""
    if not spec.strip():
        keys = {DEFAULT_KID: _decode_key(DEFAULT_KID, single_key)}
        current = current or DEFAULT_KID
    else:
        keys = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            kid, sep, key_b64 = item.partition(":")
            kid = kid.strip()
            if not sep or not _KID.match(kid):
                raise ValueError(f"keyring entry must read kid:base64 with a kid of [A-Za-z0-9_-]{{1,16}}: {kid!r}")
            if kid in keys:
                raise ValueError(f"key id {kid!r} appears twice")
            keys[kid] = _decode_key(kid, key_b64.strip())
        current = current or list(keys)[-1]
    if current not in keys:
        raise ValueError(f"current key id {current!r} is not in the keyring")
    return keys, current


@dataclass(frozen=True)
class RowValue:
    """Where a sealed value lives: its column label and its row key (the associated data)."""

    label: str
    row_key: str


def _aad(version: str, kid: str, where: RowValue) -> bytes:
    return "\x1f".join(("guahao", version, kid, where.label, where.row_key)).encode()


class FieldCipher:
    def __init__(self, data_keys: dict[str, bytes], data_current: str,
                 index_keys: dict[str, bytes], index_current: str) -> None:
        self._aeads = {kid: AESGCM(key) for kid, key in data_keys.items()}
        self.data_current = data_current
        self._index_keys = dict(index_keys)
        self.index_current = index_current

    @property
    def data_kids(self) -> list[str]:
        return list(self._aeads)

    @property
    def index_kids(self) -> list[str]:
        return list(self._index_keys)

    # values --------------------------------------------------------------------------------

    def seal(self, plaintext: str, where: RowValue) -> str:
        kid = self.data_current
        nonce = os.urandom(12)
        sealed = self._aeads[kid].encrypt(nonce, plaintext.encode("utf-8"), _aad(_V2, kid, where))
        return f"{_V2}:{kid}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, token: str, where: RowValue) -> str:
        """The plaintext, or UnreadableCiphertext (never a different row's value)."""
        try:
            version, _, rest = token.partition(":")
            if version == _V2:
                kid, _, payload = rest.partition(":")
                aead = self._aeads.get(kid)
                if aead is None:
                    raise UnreadableCiphertext()
                raw = base64.b64decode(payload, validate=True)
                return aead.decrypt(raw[:12], raw[12:], _aad(_V2, kid, where)).decode("utf-8")
            if version == _V1:
                # No key id and no associated data: try each data key (GCM rejects wrong ones).
                raw = base64.b64decode(rest, validate=True)
                for aead in self._aeads.values():
                    try:
                        return aead.decrypt(raw[:12], raw[12:], b"").decode("utf-8")
                    except InvalidTag:
                        continue
            raise UnreadableCiphertext()
        except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise UnreadableCiphertext() from exc

    def token_kid(self, token: str) -> str | None:
        """The data key id of a stored value (None for the v1 format)."""
        version, _, rest = token.partition(":")
        return rest.partition(":")[0] if version == _V2 else None

    def is_current(self, token: str) -> bool:
        return self.token_kid(token) == self.data_current

    # index hashes --------------------------------------------------------------------------

    def _hash(self, kid: str, kind: str, value: str) -> str:
        return hmac.new(self._index_keys[kid], f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def lookup_hash(self, kind: str, value: str) -> str:
        """The hash to store: under the current index key."""
        return self._hash(self.index_current, kind, value)

    def lookup_hashes(self, kind: str, value: str) -> list[str]:
        """The hashes to look up by: under every active index key, the current one first."""
        kids = [self.index_current] + [k for k in self._index_keys if k != self.index_current]
        return [self._hash(kid, kind, value) for kid in kids]


_cipher: FieldCipher | None = None
# A task-local override (`using`): lets one process act as several differently configured ones
# in tests and tools, e.g. two generations of a rolling key change.
_override: ContextVar[FieldCipher | None] = ContextVar("guahao_cipher_override", default=None)


def configure(data_key_b64: str, index_key_b64: str, *, data_keys: str = "", data_key_current: str = "",
              index_keys: str = "", index_key_current: str = "") -> FieldCipher:
    global _cipher
    data, data_current = parse_keyring(data_keys, data_key_current, single_key=data_key_b64)
    index, index_current = parse_keyring(index_keys, index_key_current, single_key=index_key_b64)
    _cipher = FieldCipher(data, data_current, index, index_current)
    return _cipher


def configure_from(settings: Any) -> FieldCipher:
    """The keyrings of a `Settings` (GUAHAO_DATA_KEYS / _CURRENT, GUAHAO_INDEX_KEYS / _CURRENT)."""
    if settings.env != "development" and (settings.data_keys or settings.index_keys):
        from guahao.config import PLACEHOLDERS  # the single keys are checked by Settings itself

        listed = [part.partition(":")[2].strip() for part in f"{settings.data_keys},{settings.index_keys}".split(",")]
        if any(key in PLACEHOLDERS for key in listed if key):
            raise ValueError(f"development keys refused in a keyring in {settings.env}")
    return configure(settings.data_key, settings.index_key, data_keys=settings.data_keys,
                     data_key_current=settings.data_key_current, index_keys=settings.index_keys,
                     index_key_current=settings.index_key_current)


def cipher() -> FieldCipher:
    current = _override.get() or _cipher
    if current is None:
        raise RuntimeError("crypto.configure() has not been called")
    return current


@contextmanager
def using(cipher_: FieldCipher) -> Iterator[FieldCipher]:
    """Use this cipher in the current task (and tasks it starts) instead of the configured one."""
    token = _override.set(cipher_)
    try:
        yield cipher_
    finally:
        _override.reset(token)


def build(data_keys: str, index_keys: str, *, data_key_current: str = "", index_key_current: str = "") -> FieldCipher:
    """A cipher from keyring strings, without installing it (see `using`)."""
    data, data_current = parse_keyring(data_keys, data_key_current, single_key="")
    index, index_current = parse_keyring(index_keys, index_key_current, single_key="")
    return FieldCipher(data, data_current, index, index_current)


def lookup_hash(kind: str, value: str) -> str:
    return cipher().lookup_hash(kind, value)


def lookup_hashes(kind: str, value: str) -> list[str]:
    return cipher().lookup_hashes(kind, value)


async def lock_lookup(session: Any, hashes: Sequence[str]) -> None:
    """Serialise the creation of rows keyed by these hashes, when more than one is active.

    A unique index on a hash column keeps one row per hash, but while two index keys are
    active the same person has two hashes, and two processes (one already writing under the
    new key, one still under the old) could each find nothing and insert a row under their
    own hash. The rotation procedure (docs/KEYS.md) changes one thing at a time, so two
    running processes either store under the same current key (the unique index decides) or
    both know both keys. Those take a transaction-scoped advisory lock on every hash (in
    sorted order, so two lockers cannot deadlock): the look-up-then-insert of a second
    creator waits for the first and then sees its row. On SQLite every write transaction
    already holds the database lock (BEGIN IMMEDIATE). The lock is held until commit and is
    the first one the creating transaction takes on the person or number, so it fits the
    lock order (it stands for the person row that does not exist yet).
    """
    if len(hashes) < 2 or session.get_bind().dialect.name != "postgresql":
        return
    for lock_id in sorted({int(h[:15], 16) for h in hashes}):
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})


# --- the column type ---------------------------------------------------------------------

def new_row_key() -> str:
    return secrets.token_hex(16)


class ForRow(str):
    """A plaintext on its way into an `Encrypted` column, carrying its row's key.

    Model attributes wrap values automatically (`encrypted_rows`); a Core INSERT or UPDATE
    passes `for_row(value, row_key)` with the row_key it writes."""

    __slots__ = ("row_key",)

    def __new__(cls, value: str, row_key: str) -> ForRow:
        obj = super().__new__(cls, value)
        obj.row_key = row_key
        return obj


def for_row(value: str | None, row_key: str) -> ForRow | None:
    return None if value is None else ForRow(value, row_key)


class Encrypted(TypeDecorator[str]):
    """A str column stored as AES-GCM ciphertext bound to its column label and row key.

    The label is part of every ciphertext, so it must never change once data exists. SELECTs
    read the token together with the row's `row_key` (`column_expression`), which is how the
    result processor learns the row it opens the value for.
    """

    impl = String(512)
    cache_ok = True

    def __init__(self, label: str = "", length: int = 512) -> None:
        super().__init__(length=length)
        self.label = label

    def column_expression(self, colexpr):  # type: ignore[override]
        table = getattr(colexpr, "table", None)
        if table is None or "row_key" not in table.c:
            return colexpr  # e.g. through a subquery: opening it will fail with a clear error
        raw = type_coerce(colexpr, String()).concat(_ROW_SEPARATOR).concat(table.c.row_key)
        return type_coerce(raw, self)

    def process_bind_param(self, value, dialect):  # type: ignore[override]
        if value is None:
            return None
        if not isinstance(value, ForRow):
            raise TypeError(f"{self.label}: write through the model or crypto.for_row(value, row_key)")
        return cipher().seal(str(value), RowValue(self.label, value.row_key))

    def process_result_value(self, value, dialect):  # type: ignore[override]
        if value is None:
            return None
        token, found, row_key = value.rpartition(_ROW_SEPARATOR)
        if not found:  # selected without its row key (see column_expression)
            token, row_key = value, ""
        try:
            return cipher().open(token, RowValue(self.label, row_key))
        except UnreadableCiphertext:
            # a security event: ids only, never the value
            log.warning("ciphertext_rejected", column=self.label, row_key=row_key,
                        kid=cipher().token_kid(token))
            raise


def encrypted_rows(cls: type) -> type:
    """Class decorator for a model with `row_key` and `Encrypted` columns: every new object
    gets its random row key before any attribute is set, and every value assigned to an
    encrypted attribute is wrapped with that row key for the bind processor."""

    def assign_row_key(target, args, kwargs) -> None:
        target.row_key = kwargs.pop("row_key", None) or new_row_key()

    def wrap(target, value, _old, _initiator):
        return None if value is None else ForRow(value, target.row_key)

    event.listen(cls, "init", assign_row_key)
    for column in cls.__table__.columns:  # type: ignore[attr-defined]
        if isinstance(column.type, Encrypted):
            event.listen(getattr(cls, column.key), "set", wrap, retval=True)
    return cls


def encrypted_columns(table: Any) -> list[Any]:
    return [c for c in table.columns if isinstance(c.type, Encrypted)]


# --- masks: the only forms in which personal data leaves the service ---------------------

def mask_id_number(value: str) -> str:
    if len(value) <= 2:
        return "*" * len(value)
    return value[0] + "*" * (len(value) - 2) + value[-1]


def mask_phone(value: str) -> str:
    digits = value[3:] if value.startswith("+86") else value
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_name(value: str) -> str:
    """First character and one star (张*, 阿*): the length of the name stays hidden too."""
    if not value:
        return value
    return value[0] + "*"


def mask_card(value: str) -> str:
    return "*" * max(0, len(value) - 4) + value[-4:]


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return (local[:1] + "***@" + domain) if domain else "***"


def mask_address(value: str) -> str:
    """The first six characters (province and city, usually) and stars: never the street."""
    return value[:6] + "****" if len(value) > 6 else "****"
