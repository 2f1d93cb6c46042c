"""A patient enters a draw on a phone (390x844), waits for the result and sees it; axe and the
CSP checks on every page (tests/test_web_browser.py's Phone). Screenshots draw-01 to draw-04."""
from __future__ import annotations

import datetime as dt

import pytest

from guahao.draw import allocation
from tests.draw_support import draw_row, draw_world
from tests.paysim_fixture import *  # noqa: F403
from tests.test_web_browser import _add_and_verify_patient, _login, chromium, open_phone  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


async def test_patient_enters_a_draw_and_sees_the_result_on_a_phone(app, db, clock, open_phone):
    world = await draw_world(db, clock, capacity=3, window=30)
    phone = await open_phone("zh-CN")
    page = phone.page
    try:
        await _login(phone, app)
        await _add_and_verify_patient(phone)
        await phone.goto(f"/schedules/{world.schedule_id}/draw")
        assert await page.is_disabled("#enter-draw")  # before the window: the countdown to it
        clock.set(world.release_at + dt.timedelta(seconds=3))
        day = (world.release_at + dt.timedelta(days=3)).astimezone(dt.timezone(dt.timedelta(hours=8))).date()
        await phone.goto(f"/departments/{world.department_id}?day={day.isoformat()}")
        await page.click(f"#draw-link-{world.schedule_id}")
        await page.wait_for_selector("#draw-form")
        assert "摇号" in await page.inner_text("#draw-rules") or "摇号" in await page.inner_text("h1")
        await page.check("#waitlist_opt_in")
        await phone.check("draw-01-open")
        await page.click("#enter-draw")
        await page.wait_for_selector("#entered")
        assert await page.inner_text("#my-entries .receipt")
        await phone.check("draw-02-entered")
        clock.set((await draw_row(db, world)).result_at)
        assert await allocation.run(db, world.draw_id, now_fn=clock.now) == "allocated"
        await phone.goto(f"/schedules/{world.schedule_id}/draw")
        await page.wait_for_selector('[data-outcome="won"]')
        assert await page.is_visible("#secret")
        await phone.check("draw-03-result")
        await page.click("#pay-won")
        await page.wait_for_selector("#pay-form")
        await phone.check("draw-04-pay")
    finally:
        await page.context.close()
