"""Who calls the FHIR facade: partner systems with OAuth2 client credentials, patients with their
existing session (the JSON API's bearer token or cookie).

The token endpoint is Authlib's RFC 6749 authorization server (its client-credentials grant,
client authentication, scope checks and error answers); Authlib ships integrations for Flask
and Django only, so the few framework hooks (request, response, client look-up) are written
here. The database is async and Authlib is not: the client row is loaded before Authlib runs
and handed to it through `query_client`.

Access tokens are short JWTs (HS256, joserfc: Authlib's own JOSE library), signed with a key
derived from the app's secret, naming the client and its granted scopes. Every use re-reads
the client row, so deactivating a partner takes effect at once.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Payload, OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from fastapi import Depends, Request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core.deps import AccountPrincipal, ClockDep, Db, bearer_or_cookie, current_account
from guahao.core.errors import Forbidden, Unauthenticated
from guahao.fhir.models import FhirClient

TOKEN_TTL = dt.timedelta(minutes=15)
# the token endpoint is public and every try costs an argon2 hash: a partner needs a token
# every 15 minutes, so these only stop secret guessing and CPU exhaustion (answered 429 before
# any database or hash work, an OperationOutcome `throttled` with Retry-After)
TOKEN_LIMIT_PER_ADDRESS = "60/minute;600/hour"
TOKEN_LIMIT_PER_CLIENT = "20/minute;200/hour"
# SMART v1 system scopes a partner may be granted; reads and $find, never another person's booking
SCOPES = ("system/Slot.read", "system/Schedule.read", "system/Appointment.read")
_hasher = PasswordHasher()
_ISSUER = "guahao"


@dataclass(frozen=True)
class Caller:
    """A partner system (client_id, scopes) or a patient's account (account)."""

    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    account: AccountPrincipal | None = None


def _signing_key(secret_key: str) -> OctKey:
    return OctKey.import_key(hashlib.sha256(f"fhir-token:{secret_key}".encode()).digest())


class _Client(ClientMixin):
    def __init__(self, row: FhirClient | None):
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.row.scopes.split())
        return " ".join(s for s in (scope or self.row.scopes).split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        try:
            return _hasher.verify(self.row.secret_hash, client_secret)
        except (VerificationError, InvalidHashError):
            return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class _Grant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        """Authlib's checks, then: a scope the partner was not granted is refused, not dropped."""
        super().validate_token_request()
        asked = set((self.request.payload.scope or "").split())
        if not asked <= set(self.request.client.row.scopes.split()):
            raise InvalidScopeError()


class _Payload(OAuth2Payload):
    def __init__(self, form: dict[str, str], datalist: dict[str, list[str]]):
        self._form, self._datalist = form, datalist

    @property
    def data(self) -> dict[str, str]:
        return self._form

    @property
    def datalist(self):
        return self._datalist


class _Request(OAuth2Request):
    """A token request: its form is all it has (no query, no JSON)."""

    def __init__(self, uri: str, headers, pairs: list[tuple[str, str]]):
        super().__init__("POST", uri, headers=headers)
        datalist: dict[str, list[str]] = {}
        for key, value in pairs:
            datalist.setdefault(key, []).append(value)
        self._form = dict(pairs)
        self.payload = _Payload(self._form, datalist)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Server(AuthorizationServer):
    """One per token request: it carries the client row loaded before it runs."""

    def __init__(self, client: FhirClient | None, key: OctKey, now: dt.datetime, audience: str):
        super().__init__(scopes_supported=list(SCOPES))
        self._client, self._key, self._now, self._audience = client, key, now, audience
        self.register_grant(_Grant)
        self.register_token_generator("default", self._token)

    def query_client(self, client_id: str):
        row = self._client
        if row is None or row.client_id != client_id or not row.active:
            return None
        return _Client(row)

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        return None  # self-contained tokens: nothing stored

    def send_signal(self, name: str, *args, **kwargs) -> None:
        return None  # Authlib's framework signals: nothing listens here

    def create_oauth2_request(self, request: tuple[str, dict[str, str], dict[str, Any]]) -> OAuth2Request:
        uri, headers, form = request
        return _Request(uri, headers, form["pairs"])

    def handle_response(self, status: int, body: Any, headers: list) -> tuple[int, Any, list]:
        return status, body, headers

    def _token(self, grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=False):
        expires = self._now + TOKEN_TTL
        claims = {"iss": _ISSUER, "sub": client.get_client_id(), "aud": self._audience, "scope": scope or "",
                  "iat": int(self._now.timestamp()), "exp": int(expires.timestamp()), "jti": secrets.token_hex(8)}
        token = jwt.encode({"alg": "HS256", "typ": "at+jwt"}, claims, self._key)
        return {"token_type": "Bearer", "access_token": token, "expires_in": int(TOKEN_TTL.total_seconds()),
                "scope": scope or ""}


def _client_id_of(headers, pairs: list[tuple[str, str]]) -> str | None:
    import base64
    from urllib.parse import unquote

    auth = headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            return unquote(base64.b64decode(auth[6:]).decode().split(":", 1)[0])
        except (ValueError, UnicodeDecodeError):
            return None
    return dict(pairs).get("client_id")


async def token_response(request: Request, db, now: dt.datetime, audience: str) -> tuple[int, Any, list]:
    """RFC 6749 4.4: the client's credentials in, a bearer token (or an OAuth2 error) out."""
    body = (await request.body()).decode("utf-8", errors="replace")
    pairs = parse_qsl(body, keep_blank_values=True)
    client_id = _client_id_of(request.headers, pairs)
    limiter = request.app.state.limiter
    await limiter.hit(TOKEN_LIMIT_PER_ADDRESS, "fhir-token-address", request.client.host if request.client else "-")
    row = None
    if client_id and len(client_id) <= 64:
        await limiter.hit(TOKEN_LIMIT_PER_CLIENT, "fhir-token-client", client_id)
        async with db.read() as session:
            row = await session.scalar(select(FhirClient).where(FhirClient.client_id == client_id))
    server = _Server(row, _signing_key(request.app.state.settings.secret_key), now, audience)
    # transport security is the deployment's (TLS at the proxy, HSTS); Authlib refuses an
    # http:// URI, so it is shown the https one the client reached
    uri = str(request.url.replace(scheme="https"))
    return server.create_token_response((uri, request.headers, {"pairs": pairs}))


async def do_create_client(session: AsyncSession, *, name: str, scopes: str, now: dt.datetime) -> tuple[str, str]:
    """A new partner: its client id and secret (shown once; only the hash is kept)."""
    unknown = set(scopes.split()) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}")
    client_id, secret = f"fhir-{secrets.token_hex(8)}", secrets.token_urlsafe(32)
    session.add(FhirClient(client_id=client_id, secret_hash=_hasher.hash(secret), name=name, scopes=scopes,
                           active=True, created_at=now))
    await session.flush()
    return client_id, secret


