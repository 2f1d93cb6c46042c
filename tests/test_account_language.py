"""The language chosen on the web is saved on the account: pages on another device follow it,
API messages follow it when the client sends no Accept-Language (an explicit one wins), and
the SMS notices go out in it. The default zh-CN is no choice: a browser's Accept-Language
still decides for an account that never chose."""
from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from guahao.accounts.models import Account
from guahao.booking import actions
from guahao.core.deps import SESSION_COOKIE
from guahao.notifications import jobs as notify_jobs
from guahao.notifications.port import RecordingNotifier
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import JobContext
from tests.booking_builders import make_patient
from tests.web_support import login_with_forms, make_world

pytestmark = pytest.mark.timeout(120)


def _browser(app, accept_language: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver",
                             headers={"Accept": "text/html", "Accept-Language": accept_language})


async def _account(db) -> Account:
    """The account logged in on the web: the newest one (make_world's booker comes before)."""
    async with db.read() as s:
        return await s.scalar(select(Account).order_by(Account.id.desc()).limit(1))


async def test_the_switch_is_saved_on_the_account_and_followed_everywhere(app, db, clock, settings):
    async with _browser(app, "zh-CN") as phone:
        await login_with_forms(phone, app)
        assert '<html lang="zh-CN">' in (await phone.get("/bookings")).text
        switched = await phone.get("/settings/lang", params={"to": "en", "next": "/bookings"})
        assert switched.status_code == 303
        assert '<html lang="en">' in (await phone.get("/bookings")).text
        token = phone.cookies[SESSION_COOKIE]
    account = await _account(db)
    assert (account.locale, account.locale_chosen) == ("en", True)

    # another browser of the same account, in Chinese, without the language cookie
    async with _browser(app, "zh-CN,zh;q=0.9") as laptop:
        laptop.cookies.set(SESSION_COOKIE, token)
        assert '<html lang="en">' in (await laptop.get("/bookings")).text
        # its own switch wins for that browser (and is saved again)
        await laptop.get("/settings/lang", params={"to": "zh-CN", "next": "/"})
        assert '<html lang="zh-CN">' in (await laptop.get("/bookings")).text
    assert (await _account(db)).locale == "zh-CN"


async def test_an_account_that_never_chose_follows_the_browser(app, db, clock):
    async with _browser(app, "en-GB,en;q=0.9") as browser:
        await login_with_forms(browser, app)
        assert '<html lang="en">' in (await browser.get("/bookings")).text
    assert (await _account(db)).locale_chosen is False


async def test_a_choice_made_before_logging_in_is_kept(app, db, clock):
    async with _browser(app, "zh-CN") as browser:
        await browser.get("/settings/lang", params={"to": "en", "next": "/"})
        await login_with_forms(browser, app)
    account = await _account(db)
    assert (account.locale, account.locale_chosen) == ("en", True)


async def test_api_messages_use_the_saved_language_unless_the_client_asks(app, db, clock, client):
    async with _browser(app, "zh-CN") as browser:
        await login_with_forms(browser, app)
        await browser.get("/settings/lang", params={"to": "en", "next": "/"})
        token = browser.cookies[SESSION_COOKIE]
    bearer = {"Authorization": f"Bearer {token}"}
    missing = await client.get("/api/v1/bookings/999999", headers=bearer)
    assert missing.status_code == 404 and missing.json()["detail"] == "That booking does not exist."
    assert missing.headers["content-language"] == "en"
    asked = await client.get("/api/v1/bookings/999999", headers={**bearer, "Accept-Language": "zh-CN"})
    assert asked.json()["detail"] == "找不到该挂号单。"
    # a refusal rendered inside the route (the hold), not by the error handler
    hold = await client.post("/api/v1/bookings", headers={**bearer, "Idempotency-Key": "lang-1"},
                             json={"slot_id": 999999, "patient_id": 1})
    assert hold.status_code == 404 and "does not exist" in hold.json()["detail"]
    anonymous = await client.get("/api/v1/hospitals/999999")
    assert anonymous.json()["detail"] == "找不到该医院。"  # no account, no header: the default


async def test_sms_notices_go_out_in_the_language_chosen_on_the_web(app, db, clock, settings):
    world = await make_world(db, clock)
    async with _browser(app, "zh-CN") as browser:
        await login_with_forms(browser, app)
        await browser.get("/settings/lang", params={"to": "en", "next": "/"})
    account = await _account(db)
    patient = await make_patient(db, clock.now(), account.id)
    async with db.begin() as s:
        booking = await actions.do_hold(s, account_id=account.id, patient_id=patient, slot_id=world["slot"],
                                        now=clock.now())
    async with db.begin() as s:
        await actions.do_confirm(s, booking.id, now=clock.now())
    async with db.read() as s:
        payload = await s.scalar(select(OutboxMessage.payload).where(OutboxMessage.topic == "notify.booking_confirmed"))
    notifier = RecordingNotifier()
    ctx = JobContext(db=db, clock=clock, settings=settings, providers={"notifications": notifier})
    await notify_jobs.booking_confirmed(ctx, payload)
    assert [m.locale for m in notifier.sent] and all(m.locale == "en" for m in notifier.sent)
    assert notifier.sent[0].text.startswith("Booking confirmed")
