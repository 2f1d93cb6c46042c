"""What a stranger can cost us through the public notification URL: a body is refused (413)
once it passes the cap, before the rest is read; forged notifications are counted in one row
per hour and reason with a small sample kept, and beyond a rate limit answered 429 without
touching the database, while genuine notifications still get through. And the published
sandbox key is refused where real money could be at stake."""
from __future__ import annotations

import asyncio
import secrets

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from guahao.app import create_app
from guahao.config import Settings
from guahao.payments import provider as payment_provider
from guahao.payments import rejections, wire
from guahao.payments.fake import InMemoryPayments
from guahao.payments.models import PaymentNotification, RejectedNotificationCount
from guahao.payments.router import MAX_NOTIFICATION_BYTES
from tests.conftest import TEST_DATA_KEY, TEST_INDEX_KEY
from tests.payments_support import count_rows, get_booking, hold, make_world, new_patient, start_payment

NOTIFY = "/api/v1/payments/notify/paysim"


@pytest.fixture
def fake(app, clock) -> InMemoryPayments:
    port = InMemoryPayments(clock=clock)
    app.state.providers["payments"] = port
    return port


def _forged(clock, body: bytes = b'{"id":"x"}') -> dict[str, str]:
    headers = wire.sign("not-our-key", body, at=clock.now())
    headers[wire.H_SERIAL] = wire.key_serial(InMemoryPayments().key)  # claims our key
    return headers


async def test_a_body_over_the_cap_is_refused_413_before_the_rest_is_read(client, db, clock, fake):
    big = b"x" * (MAX_NOTIFICATION_BYTES + 1)
    declared = await client.post(NOTIFY, content=big, headers=_forged(clock, big))
    assert declared.status_code == 413
    assert declared.headers["content-type"].startswith("application/problem+json")
    assert declared.json()["code"] == "notification_too_large"

    pulled = 0

    async def endless():  # chunked, no Content-Length: only reading tells the size
        nonlocal pulled
        for _ in range(100_000):  # 1.6 GB if anybody read it all
            pulled += 1
            yield b"y" * 16384

    chunked = await client.post(NOTIFY, content=endless(), headers=_forged(clock))
    assert chunked.status_code == 413 and chunked.json()["code"] == "notification_too_large"
    assert pulled <= MAX_NOTIFICATION_BYTES // 16384 + 2

    at_cap = b"z" * MAX_NOTIFICATION_BYTES  # not too large: refused for its signature instead
    assert (await client.post(NOTIFY, content=at_cap, headers=_forged(clock, at_cap))).status_code == 401
    assert await count_rows(db, PaymentNotification) == 1  # only the last one reached the database


async def test_forged_notifications_are_counted_per_hour_and_only_a_sample_is_kept(client, db, clock, fake):
    before = REGISTRY.get_sample_value("guahao_payment_notifications_rejected_total",
                                       {"provider": "paysim", "reason": "signature_invalid"}) or 0
    n = rejections.SAMPLE_PER_HOUR + 15
    answers = await asyncio.gather(*(client.post(NOTIFY, content=b'{"id":"x"}', headers=_forged(clock))
                                     for _ in range(n)))
    assert {r.status_code for r in answers} == {401}
    assert await count_rows(db, PaymentNotification) == rejections.SAMPLE_PER_HOUR
    async with db.read() as s:
        buckets = [(b.reason, b.hour, b.count) for b in await s.scalars(select(RejectedNotificationCount))]
    assert buckets == [("signature_invalid", rejections.hour_of(clock.now()), n)]
    after = REGISTRY.get_sample_value("guahao_payment_notifications_rejected_total",
                                      {"provider": "paysim", "reason": "signature_invalid"})
    assert after - before == n

    clock.advance(hours=1)
    fake.clock = clock
    assert (await client.post(NOTIFY, content=b'{"id":"x"}', headers=_forged(clock))).status_code == 401
    async with db.read() as s:
        counts = sorted(b.count for b in await s.scalars(select(RejectedNotificationCount)))
    assert counts == [1, n]  # a new hour, a new bucket, a new sample
    assert await count_rows(db, PaymentNotification) == rejections.SAMPLE_PER_HOUR + 1


async def test_forgeries_beyond_the_rate_limit_get_429_without_database_work_and_genuine_ones_pass(
        client, db, clock, fake, monkeypatch):
    monkeypatch.setattr(rejections, "DEFAULT_LIMIT", "5/minute")
    answers = await asyncio.gather(*(client.post(NOTIFY, content=b'{"id":"x"}', headers=_forged(clock))
                                     for _ in range(12)))
    codes = sorted(r.status_code for r in answers)
    # at least the requests beyond the limit are refused (exactly 7 once the limiter counts
    # atomically under concurrency: issue 7's rate-limit item)
    assert codes.count(429) >= 1 and set(codes) <= {401, 429}, codes
    limited = next(r for r in answers if r.status_code == 429)
    assert limited.headers["content-type"].startswith("application/problem+json")
    async with db.read() as s:
        counted = await s.scalar(select(RejectedNotificationCount.count))
    assert counted == codes.count(401)  # a refused forgery did no database work

    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    headers, body = fake.pay(no)
    assert (await client.post(NOTIFY, content=body, headers=headers)).status_code == 200
    assert (await get_booking(db, booking_id)).state == "confirmed"


class _Configured:
    payment_provider = "paysim"
    paysim_url = None
    paysim_key = None
    payment_timeout_seconds = 1.0
    env = "production"


def test_the_published_sandbox_key_is_refused_outside_development(tmp_path):
    for kind in ("paysim", "fake"):
        for key in (None, payment_provider.DEV_PAYSIM_KEY):
            settings = type("S", (_Configured,), {"payment_provider": kind, "paysim_key": key})()
            with pytest.raises(payment_provider.PaymentConfigError, match="GUAHAO_PAYSIM_KEY|fake"):
                payment_provider.build(settings)
    secret = type("S", (_Configured,), {"paysim_key": secrets.token_urlsafe(24)})()
    assert payment_provider.build(secret) is not None
    faked = type("S", (_Configured,), {"payment_provider": "fake", "paysim_key": secrets.token_urlsafe(24)})()
    with pytest.raises(payment_provider.PaymentConfigError, match="fake"):
        payment_provider.build(faked)
    for env in ("development", "test"):
        assert payment_provider.build(type("S", (_Configured,), {"env": env})()) is not None
    assert payment_provider.build(type("S", (_Configured,), {"payment_provider": "none"})()) is None

    # the whole app refuses to start in production with the published key
    production = Settings(env="production", database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db", data_key=TEST_DATA_KEY,
                          index_key=TEST_INDEX_KEY, secret_key=secrets.token_urlsafe(32),
                          payment_provider="paysim", paysim_key=payment_provider.DEV_PAYSIM_KEY,
                          sms_provider="none", face_check_provider="none")
    with pytest.raises(payment_provider.PaymentConfigError):
        create_app(production, clock=None)
