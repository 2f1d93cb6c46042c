"""Production-safe defaults: development stand-ins refused at startup, /docs, /openapi.json and
/metrics private in production unless enabled, Swagger UI without a CDN, the client address
behind trusted proxies only, session tokens keyed with the secret key."""
from __future__ import annotations

import base64
import hashlib
import os
import re

import httpx
import pytest
from pydantic import ValidationError

from guahao.accounts import service as accounts_service
from guahao.accounts.models import AuthSession
from guahao.app import create_app
from guahao.config import Settings
from guahao.core import signing
from guahao.core.proxies import TrustedProxies
from guahao.notifications import port as notifications_port
from guahao.patients import face_check
from guahao.providers import build_providers
from tests.builders import auth, make_account
from tests.conftest import TEST_SECRET_KEY


def real_keys() -> dict[str, str]:
    return {"data_key": base64.b64encode(os.urandom(32)).decode(),
            "index_key": base64.b64encode(os.urandom(32)).decode(), "secret_key": "a-real-secret-from-the-vault"}


# --- refused at startup ---------------------------------------------------------------------

def test_production_refuses_every_development_stand_in_in_one_message():
    with pytest.raises(ValidationError) as refused:
        Settings(env="production", sms_provider="console", face_check_provider="sandbox", payment_provider="fake",
                 **real_keys())
    message = str(refused.value)
    assert "refused in production" in message
    for name in ("GUAHAO_SMS_PROVIDER=console", "GUAHAO_FACE_CHECK_PROVIDER=sandbox", "GUAHAO_PAYMENT_PROVIDER=fake"):
        assert name in message


@pytest.mark.parametrize("field,value", [("sms_provider", "console"), ("sms_provider", "recording"),
                                         ("face_check_provider", "sandbox"), ("payment_provider", "fake")])
def test_production_refuses_each_stand_in(field, value):
    chosen = {"sms_provider": "none", "face_check_provider": "none", "payment_provider": "none", field: value}
    with pytest.raises(ValidationError, match="refused in production"):
        Settings(env="production", **chosen, **real_keys())


def test_production_starts_without_stand_ins_and_keeps_docs_and_metrics_private():
    s = Settings(env="production", sms_provider="none", face_check_provider="none", payment_provider="none",
                 **real_keys())
    assert not s.docs_enabled and not s.metrics_enabled
    s = Settings(env="production", sms_provider="none", face_check_provider="none", payment_provider="none",
                 expose_docs=True, expose_metrics=True, **real_keys())
    assert s.docs_enabled and s.metrics_enabled


def test_the_test_environment_refuses_only_the_console_sms():
    with pytest.raises(ValidationError, match="prints login codes"):
        Settings(env="test", sms_provider="console", **real_keys())
    s = Settings(env="test", sms_provider="recording", face_check_provider="sandbox", payment_provider="fake",
                 **real_keys())
    assert s.docs_enabled and s.metrics_enabled


def test_development_keeps_its_conveniences():
    s = Settings(env="development")
    assert s.sms_provider == "console" and s.face_check_provider == "sandbox" and s.docs_enabled


def test_empty_exposure_variables_mean_the_default(monkeypatch):
    monkeypatch.setenv("GUAHAO_EXPOSE_DOCS", "")
    monkeypatch.setenv("GUAHAO_EXPOSE_METRICS", "false")
    s = Settings()
    assert s.docs_enabled and not s.metrics_enabled


def test_trusted_proxies_from_a_comma_separated_variable(monkeypatch):
    monkeypatch.setenv("GUAHAO_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.5,2001:db8::/32")
    assert Settings().trusted_proxies == ["10.0.0.0/8", "192.168.1.5", "2001:db8::/32"]
    monkeypatch.setenv("GUAHAO_TRUSTED_PROXIES", "10.0.0.0/8,load-balancer")
    with pytest.raises(ValidationError, match="load-balancer"):
        Settings()


# --- what the service publishes -------------------------------------------------------------

def production_settings(settings: Settings, **extra) -> Settings:
    return Settings(**{**settings.model_dump(), "env": "production", "sms_provider": "none",
                       "face_check_provider": "none", "payment_provider": "none", **extra})


