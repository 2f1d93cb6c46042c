"""Keys derived from GUAHAO_SECRET_KEY: session-token hashes and CSRF tokens.

Session tokens are stored as HMAC-SHA256(session key, token), not a bare SHA-256. The tokens
are random, so neither form can be reversed; the key adds two things a bare hash cannot:
rows written into auth_sessions by someone without the key (a restored backup edited by
hand, an injected INSERT) never authenticate, and rotating GUAHAO_SECRET_KEY signs every
account and staff user out at once, the operator's switch after a suspected leak.

CSRF tokens are for the cookie-authenticated pages (the web issue): bound to the session
token, so a token taken from one session is worthless in another, and stateless.

`configure` runs once per process (create_app, the bench); every process that writes or
reads sessions must share the secret.
"""
from __future__ import annotations

import hashlib
import hmac

_session_key: bytes | None = None
_csrf_key: bytes | None = None


def _derive(secret: bytes, purpose: str) -> bytes:
    # one key per purpose, so a value made for one use cannot be replayed as another
    return hmac.new(secret, f"guahao/{purpose}".encode(), hashlib.sha256).digest()


def configure(secret_key: str) -> None:
    global _session_key, _csrf_key
    secret = secret_key.encode()
    _session_key = _derive(secret, "session-token")
    _csrf_key = _derive(secret, "csrf")


def _key(key: bytes | None) -> bytes:
    if key is None:
        raise RuntimeError("signing.configure() has not been called")
    return key


def session_token_hash(token: str) -> str:
    return hmac.new(_key(_session_key), token.encode(), hashlib.sha256).hexdigest()


def csrf_token(session_token: str) -> str:
    return hmac.new(_key(_csrf_key), session_token.encode(), hashlib.sha256).hexdigest()


def csrf_token_valid(session_token: str, candidate: str | None) -> bool:
    return bool(candidate) and hmac.compare_digest(csrf_token(session_token), candidate or "")
