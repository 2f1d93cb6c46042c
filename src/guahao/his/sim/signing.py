"""Request signing shared by the HIS simulator (verifying) and its clients (signing).

The string signed is, joined by newlines: the method, the path with its query string, the
timestamp (Unix seconds), the nonce and the hex SHA-256 of the raw body. The key of each
platform is derived from the simulator's master key, so a test or the adapter that knows
the master key can sign as any platform, and one platform's key is useless for another.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import quote

HEADER_PLATFORM, HEADER_TIMESTAMP = "X-His-Platform", "X-His-Timestamp"
HEADER_NONCE, HEADER_SIGNATURE = "X-His-Nonce", "X-His-Signature"
MAX_SKEW_SECONDS = 300


def platform_key(master_key: str, platform: str) -> bytes:
    return hmac.new(master_key.encode(), f"his-platform:{platform}".encode(), hashlib.sha256).digest()


def admin_token(master_key: str) -> str:
    """The bearer token of the hospital's own staff endpoints (/admin/...)."""
    return hmac.new(master_key.encode(), b"his-admin", hashlib.sha256).hexdigest()


def canonical_path(path: str) -> str:
    """The path and query as they go on the wire: non-ASCII percent-encoded as UTF-8, what is
    already encoded left alone. Send this exact string and sign it."""
    return quote(path, safe="/?&=%+:@,;-._~!$'()*")


def signature(key: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = "\n".join([method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign_request(key: bytes, platform: str, method: str, path: str, body: bytes = b"", *,
                 timestamp: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers to send with one request. `path` includes the query string
    ("/v1/availability?from=2026-12-01&to=2026-12-07"), sent as `canonical_path(path)`.
    Each request needs a fresh nonce."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    nonce = nonce or secrets.token_hex(16)
    return {HEADER_PLATFORM: platform, HEADER_TIMESTAMP: ts, HEADER_NONCE: nonce,
            HEADER_SIGNATURE: signature(key, method, canonical_path(path), ts, nonce, body)}