async def _get(app, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        return await c.get(path)


async def test_production_hides_docs_openapi_and_metrics(settings, clock):
    app = create_app(production_settings(settings), clock=clock)
    try:
        for path in ("/docs", "/openapi.json", "/metrics", "/redoc", "/static/swagger/swagger-ui.css"):
            r = await _get(app, path)
            assert r.status_code == 404, path
            assert r.headers["content-type"].startswith("application/problem+json"), path
        assert (await _get(app, "/healthz")).status_code == 200
        assert "docs" not in (await _get(app, "/api")).json()  # and the API root does not point at them
    finally:
        await app.state.db.dispose()


async def test_production_publishes_docs_and_metrics_when_enabled(settings, clock):
    app = create_app(production_settings(settings, expose_docs=True, expose_metrics=True), clock=clock)
    try:
        for path in ("/docs", "/openapi.json", "/metrics"):
            assert (await _get(app, path)).status_code == 200, path
    finally:
        await app.state.db.dispose()


async def test_docs_page_loads_nothing_from_outside(client):
    r = await client.get("/docs")
    assert r.status_code == 200 and "SwaggerUIBundle" in r.text
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", r.text, re.IGNORECASE), r.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert len(assets) == 3  # script, stylesheet, icon
    for asset in assets:
        assert asset.startswith("/static/swagger/")
        assert (await client.get(asset)).status_code == 200, asset
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/redoc")).status_code == 404  # ReDoc would need a CDN


async def test_face_check_sandbox_contract_is_in_the_api_description(client):
    operation = (await client.get("/openapi.json")).json()["paths"]["/api/v1/me/patients/{patient_id}/verify"]["post"]
    text = operation["description"]
    assert "`pass`" in text and "face_mismatch" in text and "GUAHAO_FACE_CHECK_PROVIDER" in text


# --- switched-off providers -----------------------------------------------------------------

async def test_without_an_sms_gateway_login_codes_answer_503(settings, clock):
    app = create_app(settings.model_copy(update={"sms_provider": "none"}), clock=clock)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            r = await c.post("/api/v1/auth/sms-codes", json={"phone": "13700009999"})
        assert r.status_code == 503 and r.json()["code"] == "sms_unavailable"
    finally:
        await app.state.db.dispose()


async def test_switched_off_providers_fail_clearly(settings):
    providers = build_providers(settings.model_copy(update={"sms_provider": "none", "face_check_provider": "none"}))
    with pytest.raises(face_check.FaceCheckNotConfigured):
        await providers["face_check"].verify(name="张三", id_number="x", liveness_token="pass")
    message = notifications_port.Sms(phone="+8613700009999", template="booking_confirmed", params={},
                                     locale="zh-CN", out_id="b1")
    with pytest.raises(notifications_port.SmsRejected):  # final: retrying cannot help
        await providers["notifications"].send(message)


async def test_sandbox_face_check_passes_by_token_prefix_only():
    sandbox = face_check.SandboxFaceCheck()
    assert (await sandbox.verify(name="a", id_number="b", liveness_token="pass-demo")).passed
    result = await sandbox.verify(name="a", id_number="b", liveness_token="fail")
    assert not result.passed and result.reason == "face_mismatch"


# --- the client address ---------------------------------------------------------------------

@pytest.mark.parametrize("peer,forwarded,expected", [
    ("10.0.0.2", "203.0.113.5", "203.0.113.5"),
    ("10.0.0.2", "198.51.100.66, 203.0.113.5, 10.0.0.9", "203.0.113.5"),  # left of the client: forged, ignored
    ("198.51.100.9", "203.0.113.5", "198.51.100.9"),  # not our proxy: its header means nothing
    ("10.0.0.2", "", "10.0.0.2"),
    ("10.0.0.2", "not-an-address, 203.0.113.5", "203.0.113.5"),
    ("10.0.0.2", "[2001:db8::7]:443", "2001:db8::7"),
    ("10.0.0.2", "203.0.113.5:5123", "203.0.113.5"),
])
def test_client_address_walks_only_trusted_hops(peer, forwarded, expected):
    assert TrustedProxies(["10.0.0.0/8"]).client_address(peer, forwarded) == expected


def _client(app, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_patients_behind_the_load_balancer_get_their_own_limits(settings, clock):
    app = create_app(settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"],
                                                 "sms_send_limit_per_client": "1/hour"}), clock=clock)

    async def send(c, phone: str, forwarded: str) -> int:
        r = await c.post("/api/v1/auth/sms-codes", json={"phone": phone}, headers={"X-Forwarded-For": forwarded})
        return r.status_code

    try:
        async with _client(app, "10.0.0.2") as balancer, _client(app, "198.51.100.9") as direct:
            assert await send(balancer, "13700000101", "203.0.113.5") == 202
            assert await send(balancer, "13700000102", "203.0.113.6") == 202  # another patient
            assert await send(balancer, "13700000103", "203.0.113.5") == 429  # the same patient again
            # a direct client cannot escape its bucket by inventing forwarded addresses
            assert await send(direct, "13700000104", "192.0.2.1") == 202
            assert await send(direct, "13700000105", "192.0.2.2") == 429
    finally:
        await app.state.db.dispose()


async def test_without_trusted_proxies_forwarded_headers_are_ignored(app):
    app.state.settings.sms_send_limit_per_client = "1/hour"
    async with _client(app, "10.0.0.2") as balancer:
        r1 = await balancer.post("/api/v1/auth/sms-codes", json={"phone": "13700000201"},
                                 headers={"X-Forwarded-For": "203.0.113.5"})
        r2 = await balancer.post("/api/v1/auth/sms-codes", json={"phone": "13700000202"},
                                 headers={"X-Forwarded-For": "203.0.113.6"})
    assert (r1.status_code, r2.status_code) == (202, 429)


# --- the secret key -------------------------------------------------------------------------

async def test_session_tokens_are_stored_keyed_and_a_new_secret_signs_everyone_out(client, db, clock):
    account_id, token = await make_account(db, clock.now())
    async with db.read() as s:
        row = (await s.execute(AuthSession.__table__.select().where(AuthSession.account_id == account_id))).one()
    assert row.token_hash != hashlib.sha256(token.encode()).hexdigest()  # not the unkeyed hash
    assert row.token_hash == accounts_service.token_hash(token)
    assert (await client.get("/api/v1/me", headers=auth(token))).status_code == 200
    signing.configure("a-rotated-secret-after-an-incident")
    try:
        assert (await client.get("/api/v1/me", headers=auth(token))).status_code == 401
    finally:
        signing.configure(TEST_SECRET_KEY)
    assert (await client.get("/api/v1/me", headers=auth(token))).status_code == 200


def test_csrf_tokens_are_bound_to_their_session():
    first, second = "session-token-one", "session-token-two"
    token = signing.csrf_token(first)
    assert signing.csrf_token_valid(first, token)
    assert not signing.csrf_token_valid(second, token)
    assert not signing.csrf_token_valid(first, "") and not signing.csrf_token_valid(first, None)
