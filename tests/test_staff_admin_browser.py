"""The admin, scheduler and operator journeys of the back office in a real browser: Debian's
Chromium (/usr/bin/chromium, never a downloaded one) driven by Playwright at a desktop
viewport (1366×900), zh-CN. axe-core (vendored, injected by the test) checks every page these
journeys visit for serious or critical violations; the pages send a strict CSP, so any inline
script or style would also break them here.

Screenshots go to $GUAHAO_WEB_SCREENSHOTS as staff-admin-*.png when set (docs/screenshots
was made that way), else to the test's temporary directory.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from guahao.booking import actions as booking_actions
from guahao.booking.models import Booking
from guahao.outbox.models import OutboxMessage
from guahao.scheduling.models import Schedule
from tests.booking_builders import make_patient
from tests.builders import make_account, make_department, make_doctor, make_hospital
from tests.paysim_fixture import free_port, http_server
from tests.staff_web_support import PASSWORD, make_staff_user
from tests.web_support import CHROMIUM, CHROMIUM_ARGS, csp_reports, serious_violations, skip_without_browser

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
DESKTOP = {"width": 1366, "height": 900}
MONDAY = dt.date(2026, 11, 23)  # the Monday after the test clock's day


@pytest.fixture(scope="module")
async def chromium():
    skip_without_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def served(app):
    port = free_port()
    async with http_server(app, port):
        yield f"http://127.0.0.1:{port}"


class Desk:
    """One desktop browser on the back office: navigation, axe on every page, screenshots."""

    def __init__(self, page, base: str, shots: Path) -> None:
        self.page, self.base, self.shots = page, base, shots
        self.blocked = csp_reports(page)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def check(self, name: str) -> None:
        await self.page.wait_for_load_state("load")
        bad = await serious_violations(self.page)
        assert not bad, (self.page.url, bad)
        assert not self.blocked, (self.page.url, self.blocked)
        await self.page.screenshot(path=str(self.shots / f"staff-admin-{name}.png"), full_page=True)

    async def login(self, username: str) -> None:
        await self.goto("/staff/login")
        await self.page.fill("#username", username)
        await self.page.fill("#password", PASSWORD)
        await self.page.click("#login")
        await self.page.wait_for_url(re.compile(r".*/staff/.*"))


@pytest.fixture
async def desk(chromium, served, tmp_path):
    wanted = os.environ.get("GUAHAO_WEB_SCREENSHOTS")
    shots = Path(wanted) if wanted else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    contexts = []

    async def open_() -> Desk:
        context = await chromium.new_context(viewport=DESKTOP, locale="zh-CN")
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(20_000)
        return Desk(page, served, shots)

    yield open_
    for context in contexts:
        await context.close()


async def _world(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now, name="北京协和医院")
    parent = await make_department(db, hid, name="内科")
    dep = await make_department(db, hid, name="心内科", parent_id=parent, location="门诊楼3层")
    doc = await make_doctor(db, hid, dep, name="张伟")
    return {"hid": hid, "dep": dep, "doc": doc, "now": now}


async def test_admin_sets_rules_with_the_live_preview_and_the_fee_table(app, db, clock, desk):
    w = await _world(db, clock)
    browser = await desk()
    page = browser.page
    await browser.login(await make_staff_user(db, w["now"], role="hospital_admin", hospital_id=w["hid"],
                                              name="管理员老李"))
    await browser.goto(f"/staff/hospitals/{w['hid']}/rules")
    await browser.check("01-rules")
    await page.fill("#f-hold_minutes", "25")
    await page.press("#f-hold_minutes", "Tab")
    await page.wait_for_function("() => document.querySelector('#preview-lines').textContent.includes('25')")
    await browser.check("02-rules-preview")
    await page.click("#save-rules")
    await page.wait_for_selector("#notice")
    assert await page.input_value("#f-hold_minutes") == "25"

    await browser.goto(f"/staff/hospitals/{w['hid']}/fees")
    await page.fill('input[name="expert__chief__reg"]', "30")
    await page.fill('input[name="expert__chief__cons"]', "20")
    await page.click("#save-fees")
    await page.wait_for_selector("#notice")
    assert await page.input_value('input[name="expert__chief__reg"]') == "30.00"
    await browser.check("03-fees")

    for path, name in ((f"/staff/hospitals/{w['hid']}/departments", "04-departments"),
                       (f"/staff/hospitals/{w['hid']}/doctors", "05-doctors"),
                       (f"/staff/hospitals/{w['hid']}/doctors/{w['doc']}", "06-doctor"),
                       (f"/staff/hospitals/{w['hid']}/departments/{w['dep']}", "07-department"),
                       ("/staff/audit", "08-audit")):
        await browser.goto(path)
        await browser.check(name)
    assert "hospital_rules.update" in await page.inner_text("#audit-entries")


async def test_admin_edits_the_waitlist_rules_and_sets_a_department_to_draw(app, db, clock, desk):
    from tests.booking_builders import make_schedule

    w = await _world(db, clock)
    schedule, _ = await make_schedule(db, w["now"], hospital_id=w["hid"], department_id=w["dep"], doctor_id=w["doc"],
                                      day=MONDAY, release_at=w["now"] + dt.timedelta(hours=2))
    browser = await desk()
    page = browser.page
    await browser.login(await make_staff_user(db, w["now"], role="hospital_admin", hospital_id=w["hid"],
                                              name="管理员老李"))
    await browser.goto(f"/staff/hospitals/{w['hid']}/waitlist-rules")
    await page.fill("#w-offer_minutes", "20")
    await page.uncheck("#w-lapse_counts_as_strike")
    await page.click("#save-waitlist-rules")
    await page.wait_for_selector("#notice")
    assert await page.input_value("#w-offer_minutes") == "20"
    assert not await page.is_checked("#w-lapse_counts_as_strike")
    await browser.check("17-waitlist-rules")

    await page.click('nav a[href$="/release-modes"]')
    await page.wait_for_selector(f"#department-mode-{w['dep']}")
    await page.select_option(f"#department-mode-{w['dep']} select", "draw")
    await page.click(f"#department-mode-{w['dep']} button")
    await page.wait_for_selector("#notice")
    assert await page.input_value(f"#department-mode-{w['dep']} select") == "draw"
    await browser.check("18-release-modes")
    async with db.read() as s:
        assert await s.scalar(select(Schedule.release_mode).where(Schedule.id == schedule)) == "draw"


async def _book(db, now, slot_id: int, *, pay: bool) -> int:
    account, _ = await make_account(db, now)
    patient = await make_patient(db, now, account)
    async with db.begin() as s:
        booking = await booking_actions.do_hold(s, account_id=account, patient_id=patient, slot_id=slot_id, now=now)
    if pay:
        async with db.begin() as s:
            await booking_actions.do_confirm(s, booking.id, now=now)
    return booking.id


async def test_scheduler_builds_generates_publishes_two_weeks_and_suspends_a_session(app, db, clock, desk):
    from guahao.scheduling import service as scheduling_service

    w = await _world(db, clock)
    browser = await desk()
    page = browser.page
    await browser.login(await make_staff_user(db, w["now"], role="scheduler", hospital_id=w["hid"], name="排班小周"))
    await browser.goto(f"/staff/hospitals/{w['hid']}/schedule-templates?department_id={w['dep']}")
    await browser.check("10-templates")
    await page.fill(f'input[name="c_{w["doc"]}_0_morning_p"]', "10")
    await page.fill(f'input[name="c_{w["doc"]}_0_morning_o"]', "2")
    await page.fill(f'input[name="c_{w["doc"]}_3_afternoon_p"]', "6")
    await page.click("#save-templates")
    await page.wait_for_selector("#notice")
    await page.fill("#gen-from", MONDAY.isoformat())
    await page.fill("#gen-to", (MONDAY + dt.timedelta(days=13)).isoformat())
    await page.click("#generate-button")
    await page.wait_for_selector("#publish-all")
    await browser.check("11-calendar-drafts")
    await page.click("#publish-all-button")
    await page.wait_for_selector("#notice")
    async with db.read() as s:
        sessions = list(await s.scalars(select(Schedule).where(Schedule.hospital_id == w["hid"])
                                        .order_by(Schedule.date, Schedule.starts_at)))
    assert len(sessions) == 4 and {x.status for x in sessions} == {"published"}
    await browser.check("12-calendar-published")

    first = sessions[0]
    async with db.read() as s:
        slots = await scheduling_service.list_slots(s, first.id, pool="platform")
    paid = await _book(db, w["now"], slots[0].id, pay=True)
    held = await _book(db, w["now"], slots[-1].id, pay=False)
    await page.reload()
    await page.click(f"#session-{first.id} a")
    await page.wait_for_selector("#suspend-form")
    await browser.check("13-session")
    await page.fill("#suspend-reason", "医生临时外出会诊")
    await page.click("#preview-suspend")
    await page.wait_for_selector("#impact")
    assert (await page.inner_text("#impact-bookings")).strip() == "2"
    await browser.check("14-suspend-preview")
    await page.click("#confirm-suspend")
    await page.wait_for_selector("#resume-form")
    await browser.check("15-suspended")
    async with db.read() as s:
        states = {b.id: b.state for b in await s.scalars(select(Booking).where(Booking.id.in_([paid, held])))}
        refunds = await s.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.topic == "payment.refund"))
    assert states == {paid: "revoked", held: "revoked"} and refunds == 1

    await browser.goto(f"/staff/hospitals/{w['hid']}/leave")
    await page.select_option("#leave-doctor", str(w["doc"]))
    await page.fill("#leave-from", MONDAY.isoformat())
    await page.fill("#leave-to", (MONDAY + dt.timedelta(days=13)).isoformat())
    await page.fill("#leave-reason", "年假")
    await page.click("#preview-leave")
    await page.wait_for_selector("#leave-confirm")
    assert (await page.inner_text("#impact-sessions")).strip() == "3"
    await browser.check("16-leave-preview")


async def test_operator_retries_a_dead_letter(app, db, clock, settings, desk):
    from guahao.jobs.runner import JobConfig, drain
    from guahao.outbox import service as outbox
    from guahao.outbox.registry import JobContext

    w = await _world(db, clock)
    async with db.begin() as s:
        await outbox.enqueue(s, topic="test.nobody_listens", dedupe_key="dead:browser", payload={"x": 1},
                             now=clock.now(), hospital_id=w["hid"])
    await drain(JobContext(db=db, clock=clock, settings=settings), config=JobConfig())
    async with db.read() as s:
        dead = await s.scalar(select(OutboxMessage).where(OutboxMessage.state == "dead"))
    browser = await desk()
    page = browser.page
    await browser.login(await make_staff_user(db, w["now"], role="platform_operator", hospital_id=None,
                                              name="运营小陈"))
    await browser.goto("/staff/operator/jobs")
    await browser.check("20-jobs")
    await page.click(f"#retry-{dead.id}")
    await page.wait_for_selector("#notice")
    assert await page.locator(f"#dead-{dead.id}").count() == 0
    async with db.read() as s:
        assert (await s.get(OutboxMessage, dead.id)).state == "pending"
    await browser.check("21-jobs-retried")
    for path, name in (("/staff/operator/hospitals", "22-hospitals"), (f"/staff/operator/hospitals/{w['hid']}",
                                                                     "25-hospital"),
                       ("/staff/operator/staff", "23-staff"), ("/staff/audit?action=job.retry", "24-audit")):
        await browser.goto(path)
        await browser.check(name)
    assert "job.retry" in await page.inner_text("#audit-entries")
