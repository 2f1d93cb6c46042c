"""The patient pages in a real browser: Debian's Chromium (/usr/bin/chromium, never a
downloaded one) at 390x844, driven by Playwright; our app served over HTTP and paying through
the sandbox process, whose cashier page the browser clicks through. axe-core (vendored,
injected by the test) checks every page visited for serious or critical violations.

Skipped, with a message naming the packages, when /usr/bin/chromium is missing; .ci/run
installs them and fails when these tests were skipped.

Screenshots of each step are written to $GUAHAO_WEB_SCREENSHOTS when set (docs/screenshots
is made this way, see README), else to the test's temporary directory.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from guahao.booking.models import Booking
from tests.payments_support import run_jobs
from tests.paysim_fixture import *  # noqa: F403
from tests.web_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DAY_FULL,
    DAY_OK,
    DAY_SOON,
    PHONE,
    RELEASE_IN,
    csp_reports,
    make_world,
    new_person,
    serious_violations,
    skip_without_browser,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

TEXT = {
    "zh-CN": {"confirmed": "预约成功", "cancelled": "已取消", "full": "已约满", "soon": "未放号",
              "sold_out": "该时段号源已约满", "elder": "长辈模式"},
    "en": {"confirmed": "Confirmed", "cancelled": "Cancelled", "full": "Fully booked", "soon": "Not yet released",
           "sold_out": "This slot is fully booked", "elder": "Elderly mode"},
}


@pytest.fixture(scope="session")
async def chromium():
    skip_without_browser()
    from playwright.async_api import async_playwright

    # launch() gives the browser a fresh temporary profile (user-data-dir) that it removes at exit
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class Phone:
    """One phone browser on our app: navigation, axe on every page, screenshots."""

    def __init__(self, page, base: str, shots: Path, tag: str) -> None:
        self.page, self.base, self.shots, self.tag = page, base, shots, tag
        self.checked: list[str] = []
        self.blocked = csp_reports(page)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def check(self, name: str) -> None:
        """The page now shown: no serious/critical axe violation, and a screenshot."""
        await self.page.wait_for_load_state("load")
        bad = await serious_violations(self.page)
        assert not bad, (self.page.url, bad)
        assert not self.blocked, (self.page.url, self.blocked)
        self.checked.append(self.page.url)
        await self.page.screenshot(path=str(self.shots / f"{name}{self.tag}.png"))


def _shots_dir(tmp_path: Path) -> Path:
    wanted = os.environ.get("GUAHAO_WEB_SCREENSHOTS")
    path = Path(wanted) if wanted else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def open_phone(chromium, live_app, our_port, tmp_path):
    contexts = []

    async def open_(locale: str = "zh-CN", tag: str = "") -> Phone:
        context = await chromium.new_context(viewport={"width": PHONE[0], "height": PHONE[1]}, is_mobile=True,
                                             has_touch=True, device_scale_factor=2, locale=locale)
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(20_000)
        return Phone(page, f"http://127.0.0.1:{our_port}", _shots_dir(tmp_path), tag)

    yield open_
    for context in contexts:
        await context.close()


async def _login(phone: Phone, app, number: str = "13800138000") -> None:
    await phone.goto("/login")
    await phone.check("01-login")
    await phone.page.fill("#phone", number)
    await phone.page.click("#send-code")
    await phone.page.wait_for_selector("#code-sent")
    await phone.page.fill("#code", app.state.sms.last_code("+86" + number))
    await phone.page.check("#consent")
    await phone.page.click("#login")
    await phone.page.wait_for_url(phone.base + "/")


async def _add_and_verify_patient(phone: Phone) -> None:
    person = new_person()
    await phone.goto("/patients/new")
    await phone.check("02-patient-add")
    await phone.page.fill("#name", person["name"])
    await phone.page.fill("#id_number", person["id_number"])
    await phone.page.fill("#phone", person["phone"])
    await phone.page.check("#consent_id")
    await phone.page.click("#save-patient")
    await phone.page.wait_for_selector("#sandbox-note")
    await phone.check("03-patient-verify")
    await phone.page.click("#verify-pass")
    await phone.page.wait_for_selector(".patient .badge_ok")
    await phone.check("04-patients")
    html = await phone.page.content()
    assert person["id_number"] not in html and person["phone"] not in html


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
async def test_patient_books_pays_and_cancels_on_a_phone(locale, app, db, clock, open_phone, job_ctx):
    text = TEXT[locale]
    world = await make_world(db, clock)
    phone = await open_phone(locale, "" if locale == "zh-CN" else "-en")
    page = phone.page
    try:
        await _login(phone, app)
        await phone.check("05-home")
        await _add_and_verify_patient(phone)

        await phone.goto("/")
        await page.fill("#q", "xnk")  # initials: htmx asks as the patient types
        await page.wait_for_selector(".result-department")
        await phone.check("06-search")
        await page.click(".result-department")
        await page.wait_for_url(re.compile(rf".*/departments/{world['department']}$"))
        await page.click(f'[data-day="{DAY_OK.isoformat()}"]')
        await page.wait_for_selector(f'[data-slot="{world["slot"]}"] .slot__btn')
        await phone.check("07-department")
        await page.click(f'[data-slot="{world["slot"]}"] .slot__btn')
        await page.wait_for_selector("#confirm-form")
        await phone.check("08-confirm")
        await page.click("#submit-booking")
        await page.wait_for_selector("#pay-form")
        assert await page.inner_text("#amount-due") == "¥15.00"
        await phone.check("09-pay")
        await page.check('input[value="wechat"]')
        await page.click("#pay")

        # the sandbox's cashier (another process): pay, then "返回商户页面" back to us
        await page.wait_for_selector("button.pay")
        await page.click("button.pay")
        await page.click("text=返回商户页面")
        await page.wait_for_url(re.compile(r".*/bookings/\d+$"))
        await page.wait_for_selector("#visit-no", timeout=40_000)  # htmx polls until the notification came
        assert (await page.inner_text("#booking .state")).strip() == text["confirmed"]
        assert await page.evaluate("document.getElementById('qr').naturalWidth") > 0
        code = (await page.inner_text("#booking-code")).strip()
        assert re.fullmatch(r"\d{8}", code)
        await phone.check("10-confirmed")

        await page.click("#cancel")
        await page.wait_for_selector("#cancel-form")
        await phone.check("11-cancel")
        await page.click("#confirm-cancel")
        await page.wait_for_url(re.compile(r".*/bookings/\d+\?cancelled=1$"))
        assert (await page.inner_text("#booking .state")).strip() == text["cancelled"]
        assert await run_jobs(job_ctx, "payment.refund") == [("payment.refund", "done")]
        await page.reload()
        assert "¥15.00" in await page.inner_text("#refunded")
        await phone.check("12-refunded")
        await phone.goto("/bookings")
        await phone.check("13-bookings")
    finally:
        await page.context.close()


async def test_a_sold_out_slot_cannot_be_booked(app, db, clock, open_phone):
    world = await make_world(db, clock)
    phone = await open_phone()
    page = phone.page
    try:
        await _login(phone, app)
        await _add_and_verify_patient(phone)
        await phone.goto(f"/departments/{world['department']}?day={DAY_FULL.isoformat()}")
        slot = page.locator(f'[data-slot="{world["full_slot"]}"]')
        assert await slot.get_attribute("data-state") == "full"
        assert TEXT["zh-CN"]["full"] in await slot.inner_text()
        assert await slot.locator(".slot__btn").count() == 0
        await phone.check("14-sold-out")
        # a stale page (or a typed URL) still gets the API's refusal, as a message
        await phone.goto(f"/book/{world['full_slot']}")
        await page.click("#submit-booking")
        await page.wait_for_selector("#form-error")
        assert TEXT["zh-CN"]["sold_out"] in await page.inner_text("#form-error")
        await phone.check("15-refused")
    finally:
        await page.context.close()


async def test_a_slot_not_yet_released_shows_its_release_time_and_counts_down(app, db, clock, open_phone):
    world = await make_world(db, clock)
    phone = await open_phone()
    page = phone.page
    try:
        await phone.goto(f"/departments/{world['department']}?day={DAY_SOON.isoformat()}")
        slot = page.locator(f'[data-slot="{world["soon_slot"]}"]')
        assert await slot.get_attribute("data-state") == "not_yet_released"
        assert await page.get_attribute(f'[data-day="{DAY_SOON.isoformat()}"]', "data-state") == "not_yet_released"
        assert "2026-11-19" in await slot.inner_text() and "12:00" in await slot.inner_text()  # 10:00 Shanghai + 2 h
        countdown = slot.locator(".countdown")
        assert await countdown.get_attribute("data-countdown") == str(int(RELEASE_IN.total_seconds()))
        await page.wait_for_function("el => /^[12]:\\d\\d:\\d\\d$/.test(el.textContent)",
                                     arg=await countdown.element_handle())
        assert await slot.locator(".slot__btn").count() == 0
        await phone.check("16-not-yet-released")
    finally:
        await page.context.close()


async def test_a_double_tap_on_confirm_books_once(app, db, clock, open_phone):
    world = await make_world(db, clock)
    phone = await open_phone()
    page = phone.page
    try:
        await _login(phone, app)
        await _add_and_verify_patient(phone)
        await phone.goto(f"/book/{world['slot']}")
        # two submits of the same page at once (what a double tap sends), then a real double click
        landed = await page.evaluate("""async () => {
            const f = document.getElementById('confirm-form');
            const send = () => fetch(f.action, {method: 'POST', body: new URLSearchParams(new FormData(f))});
            const answers = await Promise.all([send(), send()]);
            return answers.map(a => a.url);
        }""")
        assert len(set(landed)) == 1 and re.search(r"/bookings/\d+/pay$", landed[0])
        await page.dblclick("#submit-booking")
        await page.wait_for_url(re.compile(r".*/bookings/\d+/pay$"))
        assert page.url == landed[0]
        async with db.read() as s:
            count = await s.scalar(select(func.count()).select_from(Booking).where(Booking.slot_id == world["slot"]))
        assert count == 1
    finally:
        await page.context.close()


async def test_elderly_mode_enlarges_type_and_targets_and_is_remembered(app, db, clock, open_phone):
    world = await make_world(db, clock)
    phone = await open_phone()
    page = phone.page
    try:
        await phone.goto(f"/departments/{world['department']}?day={DAY_OK.isoformat()}")
        normal = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
        await page.click("#elder-switch")
        await page.wait_for_selector("body.elder")
        await phone.goto(f"/departments/{world['department']}?day={DAY_OK.isoformat()}")  # remembered
        assert await page.evaluate("document.body.classList.contains('elder')")
        assert await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= max(20, normal + 4)
        box = await page.locator(".slot__btn").first.bounding_box()
        assert box["height"] >= 60
        await phone.check("17-elderly")
    finally:
        await page.context.close()


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
async def test_the_other_pages_pass_axe_too(locale, app, db, clock, open_phone):
    """The journey checks the pages it passes; these are the rest, in both languages."""
    world = await make_world(db, clock)
    phone = await open_phone(locale, "" if locale == "zh-CN" else "-en")
    page = phone.page
    try:
        await phone.goto("/no-such-page")
        await phone.check("18-not-found")
        await _login(phone, app)
        await _add_and_verify_patient(phone)
        patient = await page.get_attribute(".patient", "data-patient")
        for name, path in (("19-hospital", f"/hospitals/{world['hospital']}"),
                           ("20-doctor", f"/doctors/{world['doctor']}"),
                           ("21-search-empty", "/search?q=zzzzzz"),
                           ("22-me", "/me"), ("23-patient-edit", f"/patients/{patient}"),
                           ("24-bookings-empty", "/bookings"),
                           ("25-parent-department", f"/departments/{world['parent']}")):
            await phone.goto(path)
            await phone.check(name)
        assert len(phone.checked) >= 11
    finally:
        await page.context.close()
