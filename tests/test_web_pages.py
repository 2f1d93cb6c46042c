"""The patient pages over plain HTTP, as a browser without JavaScript uses them: every main
form works by itself (progressive enhancement), a post without the CSRF token is refused,
the cookies carry the right flags, and no page shows a patient's ID or phone number."""
from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest
from sqlalchemy import func, select, update

from guahao.accounts.models import Consent
from guahao.app import create_app
from guahao.booking.models import Booking
from guahao.payments.models import Payment
from tests.booking_builders import make_patient
from tests.builders import make_account, make_doctor
from tests.web_support import (
    DAY_OK,
    consent_version,
    csrf_of,
    login_with_forms,
    make_world,
    new_person,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def browser_client(app):
    """A cookie-keeping client that asks for HTML, like a browser (but runs no script)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept": "text/html", "Accept-Language": "zh-CN"}) as c:
        yield c


async def _add_verified_patient(c, person: dict) -> int:
    form = await c.get("/patients/new")
    token = csrf_of(form.text)
    added = await c.post("/patients/new", data={"csrf_token": token, "relationship": "self", "id_type": "resident_id",
                                                **person, "consent_id": "2026-12", "next": "/patients"})
    assert added.status_code == 303, added.text
    patient_id = int(re.search(r"/patients/(\d+)/verify", added.headers["location"]).group(1))
    verified = await c.post(f"/patients/{patient_id}/verify", data={"csrf_token": token, "outcome": "pass"})
    assert verified.status_code == 303, verified.text
    return patient_id


async def test_the_whole_journey_works_with_forms_alone(app, db, clock, browser_client):
    c = browser_client
    world = await make_world(db, clock)
    await login_with_forms(c, app)
    patient_id = await _add_verified_patient(c, new_person())

    found = await c.get("/search", params={"q": "xnk"})
    assert f'href="/departments/{world["department"]}"' in found.text and "心内科" in found.text
    calendar = await c.get(f"/departments/{world['department']}", params={"day": DAY_OK.isoformat()})
    assert f'href="/book/{world["slot"]}"' in calendar.text
    assert "挂号费 ¥5.00" in calendar.text and "诊查费 ¥10.00" in calendar.text

    confirm = await c.get(f"/book/{world['slot']}")
    key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', confirm.text).group(1)
    held = await c.post(f"/book/{world['slot']}", data={"csrf_token": csrf_of(confirm.text), "idempotency_key": key,
                                                        "patient_id": str(patient_id)})
    assert held.status_code == 303
    booking_id = int(re.search(r"/bookings/(\d+)/pay", held.headers["location"]).group(1))
    pay_page = await c.get(held.headers["location"])
    assert "¥15.00" in pay_page.text and 'data-countdown="900"' in pay_page.text  # 15 minutes, from the server
    # the fake provider's pay URL: paying for real is the browser test's part
    paid = await c.post(f"/bookings/{booking_id}/pay", data={"csrf_token": csrf_of(pay_page.text), "method": "alipay"})
    assert paid.status_code == 303 and paid.headers["location"].startswith("http")
    async with db.read() as s:
        assert await s.scalar(select(Payment.method).where(Payment.booking_id == booking_id)) == "alipay"

    listing = await c.get("/bookings")
    assert f'href="/bookings/{booking_id}"' in listing.text and "待支付" in listing.text
    cancel_page = await c.get(f"/bookings/{booking_id}/cancel")
    cancelled = await c.post(f"/bookings/{booking_id}/cancel", data={"csrf_token": csrf_of(cancel_page.text)})
    assert cancelled.status_code == 303
    detail = await c.get(cancelled.headers["location"])
    assert "已取消" in detail.text and "预约已取消" in detail.text


async def test_a_double_submit_of_the_confirm_form_books_once(app, db, clock, browser_client):
    c = browser_client
    world = await make_world(db, clock)
    await login_with_forms(c, app)
    patient_id = await _add_verified_patient(c, new_person())
    confirm = await c.get(f"/book/{world['slot']}")
    data = {"csrf_token": csrf_of(confirm.text), "patient_id": str(patient_id),
            "idempotency_key": re.search(r'name="idempotency_key" value="([0-9a-f]+)"', confirm.text).group(1)}
    first = await c.post(f"/book/{world['slot']}", data=data)
    second = await c.post(f"/book/{world['slot']}", data=data)  # the retry, or the second tap
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Booking).where(Booking.patient_id == patient_id)) == 1


async def test_refusals_are_shown_as_their_messages(app, db, clock, browser_client):
    c = browser_client
    world = await make_world(db, clock)
    await login_with_forms(c, app)
    patient_id = await _add_verified_patient(c, new_person())
    confirm = await c.get(f"/book/{world['full_slot']}")
    refused = await c.post(f"/book/{world['full_slot']}", data={
        "csrf_token": csrf_of(confirm.text), "patient_id": str(patient_id),
        "idempotency_key": re.search(r'name="idempotency_key" value="([0-9a-f]+)"', confirm.text).group(1)})
    assert refused.status_code == 409
    assert "该时段号源已约满" in refused.text
    assert 'id="form-error"' in refused.text and "{" not in refused.text.split('id="form-error"')[1][:200]

    # a patient who skipped the identity check is told to do it
    form = await c.get("/patients/new")
    other = new_person() | {"phone": "13912345671"}
    added = await c.post("/patients/new", data={"csrf_token": csrf_of(form.text), "relationship": "spouse",
                                                "id_type": "resident_id", **other, "consent_id": "2026-12"})
    unverified = int(re.search(r"/patients/(\d+)/verify", added.headers["location"]).group(1))
    confirm = await c.get(f"/book/{world['slot']}")
    refused = await c.post(f"/book/{world['slot']}", data={
        "csrf_token": csrf_of(confirm.text), "patient_id": str(unverified),
        "idempotency_key": re.search(r'name="idempotency_key" value="([0-9a-f]+)"', confirm.text).group(1)})
    assert refused.status_code == 409 and "就诊人尚未完成实名认证" in refused.text
    english = await c.post(f"/book/{world['slot']}", headers={"Accept-Language": "en"}, data={
        "csrf_token": csrf_of(confirm.text), "patient_id": str(unverified), "idempotency_key": "another-key-1"})
    assert "identity is not verified" in english.text


async def test_a_post_without_the_csrf_token_is_refused(app, db, clock, browser_client):
    c = browser_client
    await c.get("/login")  # the browser has its CSRF cookie
    refused = await c.post("/login/code", data={"phone": "13800138000"})
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
    assert "页面已过期" in refused.text
    wrong = await c.post("/login/code", data={"phone": "13800138000", "csrf_token": "0" * 64})
    assert wrong.status_code == 403
    assert app.state.sms.sent == []


async def test_a_token_from_another_browser_is_refused(app, browser_client):
    page = await browser_client.get("/login")
    token = csrf_of(page.text)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        await other.get("/login")
        refused = await other.post("/login/code", data={"phone": "13800138000", "csrf_token": token})
    assert refused.status_code == 403


async def test_cookies_carry_their_flags(app, db, clock, browser_client):
    first = await browser_client.get("/login")
    csrf_cookie = first.headers["set-cookie"]
    assert "guahao_csrf=" in csrf_cookie and "HttpOnly" in csrf_cookie and "SameSite=lax" in csrf_cookie
    assert "Secure" not in csrf_cookie  # development and tests run on plain http
    token = csrf_of(first.text)
    await browser_client.post("/login/code", data={"csrf_token": token, "phone": "13800138000"})
    done = await browser_client.post("/login", data={"csrf_token": token, "phone": "13800138000",
                                                     "code": app.state.sms.last_code("+8613800138000"),
                                                     "consent": consent_version()})
    session = [h for h in done.headers.get_list("set-cookie") if h.startswith("guahao_session=")][0]
    assert "HttpOnly" in session and "SameSite=lax" in session and "Path=/" in session


async def test_production_cookies_are_secure(settings, clock):
    from tests.test_security import production_settings

    app = create_app(production_settings(settings), clock=clock)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            r = await c.get("/login")
        assert "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
    finally:
        await app.state.db.dispose()


async def test_login_needs_the_consent_and_records_it(app, db, browser_client):
    c = browser_client
    page = await c.get("/login")
    token = csrf_of(page.text)
    await c.post("/login/code", data={"csrf_token": token, "phone": "13800138001"})
    code = app.state.sms.last_code("+8613800138001")
    refused = await c.post("/login", data={"csrf_token": token, "phone": "13800138001", "code": code})
    assert refused.status_code == 422 and "个人信息处理告知" in refused.text
    done = await c.post("/login", data={"csrf_token": token, "phone": "13800138001", "code": code,
                                        "consent": consent_version()})
    assert done.status_code == 303
    async with db.read() as s:
        rows = (await s.execute(select(Consent.kind, Consent.version))).all()
    assert rows == [("privacy", consent_version())]


async def test_the_resend_wait_and_the_rate_limit_message(app, browser_client):
    c = browser_client
    token = csrf_of((await c.get("/login")).text)
    sent = await c.post("/login/code", data={"csrf_token": token, "phone": "13800138002"})
    assert 'data-wait="60"' in sent.text and "138****8002" in sent.text
    again = await c.post("/login/code", data={"csrf_token": token, "phone": "13800138002"})
    assert again.status_code == 429 and "操作过于频繁" in again.text


async def test_pages_need_a_login_and_come_back_after_it(app, browser_client):
    r = await browser_client.get("/bookings")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fbookings"
    login = await browser_client.get(r.headers["location"])
    assert 'name="next" value="/bookings"' in login.text
    evil = await browser_client.get("/login", params={"next": "//evil.example/x"})
    assert 'name="next" value="/"' in evil.text


async def test_errors_are_pages_for_browsers_and_problems_for_the_api(app, browser_client):
    missing = await browser_client.get("/no/such/page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "页面不存在" in missing.text and "Traceback" not in missing.text
    hospital = await browser_client.get("/hospitals/999999")
    assert hospital.status_code == 404 and "找不到该医院" in hospital.text
    api = await browser_client.get("/api/v1/hospitals/999999")
    assert api.headers["content-type"].startswith("application/problem+json")
    bad = await browser_client.get("/departments/not-a-number")
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")


async def test_an_unexpected_error_is_a_page_without_details(app, browser_client, monkeypatch):
    from guahao.web import catalog_pages

    async def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(catalog_pages.catalog_api, "get_hospital", broken)
    r = await browser_client.get("/hospitals/1")
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    assert "secret internals" not in r.text and "服务暂时不可用" in r.text


async def test_language_follows_the_switch_then_the_browser(app, browser_client):
    c = browser_client
    assert "预约挂号" in (await c.get("/")).text
    english = await c.get("/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "Book a hospital registration" in english.text and '<html lang="en">' in english.text
    switched = await c.get("/settings/lang", params={"to": "en", "next": "/login"})
    assert switched.status_code == 303 and switched.headers["location"] == "/login"
    assert "Log in with your mobile number" in (await c.get("/login")).text  # the cookie wins over zh-CN


async def test_elderly_mode_is_remembered(app, browser_client):
    c = browser_client
    assert '<body class="" ' in (await c.get("/")).text
    await c.get("/settings/elder", params={"on": 1, "next": "/"})
    assert '<body class="elder" ' in (await c.get("/login")).text


async def test_no_page_shows_an_unmasked_id_or_phone_number(app, db, clock, browser_client):
    c = browser_client
    world = await make_world(db, clock)
    await login_with_forms(c, app)
    person = new_person()
    patient_id = await _add_verified_patient(c, person)
    account_id, _ = await make_account(db, clock.now())  # someone else's patient is never shown at all
    await make_patient(db, clock.now(), account_id)
    confirm = await c.get(f"/book/{world['slot']}")
    held = await c.post(f"/book/{world['slot']}", data={
        "csrf_token": csrf_of(confirm.text), "patient_id": str(patient_id),
        "idempotency_key": re.search(r'name="idempotency_key" value="([0-9a-f]+)"', confirm.text).group(1)})
    booking = held.headers["location"].rsplit("/", 1)[0]
    pages = ["/", "/patients", f"/patients/{patient_id}", f"/patients/{patient_id}/verify", f"/book/{world['slot']}",
             booking, booking + "/pay", booking + "/cancel", "/bookings", "/me"]
    for path in pages:
        answer = await c.get(path)
        assert answer.status_code == 200, path
        html = answer.text
        for value in (person["id_number"], person["phone"], person["name"], "13800138000"):
            assert value not in html, (path, value)
    assert "王*" in (await c.get("/patients")).text


def test_every_template_compiles():
    from guahao.web.pages import env

    names = env.list_templates()
    assert "base.html" in names
    for name in names:
        env.get_template(name)


async def test_booking_code_as_qr_code_and_calendar_file(app, db, clock, browser_client):
    c = browser_client
    world = await make_world(db, clock)
    await login_with_forms(c, app)
    patient_id = await _add_verified_patient(c, new_person())
    confirm = await c.get(f"/book/{world['slot']}")
    held = await c.post(f"/book/{world['slot']}", data={
        "csrf_token": csrf_of(confirm.text), "patient_id": str(patient_id),
        "idempotency_key": re.search(r'name="idempotency_key" value="([0-9a-f]+)"', confirm.text).group(1)})
    booking = held.headers["location"].rsplit("/", 1)[0]
    qr = await c.get(booking + "/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml" and "<svg" in qr.text
    ics = await c.get(booking + "/calendar.ics")
    assert ics.headers["content-type"].startswith("text/calendar")
    assert "DTSTART:20261121T000000Z" in ics.text  # 08:00 in Shanghai
    assert "北京协和医院" in ics.text and "心内科" in ics.text
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as stranger:
        assert (await stranger.get(booking + "/qr.svg")).status_code == 303  # to the login page


async def test_the_hospital_page_states_its_rules_in_plain_words(app, db, clock, browser_client):
    world = await make_world(db, clock)
    html = (await browser_client.get(f"/hospitals/{world['hospital']}")).text
    assert "每天 08:00 放出第 7 天的号源" in html and "锁号 15 分钟" in html
    assert "30 天内取消预约或爽约累计 3 次,将暂停在线预约本院 30 天" in html
    assert f'href="/departments/{world["department"]}"' in html


async def test_optional_cards_are_kept_and_shown_masked(app, db, clock, browser_client):
    c = browser_client
    await login_with_forms(c, app)
    person = new_person()
    form = await c.get("/patients/new")
    added = await c.post("/patients/new", data={"csrf_token": csrf_of(form.text), "relationship": "parent",
                                                "id_type": "resident_id", **person, "consent_id": "2026-12",
                                                "insurance_card": "YB12345678", "visit_card": "JZ0099887766"})
    assert added.status_code == 303
    listing = await c.get("/patients")
    patient_id = re.search(r'data-patient="(\d+)"', listing.text).group(1)
    edit = await c.get(f"/patients/{patient_id}")
    assert "******5678" in edit.text and "YB12345678" not in edit.text and "JZ0099887766" not in edit.text
    changed = await c.post(f"/patients/{patient_id}", data={"csrf_token": csrf_of(edit.text), "visit_card": "JZ55554444"})
    assert changed.status_code == 303
    assert "******4444" in (await c.get(f"/patients/{patient_id}")).text
    async with db.read() as s:
        consents = sorted((await s.execute(select(Consent.kind))).scalars())
    assert consents == ["id_number", "privacy"]


async def test_a_child_needs_the_guardian_consent(app, db, clock, browser_client):
    from tests.booking_builders import make_id_number

    c = browser_client
    await login_with_forms(c, app)
    child = {"name": "王小宝", "id_number": make_id_number(dt.date(2020, 3, 1)), "phone": "13912345670"}
    form = await c.get("/patients/new")
    data = {"csrf_token": csrf_of(form.text), "relationship": "child", "id_type": "resident_id", **child,
            "consent_id": "2026-12"}
    refused = await c.post("/patients/new", data=data)
    assert refused.status_code == 422 and "未满 14 周岁" in refused.text
    assert child["id_number"] not in refused.text
    added = await c.post("/patients/new", data={**data, "guardian": "1"})
    assert added.status_code == 303
    # a younger child without a phone of its own: the guardian's (the account's) number is used
    baby = {"name": "王小宝", "id_number": make_id_number(dt.date(2023, 6, 1)), "phone": ""}
    form = await c.get("/patients/new")
    added = await c.post("/patients/new", data={**data, **baby, "csrf_token": csrf_of(form.text), "guardian": "1"})
    assert added.status_code == 303, added.text
    assert "138****8000" in (await c.get("/patients")).text
    adult = await c.post("/patients/new", data={**data, **new_person(), "phone": "", "guardian": "1",
                                                "relationship": "parent", "csrf_token": csrf_of(form.text)})
    assert adult.status_code == 422 and "手机号" in adult.text
    async with db.read() as s:
        assert "guardian" in set((await s.execute(select(Consent.kind))).scalars())


async def test_a_hospital_can_ask_for_the_registration_level_first(app, db, clock, browser_client):
    from guahao.catalog.models import Hospital
    from tests.booking_builders import make_schedule

    world = await make_world(db, clock)
    async with db.begin() as s:
        await s.execute(update(Hospital).where(Hospital.id == world["hospital"]).values(entrance="registration_level"))
    general = await make_doctor(db, world["hospital"], world["department"], name="李娜", title="attending",
                                registration_level="general")
    await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                        doctor_id=general, day=DAY_OK, period="afternoon")
    async with db.begin() as s:  # the builder makes expert clinics; this one is a 普通号
        from guahao.scheduling.models import Schedule
        await s.execute(update(Schedule).where(Schedule.doctor_id == general).values(registration_level="general"))

    first = await browser_client.get(f"/hospitals/{world['hospital']}")
    assert 'id="entrance"' in first.text and 'id="departments"' not in first.text
    chosen = await browser_client.get(f"/hospitals/{world['hospital']}", params={"level": "general"})
    assert f'href="/departments/{world["department"]}?level=general"' in chosen.text

    api = await browser_client.get(f"/api/v1/departments/{world['department']}/availability",
                                   params={"registration_level": "general", "from": DAY_OK.isoformat(), "days": 1})
    levels = {s["registration_level"] for p in api.json()["days"][0]["periods"] for s in p["schedules"]}
    assert levels == {"general"}
    detail = await browser_client.get(f"/api/v1/hospitals/{world['hospital']}")
    assert detail.json()["entrance"] == "registration_level"

    page = await browser_client.get(f"/departments/{world['department']}",
                                    params={"level": "general", "day": DAY_OK.isoformat()})
    assert "李娜" in page.text and "张伟" not in page.text


async def test_email_address_and_health_information_are_kept_encrypted_and_shown_masked(app, db, clock,
                                                                                          browser_client):
    from sqlalchemy import text

    c = browser_client
    await login_with_forms(c, app)
    person = new_person()
    history = "青霉素过敏,高血压病史十年"
    form = await c.get("/patients/new")
    data = {"csrf_token": csrf_of(form.text), "relationship": "self", "id_type": "resident_id", **person,
            "consent_id": "2026-12", "email": "wangxm@example.com", "address": "北京市东城区东单北大街12号",
            "medical_history": history}
    refused = await c.post("/patients/new", data=data)  # health information needs its own consent
    assert refused.status_code == 422 and "既往病史属于敏感个人信息" in refused.text and history not in refused.text
    added = await c.post("/patients/new", data={**data, "consent_health": "2026-12"})
    assert added.status_code == 303
    listing = await c.get("/patients")
    patient_id = re.search(r'data-patient="(\d+)"', listing.text).group(1)
    edit = await c.get(f"/patients/{patient_id}")
    assert "w***@example.com" in edit.text and "北京市东城区****" in edit.text and "已填写" in edit.text
    for page in (listing.text, edit.text):
        assert history not in page and "wangxm@" not in page and "东单北大街" not in page
    async with db.read() as s:
        raw = (await s.execute(text("SELECT email, address, medical_history, health_consent_at FROM patients"))).one()
        kinds = set((await s.execute(select(Consent.kind))).scalars())
    assert history not in raw[2] and "example.com" not in raw[0] and raw[3] is not None  # ciphertext at rest
    assert kinds == {"privacy", "id_number", "health"}
    api = (await c.get(f"/api/v1/me/patients/{patient_id}")).json()
    assert api["medical_history_on_file"] is True and "medical_history" not in api
    assert api["email"] == "w***@example.com"


async def test_the_hospital_page_lists_its_clinic_cancellations(app, db, clock, browser_client):
    from tests.builders import auth, make_staff

    world = await make_world(db, clock)
    _, token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=world["hospital"])
    ok, full, soon = world["schedules"]
    before = (await browser_client.get(f"/hospitals/{world['hospital']}")).text
    assert 'id="notices"' not in before
    r = await browser_client.post(f"/api/v1/staff/schedules/{full}/suspend", headers=auth(token),
                                  json={"reason": "专家外出会诊"})
    assert r.status_code == 200, r.text
    html = (await browser_client.get(f"/hospitals/{world['hospital']}")).text
    notice = html.split('id="notices"')[1].split("</section>")[0]
    assert "停诊通知" in notice and "2026-11-22 周日" in notice and "张伟" in notice and "专家外出会诊" in notice


async def test_another_account_reaches_none_of_my_pages(app, db, clock, browser_client):
    """I8 on the pages: they call the API's route functions with the page's own account."""
    c = browser_client
    world = await make_world(db, clock)
    await login_with_forms(c, app)
    patient_id = await _add_verified_patient(c, new_person())
    confirm = await c.get(f"/book/{world['slot']}")
    held = await c.post(f"/book/{world['slot']}", data={
        "csrf_token": csrf_of(confirm.text), "patient_id": str(patient_id),
        "idempotency_key": re.search(r'name="idempotency_key" value="([0-9a-f]+)"', confirm.text).group(1)})
    booking = held.headers["location"].rsplit("/", 1)[0]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept": "text/html"}) as other:
        await login_with_forms(other, app, phone="13800138009")
        token = csrf_of((await other.get("/me")).text)
        for path in (booking, booking + "/pay", booking + "/cancel", booking + "/qr.svg", booking + "/calendar.ics",
                     f"/patients/{patient_id}", f"/patients/{patient_id}/verify"):
            assert (await other.get(path)).status_code == 404, path
        for path in (booking + "/cancel", booking + "/pay", f"/patients/{patient_id}/delete"):
            assert (await other.post(path, data={"csrf_token": token, "method": "wechat"})).status_code == 404, path
        refused = await other.post(f"/book/{world['slot']}", data={"csrf_token": token, "patient_id": str(patient_id),
                                                                   "idempotency_key": "someone-elses-patient"})
        assert refused.status_code == 404
    assert "已取消" not in (await c.get(booking)).text  # still mine, untouched


async def test_home_lists_hospitals_by_city_or_nearest_first(app, db, clock, browser_client):
    from tests.builders import make_hospital

    await make_world(db, clock)  # Beijing, 39.91 / 116.41
    await make_hospital(db, clock.now(), name="上海测试医院", city="上海市", district="徐汇区", lat=31.2, lon=121.4)
    home = await browser_client.get("/")
    assert "北京协和医院" in home.text and "上海测试医院" in home.text and '<option value="上海市"' in home.text
    shanghai = await browser_client.get("/", params={"city": "上海市"})
    hospitals = shanghai.text.split('id="hospitals"')[1]
    assert "上海测试医院" in hospitals and "北京协和医院" not in hospitals
    near = await browser_client.get("/", params={"near": "31.2,121.4"})
    listed = near.text.split('id="hospitals"')[1]
    assert listed.index("上海测试医院") < listed.index("北京协和医院") and "公里" in listed
    assert (await browser_client.get("/", params={"near": "not,a-point"})).status_code == 200
