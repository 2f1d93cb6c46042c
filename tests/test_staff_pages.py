"""The back office (/staff/) over plain HTTP, as a browser without JavaScript uses it: login
(with the TOTP step) and logout, CSRF refused without its token, role refusals, masked
personal data on every page except the audited reveal, and the audit rows the pages write."""
from __future__ import annotations

import datetime as dt

import pyotp
import pytest
from sqlalchemy import select

from guahao.booking.models import Booking, Restriction
from guahao.core.audit import AuditEntry
from guahao.outbox.models import OutboxMessage
from guahao.staff.models import StaffTotp
from guahao.web import i18n
from guahao.web.staff.window import classify
from tests.staff_web_support import (
    PASSWORD,
    TODAY,
    front_desk_world,
    login,
    make_staff_user,
    page_client,
    token_of,
)
from tests.web_support import csrf_of

pytestmark = pytest.mark.timeout(120)


async def _audit(db, action: str) -> list[AuditEntry]:
    async with db.read() as s:
        return list(await s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def _assert_masked(html: str, w: dict) -> None:
    for secret in (*w["id_numbers"], *w["names"]):
        assert secret not in html, secret


async def test_login_logout_and_the_pages_need_a_session(app, db, clock):
    w = await front_desk_world(db, clock)
    async with page_client(app) as c:
        r = await c.get(f"/staff/hospitals/{w['hospital_id']}/window")
        assert r.status_code == 303 and r.headers["location"].startswith("/staff/login?next=")
        wrong = await login(c, w["users"]["front_desk"], "not-the-password")
        assert wrong.status_code == 401 and "用户名或密码不正确" in wrong.text
        r = await login(c, w["users"]["front_desk"])
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "guahao_session=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
        home = await c.get("/staff/")  # the front desk starts at the window
        assert home.status_code == 303 and home.headers["location"] == f"/staff/hospitals/{w['hospital_id']}/window"
        window = await c.get(home.headers["location"])
        assert window.status_code == 200 and "北京协和医院" in window.text and "前台窗口" in window.text
        logout = await c.post("/staff/logout", data={"csrf_token": csrf_of(window.text)})
        assert logout.status_code == 303
        after = await c.get(f"/staff/hospitals/{w['hospital_id']}/window")
        assert after.status_code == 303 and "/staff/login" in after.headers["location"]


async def test_login_asks_for_the_authenticator_code_when_totp_is_on(app, db, clock):
    w = await front_desk_world(db, clock)
    admin = w["users"]["hospital_admin"]
    async with page_client(app) as c:
        assert (await login(c, admin)).status_code == 303
        page = await c.get("/staff/totp")
        enrol = await c.post("/staff/totp/enroll", data={"csrf_token": csrf_of(page.text)})
        assert enrol.status_code == 200 and 'id="totp-qr" src="data:image/svg+xml' in enrol.text
        secret = enrol.text.split('id="totp-secret">')[1].split("<")[0]
        code = pyotp.TOTP(secret).at(clock.now())
        on = await c.post("/staff/totp/confirm", data={"csrf_token": csrf_of(enrol.text), "code": code})
        assert on.status_code == 200 and "两步验证已开启" in on.text
        await c.post("/staff/logout", data={"csrf_token": csrf_of(on.text)})
        first = await login(c, admin)
        assert first.status_code == 401 and 'name="otp"' in first.text and "6位动态码" in first.text
        later = pyotp.TOTP(secret).at(clock.now() + dt.timedelta(seconds=30))  # a fresh step: codes are single-use
        second = await login(c, admin, otp=later)
        assert second.status_code == 303, second.text
    async with db.read() as s:
        assert await s.scalar(select(StaffTotp.confirmed_at)) is not None
    assert len(await _audit(db, "staff.totp_enable")) == 1


async def test_a_post_without_the_csrf_token_is_refused(app, db, clock):
    w = await front_desk_world(db, clock)
    hid, booking = w["hospital_id"], w["bookings"][0]
    async with page_client(app) as c:
        assert (await login(c, w["users"]["front_desk"])).status_code == 303
        r = await c.post(f"/staff/hospitals/{hid}/bookings/{booking}/void", data={"reason": "无令牌"})
        assert r.status_code == 403 and "页面已过期" in r.text
        r = await c.post(f"/staff/hospitals/{hid}/bookings/{booking}/void",
                         data={"reason": "错误令牌", "csrf_token": "0" * 64})
        assert r.status_code == 403
        r = await c.post("/staff/logout", data={})
        assert r.status_code == 403
    async with db.read() as s:
        assert await s.scalar(select(Booking.state).where(Booking.id == booking)) == "confirmed"
    async with page_client(app) as fresh:  # no session at all: the login form itself needs the token
        r = await fresh.post("/staff/login", data={"username": w["users"]["front_desk"], "password": PASSWORD})
        assert r.status_code == 403


async def test_roles_without_the_permission_are_refused(app, db, clock):
    w = await front_desk_world(db, clock)
    hid = w["hospital_id"]
    async with page_client(app) as c:
        assert (await login(c, w["users"]["scheduler"])).status_code == 303
        for path in ("window", "walk-in", "reports", "restrictions", f"bookings/{w['bookings'][0]}"):
            r = await c.get(f"/staff/hospitals/{hid}/{path}")
            assert r.status_code == 403 and "权限" in r.text, path
        assert (await c.get("/staff/totp")).status_code == 403  # TOTP is for operators and admins
        token = await token_of(c)
        r = await c.post(f"/staff/hospitals/{hid}/bookings/{w['bookings'][0]}/reveal", data={"csrf_token": token})
        assert r.status_code == 403
    async with page_client(app) as c:
        assert (await login(c, w["users"]["front_desk"])).status_code == 303
        assert (await c.get(f"/staff/hospitals/{hid}/reports")).status_code == 403
        listing = await c.get(f"/staff/hospitals/{hid}/restrictions")  # the desk reads it, may not lift
        assert listing.status_code == 200 and "/lift" not in listing.text
        r = await c.post(f"/staff/hospitals/{hid}/restrictions/{w['restriction_id']}/lift",
                         data={"csrf_token": csrf_of(listing.text), "reason": "试试"})
        assert r.status_code == 403
    assert await _audit(db, "booking.reveal") == []


async def test_the_desk_finds_reveals_checks_in_and_voids_with_audit(app, db, clock):
    w = await front_desk_world(db, clock)
    hid, (first, second) = w["hospital_id"], w["bookings"]
    async with page_client(app) as c:
        assert (await login(c, w["users"]["front_desk"])).status_code == 303
        window = await c.get(f"/staff/hospitals/{hid}/window")
        _assert_masked(window.text, w)
        assert "钱*" in window.text and window.text.index(w["codes"][0]) < window.text.index(w["codes"][1])
        token = csrf_of(window.text)
        found = await c.post(f"/staff/hospitals/{hid}/window/search", data={"csrf_token": token,
                                                                            "q": w["id_numbers"][0]})
        assert found.status_code == 200 and f"/bookings/{first}" in found.text and f"/bookings/{second}" not in found.text
        _assert_masked(found.text, w)
        scanned = await c.post(f"/staff/hospitals/{hid}/window/search",
                               data={"csrf_token": token, "q": f" {w['codes'][1]}\n"})
        assert f"/bookings/{second}" in scanned.text
        detail = await c.get(f"/staff/hospitals/{hid}/bookings/{first}")
        _assert_masked(detail.text, w)
        assert await _audit(db, "booking.reveal") == []
        shown = await c.post(f"/staff/hospitals/{hid}/bookings/{first}/reveal", data={"csrf_token": token})
        assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
        assert "钱多多" in shown.text and w["id_numbers"][0] in shown.text and w["id_numbers"][1] not in shown.text
        wrong = await c.post(f"/staff/hospitals/{hid}/bookings/{first}/check-in",
                             data={"csrf_token": token, "id_number": w["id_numbers"][1]})
        assert wrong.status_code == 409 and "证件" in wrong.text
        _assert_masked(wrong.text, w)
        checked = await c.post(f"/staff/hospitals/{hid}/bookings/{first}/check-in",
                               data={"csrf_token": token, "id_number": w["id_numbers"][0]})
        assert checked.status_code == 303
        after = await c.get(checked.headers["location"])
        assert "已签到" in after.text and 'id="complete"' in after.text
        _assert_masked(after.text, w)
        done = await c.post(f"/staff/hospitals/{hid}/bookings/{first}/complete", data={"csrf_token": token})
        assert done.status_code == 303 and "已就诊" in (await c.get(done.headers["location"])).text
        voided = await c.post(f"/staff/hospitals/{hid}/bookings/{second}/void",
                              data={"csrf_token": token, "reason": "患者到窗口要求退号"})
        assert voided.status_code == 303
    async with db.read() as s:
        states = dict((await s.execute(select(Booking.id, Booking.state).where(Booking.id.in_([first, second])))).all())
        topics = set(await s.scalars(select(OutboxMessage.topic).where(OutboxMessage.dedupe_key.like(f"%:{second}"))))
    assert states == {first: "completed", second: "cancelled"}
    assert {"notify.booking_cancelled", "payment.refund"} <= topics
    reveals = await _audit(db, "booking.reveal")
    assert [(e.object_id, e.hospital_id) for e in reveals] == [(str(first), hid)]
    assert reveals[0].staff_id is not None and w["id_numbers"][0] not in reveals[0].detail
    assert len(await _audit(db, "booking.check_in_identity")) == 1
    assert [e.object_id for e in await _audit(db, "booking.void")] == [str(second)]


async def test_walk_in_from_the_form_is_checked_in_and_shown_masked(app, db, clock):
    w = await front_desk_world(db, clock)
    hid = w["hospital_id"]
    async with page_client(app) as c:
        assert (await login(c, w["users"]["front_desk"])).status_code == 303
        form = await c.get(f"/staff/hospitals/{hid}/walk-in")
        assert f'value="{w["schedule_id"]}"' in form.text
        from tests.booking_builders import make_id_number
        from tests.conftest import remember_sensitive

        number = make_id_number()
        remember_sensitive(number, "13700001111", "猪八戒")
        r = await c.post(f"/staff/hospitals/{hid}/walk-in", data={
            "csrf_token": csrf_of(form.text), "schedule_id": str(w["schedule_id"]), "name": "猪八戒",
            "id_type": "resident_id", "id_number": number, "phone": "13700001111"})
        assert r.status_code == 303, r.text
        page = await c.get(r.headers["location"])
        assert "已签到" in page.text and "猪*" in page.text and number not in page.text and "猪八戒" not in page.text
        assert 'id="visit-no">5<' in page.text  # after the 4 platform seats
        again = await c.post(f"/staff/hospitals/{hid}/walk-in", data={
            "csrf_token": csrf_of(form.text), "schedule_id": str(w["schedule_id"]), "name": "猪八戒",
            "id_type": "resident_id", "id_number": number, "phone": "13700001111"})
        assert again.status_code == 409 and number not in again.text and "猪八戒" not in again.text
    assert len(await _audit(db, "booking.walk_in")) == 1


async def test_reports_and_restrictions_for_the_admin(app, db, clock):
    w = await front_desk_world(db, clock)
    hid = w["hospital_id"]
    async with page_client(app) as c:
        assert (await login(c, w["users"]["hospital_admin"])).status_code == 303
        report = await c.get(f"/staff/hospitals/{hid}/reports", params={"group": "doctor"})
        assert report.status_code == 200
        row = report.text.split('id="report-rows"')[1].split("</tbody>")[0]
        assert "张伟" in row and '<td class="num">2</td>' in row  # two confirmed bookings of the doctor
        assert f"/api/v1/staff/hospitals/{hid}/reports/money.csv?from=" in report.text
        csv = await c.get(f"/api/v1/staff/hospitals/{hid}/reports/money.csv",
                          params={"from": (TODAY - dt.timedelta(days=6)).isoformat(), "to": TODAY.isoformat()})
        assert csv.status_code == 200 and csv.text.startswith("\ufeffdate,paid")  # the page's session opens it
        listing = await c.get(f"/staff/hospitals/{hid}/restrictions")
        _assert_masked(listing.text, w)
        assert "孙*" in listing.text and w["id_numbers"][1][0] + "****" in listing.text
        empty = await c.post(f"/staff/hospitals/{hid}/restrictions/{w['restriction_id']}/lift",
                             data={"csrf_token": csrf_of(listing.text), "reason": ""})
        assert empty.status_code == 422
        lifted = await c.post(f"/staff/hospitals/{hid}/restrictions/{w['restriction_id']}/lift",
                              data={"csrf_token": csrf_of(listing.text), "reason": "核实后解除"})
        assert lifted.status_code == 303
    async with db.read() as s:
        assert await s.scalar(select(Restriction.lift_reason)) == "核实后解除"
    assert [e.object_id for e in await _audit(db, "restriction.lift")] == [str(w["restriction_id"])]
    assert len(await _audit(db, "report.export")) == 1


async def test_password_change_ends_other_sessions(app, db, clock):
    w = await front_desk_world(db, clock)
    user = w["users"]["scheduler"]
    async with page_client(app) as c, page_client(app) as other:
        assert (await login(c, user)).status_code == 303 and (await login(other, user)).status_code == 303
        form = await c.get("/staff/password")
        short = await c.post("/staff/password", data={"csrf_token": csrf_of(form.text), "current_password": PASSWORD,
                                                      "new_password": "short", "repeat_password": "short"})
        assert short.status_code == 422 and "至少需要10个字符" in short.text
        r = await c.post("/staff/password", data={"csrf_token": csrf_of(form.text), "current_password": PASSWORD,
                                                  "new_password": "a-new-long-password",
                                                  "repeat_password": "a-new-long-password"})
        assert r.status_code == 200 and 'id="notice"' in r.text
        assert (await c.get("/staff/password")).status_code == 200
        assert (await other.get("/staff/password")).status_code == 303  # logged out
    assert len(await _audit(db, "staff.password_change")) == 1


async def test_english_back_office_pages(app, db, clock):
    w = await front_desk_world(db, clock)
    user = await make_staff_user(db, clock.now(), role="platform_operator", hospital_id=None, name="运营")
    async with page_client(app, locale="en") as c:
        assert (await login(c, user)).status_code == 303
        home = await c.get("/staff/")
        assert '<html lang="en">' in home.text and "Platform operator" in home.text
        assert f'href="/staff/hospitals/{w["hospital_id"]}/window"' in home.text  # the operator picks a hospital
        window = await c.get(f"/staff/hospitals/{w['hospital_id']}/window")
        assert 'id="hospital-name">北京协和医院<' in window.text
        window = await c.get(f"/staff/hospitals/{w['hospital_id']}/window")
        assert "Front desk" in window.text and "Roster of" in window.text
        zh_texts = [t for t in i18n.catalog("zh-CN").values() if len(t) >= 4]
        for path in ("/staff/", f"/staff/hospitals/{w['hospital_id']}/window", f"/staff/hospitals/{w['hospital_id']}/reports",
                     f"/staff/hospitals/{w['hospital_id']}/restrictions", f"/staff/hospitals/{w['hospital_id']}/walk-in",
                     "/staff/password", "/staff/totp", "/staff/no-such-page"):
            html = (await c.get(path)).text
            assert '<html lang="en">' in html, path
            assert [t for t in zh_texts if t in html] == [], path


async def test_an_htmx_search_gets_the_results_partial_even_for_a_refusal(app, db, clock):
    w = await front_desk_world(db, clock)
    hid = w["hospital_id"]
    async with page_client(app) as c:
        assert (await login(c, w["users"]["front_desk"])).status_code == 303
        token = await token_of(c, f"/staff/hospitals/{hid}/window")
        url = f"/staff/hospitals/{hid}/window/search"
        found = await c.post(url, data={"csrf_token": token, "q": w["codes"][0]}, headers={"HX-Request": "true"})
        assert found.status_code == 200 and found.text.lstrip().startswith('<div id="results">')
        assert f"/bookings/{w['bookings'][0]}" in found.text
        nothing = await c.post(url, data={"csrf_token": token, "q": "?"}, headers={"HX-Request": "true"})
        assert nothing.status_code == 200 and 'id="form-error"' in nothing.text
        plain = await c.post(url, data={"csrf_token": token, "q": "?"})
        assert plain.status_code == 422 and "<html" in plain.text


def test_the_search_field_recognises_what_was_typed_or_scanned():
    assert classify("12345678") == {"code": "12345678"}
    assert classify("GH:12345678;v1") == {"code": "12345678"}
    assert classify("139 1234 5678") == {"phone": "13912345678"}
    assert classify("11010119900307001x") == {"id_number": "11010119900307001x"}
    assert classify("13912345678", "id_number") == {"id_number": "13912345678"}
    assert classify("", "auto") == {}


async def test_the_login_page_locks_a_username_after_repeated_wrong_passwords(app, db, clock):
    w = await front_desk_world(db, clock)
    user = w["users"]["front_desk"]
    async with page_client(app) as c:
        for _ in range(app.state.settings.staff_login_max_failures):
            r = await login(c, user, "wrong-password-123")
            assert r.status_code == 401
        locked = await login(c, user)  # the right password no longer helps
        assert locked.status_code == 429 and 'id="form-error"' in locked.text
        assert "guahao_session" not in locked.headers.get("set-cookie", "")
    entries = await _audit(db, "staff.login_locked")
    assert [e.object_id for e in entries] == [user]
