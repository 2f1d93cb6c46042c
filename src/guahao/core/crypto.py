"""Personal data at rest: AES-256-GCM for values, HMAC-SHA256 lookup hashes, and masks.

Columns holding names, phone numbers and ID numbers use the `Encrypted` type, so plaintext
never reaches the database; equality lookups (login by phone, one-per-person limits by ID
number) use `lookup_hash`, a keyed hash that cannot be reversed without the index key.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

_VERSION = "v1"


class FieldCipher:
    def __init__(self, data_key_b64: str, index_key_b64: str) -> None:
        self._aead = AESGCM(base64.b64decode(data_key_b64))
        self._index_key = base64.b64decode(index_key_b64)

    def encrypt(self, plaintext: str, *, context: bytes = b"") -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context)
        return f"{_VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, context: bytes = b"") -> str:
        version, _, payload = token.partition(":")
        if version != _VERSION:
            raise ValueError("unknown ciphertext version")
        raw = base64.b64decode(payload)
        return self._aead.decrypt(raw[:12], raw[12:], context).decode("utf-8")

    def lookup_hash(self, kind: str, value: str) -> str:
        return hmac.new(self._index_key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


_cipher: FieldCipher | None = None


def configure(data_key_b64: str, index_key_b64: str) -> FieldCipher:
    global _cipher
    _cipher = FieldCipher(data_key_b64, index_key_b64)
    return _cipher


def cipher() -> FieldCipher:
    if _cipher is None:
        raise RuntimeError("crypto.configure() has not been called")
    return _cipher


def lookup_hash(kind: str, value: str) -> str:
    return cipher().lookup_hash(kind, value)


class Encrypted(TypeDecorator[str]):
    """A str column stored as AES-GCM ciphertext (base64 text)."""

    impl = String(512)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[override]
        return None if value is None else cipher().encrypt(value)

    def process_result_value(self, value, dialect):  # type: ignore[override]
        return None if value is None else cipher().decrypt(value)


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
