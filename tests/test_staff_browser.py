"""The back office in a real browser: Debian's Chromium (/usr/bin/chromium) at a desktop
1366x900, zh-CN, driven by Playwright against our app served over HTTP. The front desk's
day: log in, find a patient by ID number, reveal, check them in, void another booking with
refund, register a walk-in; then the admin's pages. axe-core (vendored, injected by the test)
checks every staff page visited for serious or critical violations.

Screenshots go to $GUAHAO_WEB_SCREENSHOTS when set (docs/screenshots/staff-*.png are made
this way, see README), else to the test's temporary directory.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from guahao.booking.models import Booking
from guahao.core.audit import AuditEntry
from guahao.outbox.models import OutboxMessage
from tests.booking_builders import make_id_number
from tests.conftest import remember_sensitive
from tests.paysim_fixture import free_port, http_server
from tests.staff_web_support import PASSWORD, front_desk_world
from tests.web_support import CHROMIUM, CHROMIUM_ARGS, csp_reports, serious_violations, skip_without_browser

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
DESKTOP = {"width": 1366, "height": 900}


@pytest.fixture(scope="session")
async def chromium():
    skip_without_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class Desk:
    """One desktop browser on the back office: navigation, axe on every page, screenshots."""

    def __init__(self, page, base: str, shots: Path) -> None:
        self.page, self.base, self.shots = page, base, shots
        self.checked: list[str] = []
        self.blocked = csp_reports(page)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def check(self, name: str) -> None:
        await self.page.wait_for_load_state("load")
        bad = await serious_violations(self.page)
        assert not bad, (self.page.url, bad)
        assert not self.blocked, (self.page.url, self.blocked)
        self.checked.append(self.page.url.split("?")[0])
        await self.page.screenshot(path=str(self.shots / f"staff-{name}.png"), full_page=True)

    async def login(self, username: str) -> None:
        await self.goto("/staff/login")
        await self.page.fill("#username", username)
        await self.page.fill("#password", PASSWORD)
        await self.page.click("#login")
        await self.page.wait_for_selector("#staff-user")


@pytest.fixture
async def open_desk(chromium, app, tmp_path):
    wanted = os.environ.get("GUAHAO_WEB_SCREENSHOTS")
    shots = Path(wanted) if wanted else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    contexts = []
    async with http_server(app, port):
        async def open_() -> Desk:
            context = await chromium.new_context(viewport=DESKTOP, locale="zh-CN")
            contexts.append(context)
            page = await context.new_page()
            page.set_default_timeout(20_000)
            return Desk(page, f"http://127.0.0.1:{port}", shots)

        yield open_
        for context in contexts:
            await context.close()


async def test_front_desk_checks_in_voids_and_registers_a_walk_in(app, db, clock, open_desk):
    w = await front_desk_world(db, clock)
    hid, (first, second) = w["hospital_id"], w["bookings"]
    desk = await open_desk()
    page = desk.page
    await desk.goto("/staff/login")
    await desk.check("01-login")
    await desk.login(w["users"]["front_desk"])
    await page.wait_for_selector(f"#roster-{w['schedule_id']}")
    await desk.check("02-window")

    # find the first patient by ID number (htmx swaps the results in), open, reveal, check in
    await page.fill("#q", w["id_numbers"][0])
    await page.click("#search")
    await page.wait_for_selector("#results-table")
    await desk.check("03-found")
    assert w["id_numbers"][0] not in await page.inner_text("#results")
    await page.click(f"#results-table a[href$='/bookings/{first}']")
    await page.wait_for_selector("#reveal")
    await desk.check("04-booking")
    await page.click("#reveal")
    await page.wait_for_selector("#revealed")
    assert await page.inner_text("#revealed-name") == "钱多多"
    assert await page.inner_text("#revealed-id") == w["id_numbers"][0]
    await desk.check("05-revealed")
    await page.fill("#id_number", w["id_numbers"][0])
    await page.click("#check-in")
    await page.wait_for_selector("#complete")
    assert "已签到" in await page.inner_text("#notice")
    assert w["id_numbers"][0] not in await page.content()  # the reveal was for that answer only
    await desk.check("06-checked-in")

    # void the other booking, found by its booking code as a scanner would type it
    await desk.goto(f"/staff/hospitals/{hid}/window")
    await page.fill("#q", w["codes"][1])
    await page.click("#search")
    await page.click(f"#results-table a[href$='/bookings/{second}']")
    await page.fill("#reason", "患者到窗口要求退号")
    await page.click("#void")
    await page.wait_for_selector("#notice")
    assert "作废" in await page.inner_text("#notice")
    await desk.check("07-voided")

    # a walk-in into the on-site pool
    number = make_id_number()
    remember_sensitive(number, "13700001111", "猪八戒")
    await desk.goto(f"/staff/hospitals/{hid}/walk-in")
    await desk.check("08-walk-in")
    await page.fill("#name", "猪八戒")
    await page.fill("#wi_id_number", number)
    await page.fill("#phone", "13700001111")
    await page.click("#register-walk-in")
    await page.wait_for_selector("#notice")
    assert await page.inner_text("#visit-no") == "5"
    await desk.check("09-walk-in-done")
    await desk.goto(f"/staff/hospitals/{hid}/window")
    await desk.check("10-window-after")
    roster = await page.inner_text(f"#roster-{w['schedule_id']}")
    assert "猪*" in roster and "猪八戒" not in roster

    async with db.read() as s:
        states = dict((await s.execute(select(Booking.id, Booking.state).where(Booking.id.in_([first, second])))).all())
        refund = await s.scalar(select(OutboxMessage.id).where(OutboxMessage.topic == "payment.refund",
                                                               OutboxMessage.dedupe_key.like(f"%:{second}")))
        actions = list(await s.scalars(select(AuditEntry.action)))
    assert states == {first: "checked_in", second: "cancelled"} and refund is not None
    assert {"booking.reveal", "booking.check_in_identity", "booking.void", "booking.walk_in"} <= set(actions)


async def test_admin_pages_pass_axe(app, db, clock, open_desk):
    w = await front_desk_world(db, clock)
    hid = w["hospital_id"]
    desk = await open_desk()
    await desk.login(w["users"]["hospital_admin"])
    await desk.check("11-reports")
    await desk.goto(f"/staff/hospitals/{hid}/reports?group=doctor")
    await desk.check("12-reports-by-doctor")
    await desk.goto(f"/staff/hospitals/{hid}/restrictions")
    await desk.check("13-restrictions")
    await desk.page.fill(f"#lift-{w['restriction_id']}", "核实后解除")
    await desk.page.click(f"#restriction-{w['restriction_id']} button")
    await desk.page.wait_for_selector("#notice")
    await desk.goto("/staff/password")
    await desk.check("14-password")
    await desk.goto("/staff/totp")
    await desk.check("15-totp")
    await desk.page.click("#totp-enroll button")
    await desk.page.wait_for_selector("#totp-qr")
    await desk.check("16-totp-qr")
    await desk.goto("/staff/no-such-page")
    await desk.check("17-not-found")