async def create_client_cli(settings, *, name: str, scopes: str) -> tuple[str, str]:
    """`guahao create-fhir-client`: its own database connection, one transaction."""
    from guahao.core.clock import SystemClock
    from guahao.core.db import create_database

    db = create_database(settings.database_url, pool_size=1)
    try:
        async with db.begin() as session:
            return await do_create_client(session, name=name, scopes=scopes, now=SystemClock().now())
    finally:
        await db.dispose()


async def _partner(request: Request, db, token: str, now: dt.datetime) -> Caller | None:
    """The partner behind a JWT access token, or None when the token is not one of ours."""
    if token.count(".") != 2:
        return None
    try:
        decoded = jwt.decode(token, _signing_key(request.app.state.settings.secret_key), algorithms=["HS256"])
    except (JoseError, ValueError):
        raise Unauthenticated() from None
    claims = decoded.claims
    if claims.get("iss") != _ISSUER or not isinstance(claims.get("exp"), int) or claims["exp"] <= now.timestamp():
        raise Unauthenticated()
    async with db.read() as session:
        row = await session.scalar(select(FhirClient).where(FhirClient.client_id == claims.get("sub")))
    if row is None or not row.active:
        raise Unauthenticated()
    granted = set(str(claims.get("scope", "")).split()) & set(row.scopes.split())
    return Caller(client_id=row.client_id, scopes=frozenset(granted))


async def fhir_caller(request: Request, db: Db, clock: ClockDep) -> Caller:
    """A partner's access token or a patient's session; neither: 401."""
    token = bearer_or_cookie(request)
    if not token:
        raise Unauthenticated()
    partner = await _partner(request, db, token, clock.now())
    if partner is not None:
        return partner
    return Caller(account=await current_account(request, db, clock))


def need_scope(caller: Caller, scope: str) -> None:
    if caller.account is None and scope not in caller.scopes:
        raise Forbidden()


FhirCaller = Annotated[Caller, Depends(fhir_caller)]
