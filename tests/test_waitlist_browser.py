"""A patient joins the 候补 queue of a sold-out clinic on a phone (390x844), zh-CN and en, with
axe and the CSP check on every page: the confirm page offers the waitlist, the join page shows
the rules, my waitlist shows the position (前面还有 N 人), leaving is one tap."""
from __future__ import annotations

import pytest

from tests.paysim_fixture import *  # noqa: F403
from tests.test_web_browser import _add_and_verify_patient, _login, chromium, open_phone  # noqa: F401
from tests.waitlist_support import join, new_patient
from tests.web_support import make_world

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
TEXT = {"zh-CN": {"ahead": "前面还有 1 人", "left": "已退出候补", "rules": "候补规则"},
        "en": {"ahead": "1 people ahead of you", "left": "You left the waitlist", "rules": "Waitlist rules"}}


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
async def test_patient_joins_the_waitlist_of_a_sold_out_clinic_on_a_phone(locale, app, db, clock, open_phone):
    world = await make_world(db, clock)
    full = world["schedules"][1]
    someone, _, their_patient = await new_patient(db, clock)
    await join(db, clock, someone, their_patient, full)  # one person is already waiting
    phone = await open_phone(locale, "" if locale == "zh-CN" else "-en")
    page = phone.page
    try:
        await _login(phone, app)
        await _add_and_verify_patient(phone)
        await phone.goto(f"/book/{world['full_slot']}")
        await page.wait_for_selector("#join-waitlist-link")
        await phone.check("37-waitlist-sold-out")
        await page.click("#join-waitlist-link")
        await page.wait_for_selector("#waitlist-form")
        assert TEXT[locale]["rules"] in await page.inner_text("#waitlist-rules")
        await phone.check("38-waitlist-join")
        await page.click("#join-waitlist")
        await page.wait_for_selector(".waitlist-ahead")
        assert await page.inner_text(".waitlist-ahead") == TEXT[locale]["ahead"]
        await phone.check("39-waitlist-mine")
        await page.click("[id^=leave-]")
        await page.wait_for_selector(".waitlist-state.muted")
        assert TEXT[locale]["left"] in await page.inner_text(".waitlist-state")
        await phone.check("40-waitlist-left")
    finally:
        await page.context.close()
