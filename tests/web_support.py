"""Shared steps of the patient-page tests: a hospital with a bookable, a sold-out and a
not-yet-released clinic; logging in through the pages; reading a form's CSRF token; and, for
the browser tests, Chromium from Debian (never a downloaded browser) and axe-core."""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import update

from guahao.catalog.models import Hospital
from tests.booking_builders import make_id_number, make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital
from tests.conftest import remember_sensitive

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MISSING_BROWSER = ("browser tests skipped: /usr/bin/chromium is missing; install it with "
                   "`apt-get install chromium fonts-wqy-microhei`")
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
PHONE = (390, 844)

DAY_OK = dt.date(2026, 11, 21)      # two days after the test clock (a Thursday, 10:00 in Shanghai)
DAY_FULL = dt.date(2026, 11, 22)
DAY_SOON = dt.date(2026, 11, 26)
RELEASE_IN = dt.timedelta(hours=2)  # the not-yet-released clinic opens two hours after "now"
FEE = 1500


def browser_available() -> bool:
    return os.path.exists(CHROMIUM) and shutil.which(CHROMIUM) is not None


async def make_world(db, clock) -> dict:
    now = clock.now()
    hid = await make_hospital(db, now, name="北京协和医院")
    async with db.begin() as s:
        await s.execute(update(Hospital).where(Hospital.id == hid).values(short_name="协和"))
    parent = await make_department(db, hid, name="内科")
    dep = await make_department(db, hid, name="心内科", parent_id=parent, location="门诊楼3层")
    doc = await make_doctor(db, hid, dep, name="张伟")
    ok, ok_slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY_OK,
                                       capacity=5, bands=2)
    full, full_slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                           day=DAY_FULL, capacity=1)
    soon, soon_slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                           day=DAY_SOON, capacity=5, release_at=now + RELEASE_IN)
    # someone else took the only seat of DAY_FULL
    from guahao.booking import actions as booking_actions

    other, _ = await make_account(db, now)
    other_patient = await make_patient(db, now, other, name="赵六")
    async with db.begin() as s:
        await booking_actions.do_hold(s, account_id=other, patient_id=other_patient, slot_id=full_slots[0], now=now)
    return {"hospital": hid, "department": dep, "parent": parent, "doctor": doc, "slot": ok_slots[0],
            "full_slot": full_slots[0], "soon_slot": soon_slots[0], "schedules": (ok, full, soon)}


def new_person() -> dict:
    """A patient's values as typed into the add form (remembered as sensitive for the log check)."""
    person = {"name": "王小明", "id_number": make_id_number(), "phone": "13912345678"}
    remember_sensitive(person["id_number"], person["phone"], person["name"])
    return person


CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


async def login_with_forms(client, app, phone: str = "13800138000") -> None:
    """Log in as a browser without JavaScript would: two form posts."""
    page = await client.get("/login")
    token = csrf_of(page.text)
    sent = await client.post("/login/code", data={"csrf_token": token, "phone": phone, "next": "/"})
    assert sent.status_code == 200, sent.text
    code = app.state.sms.last_code("+86" + phone)
    done = await client.post("/login", data={"csrf_token": token, "phone": phone, "code": code,
                                             "consent": consent_version(), "next": "/"})
    assert done.status_code == 303, done.text


def consent_version() -> str:
    from guahao.web.account_pages import PRIVACY_VERSION

    return PRIVACY_VERSION


def skip_without_browser() -> None:
    if not browser_available():
        pytest.skip(MISSING_BROWSER)


def csp_reports(page) -> list[str]:
    """Collects the page's content-security-policy reports (core/security_headers.py): a
    browser test asserts the list stays empty, so the policy never blocks what we ship."""
    blocked: list[str] = []
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
    return blocked


def _axe_source() -> str:
    global _AXE_SOURCE
    if _AXE_SOURCE is None:
        _AXE_SOURCE = AXE.read_text(encoding="utf-8")
    return _AXE_SOURCE


_AXE_SOURCE: str | None = None


async def serious_violations(page) -> list[dict]:
    """axe-core (vendored, injected here; the app never serves it) on the current page."""
    # evaluated through the DevTools protocol, not as a <script> tag: the page's content
    # security policy (rightly) refuses inline script
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.evaluate(_axe_source())
    found = await page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    return [v for v in found if v["impact"] in ("serious", "critical")]
