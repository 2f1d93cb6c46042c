"""The admin, scheduler and operator pages of the back office over plain HTTP (no script runs):
each form works without JavaScript, refuses a post without the CSRF token, refuses the
wrong role (403) and another hospital (404), and writes the audit rows of the actions it
calls (rules, fees, 停诊, resume, template changes, dead-letter retry).

The role of every route these pages add is written once, in PAGES of
tests/staff_page_table.py (tests/test_staff_access_pages.py generates the I8 checks from it);
the role check here reads it and posts EMPTY forms, so a refusal must come before any form
parsing or other hospital's object is looked at. The platform operator passes every page.
"""
from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import func, select

from guahao.booking import actions as booking_actions
from guahao.booking.models import Booking
from guahao.catalog import service as catalog_service
from guahao.core.audit import AuditEntry
from guahao.outbox.models import OutboxMessage
from guahao.scheduling.models import Schedule, ScheduleTemplate
from tests.booking_builders import make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital
from tests.staff_page_table import PAGES
from tests.staff_web_support import login, make_staff_user, page_client, text_of, token_of
from tests.web_support import csrf_of

ADMIN, SCHEDULER, DESK, OPERATOR = "hospital_admin", "scheduler", "front_desk", "platform_operator"
ROLES = (ADMIN, SCHEDULER, DESK)
DAY = dt.date(2026, 11, 21)  # two days after the test clock

MODULES = ("guahao.web.staff.admin", "guahao.web.staff.catalog_admin", "guahao.web.staff.scheduler",
           "guahao.web.staff.suspend", "guahao.web.staff.operator", "guahao.web.staff.release")
_seq = itertools.count(1)


async def _world(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now, name="甲医院")
    other = await make_hospital(db, now, name="乙医院")
    dep = await make_department(db, hid, name="心内科")
    doc = await make_doctor(db, hid, dep, name="张伟")
    other_dep = await make_department(db, other, name="外科")
    other_doc = await make_doctor(db, other, other_dep, name="李雷")
    users = {role: await make_staff_user(db, now, role=role, hospital_id=hid) for role in ROLES}
    users["other_admin"] = await make_staff_user(db, now, role=ADMIN, hospital_id=other)
    users[OPERATOR] = await make_staff_user(db, now, role=OPERATOR, hospital_id=None)
    return {"hid": hid, "other": other, "dep": dep, "doc": doc, "other_dep": other_dep, "other_doc": other_doc,
            "users": users, "now": now}


async def _as(app, w, who: str):
    client = page_client(app)
    r = await login(client, w["users"][who])
    assert r.status_code == 303, r.text
    return client


async def _post(client, path: str, data: dict | None = None, *, token: str | None = None):
    token = token or await token_of(client)
    return await client.post(path, data={"csrf_token": token, **(data or {})})


async def _audit(db, action: str) -> list[AuditEntry]:
    async with db.read() as s:
        return list(await s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def _role_rules(app) -> list[tuple[str, str, frozenset[str], bool]]:
    """(method, path, roles allowed besides the operator, hospital-scoped) of every route of
    these pages, from PAGES; `hospital-scoped`: staff of another hospital get 404 there."""
    from fastapi.routing import APIRoute, iter_route_contexts  # FastAPI >= 0.16x wraps included routers

    ours = {(m, c.path) for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)
            and c.original_route.endpoint.__module__ in MODULES for m in c.original_route.methods}
    missing = sorted(ours - set(PAGES))
    assert missing == [], f"write the role of these routes in tests/staff_page_table.py: {missing}"
    return [(m, p, PAGES[(m, p)].roles, p.startswith("/staff/hospitals/")) for m, p in sorted(ours)]


def test_every_route_of_these_pages_is_in_the_role_table(app):
    """A new route without a row fails: its role rule must be written down."""
    rules = _role_rules(app)
    assert len(rules) >= 38
    assert {p for _m, p, roles, _h in rules if not roles} >= {"/staff/operator/jobs", "/staff/operator/staff"}


def _fill(path: str, w, hospital: int) -> str:
    own = hospital == w["hid"]
    return path.format(hospital_id=hospital, department_id=w["dep"] if own else w["other_dep"],
                       doctor_id=w["doc"] if own else w["other_doc"], schedule_id=w["schedule"] if own
                       else w["other_schedule"], message_id=999999)


async def test_roles_without_the_permission_are_refused_and_other_hospitals_are_404(app, db, clock):
    w = await _world(db, clock)
    w["schedule"], _ = await make_schedule(db, w["now"], hospital_id=w["hid"], department_id=w["dep"],
                                           doctor_id=w["doc"], day=DAY)
    w["other_schedule"], _ = await make_schedule(db, w["now"], hospital_id=w["other"], department_id=w["other_dep"],
                                                 doctor_id=w["other_doc"], day=DAY)
    clients = {role: await _as(app, w, role) for role in ROLES}
    tokens = {role: await token_of(c) for role, c in clients.items()}
    for method, path, allowed, scoped in _role_rules(app):
        for role in ROLES:
            client = clients[role]
            url = _fill(path, w, w["hid"])
            r = (await client.get(url) if method == "GET" else await client.post(url, data={"csrf_token": tokens[role]}))
            if role in allowed:
                assert r.status_code not in (401, 403), (method, path, role, r.status_code)
            else:
                assert r.status_code == 403, (method, path, role, r.status_code)
            if scoped and role in allowed:
                url = _fill(path, w, w["other"])
                r = (await client.get(url) if method == "GET"
                     else await client.post(url, data={"csrf_token": tokens[role]}))
                assert r.status_code == 404, (method, path, role, "other hospital", r.status_code)
    async with db.read() as s:  # nothing of the other hospital was touched by the refused posts
        other = await s.get(Schedule, w["other_schedule"])
        assert other.status == "published"


async def test_logged_out_goes_to_login_and_a_post_without_csrf_is_refused(app, db, clock):
    w = await _world(db, clock)
    anonymous = page_client(app)
    r = await anonymous.get(f"/staff/hospitals/{w['hid']}/rules")
    assert r.status_code in (302, 303) and r.headers["location"].startswith("/staff/login")
    admin = await _as(app, w, ADMIN)
    r = await admin.post(f"/staff/hospitals/{w['hid']}/rules", data={"hold_minutes": "10"})
    assert r.status_code == 403
    assert await _audit(db, "hospital_rules.update") == []


def _rules_form(**changes) -> dict:
    form = {"hold_minutes": "15", "release_days_ahead": "7", "release_time": "08:00",
            "close_minutes_before_start": "0", "cancel_minutes_before_visit_day": "0", "slot_granularity": "half_day",
            "one_per_department_per_day": "on", "max_live_bookings_per_person": "5", "restriction_threshold": "3",
            "restriction_window_days": "90", "restriction_days": "90", "strike_cancellations": "all",
            "record_requirement": "none", "reminder_time": "18:00", "sms_to_patient_phone": "on",
            "release_mode": "fifo", "draw_window_seconds": "30", "draw_prequeue_minutes": "0",
            "entrance": "department"}
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


async def test_admin_previews_and_saves_rules_and_the_change_is_audited(app, db, clock):
    w = await _world(db, clock)
    admin = await _as(app, w, ADMIN)
    page = await admin.get(f"/staff/hospitals/{w['hid']}/rules")
    assert page.status_code == 200 and 'id="rules-preview"' in page.text
    token = csrf_of(page.text)
    preview = await _post(admin, f"/staff/hospitals/{w['hid']}/rules/preview", _rules_form(hold_minutes="25"),
                          token=token)
    assert preview.status_code == 200 and "25" in text_of(preview.text)
    bad = await _post(admin, f"/staff/hospitals/{w['hid']}/rules/preview", _rules_form(hold_minutes="45"),
                      token=token)
    assert 'id="preview-error"' in bad.text
    assert await _audit(db, "hospital_rules.update") == []  # a preview changes nothing

    refused = await _post(admin, f"/staff/hospitals/{w['hid']}/rules", _rules_form(hold_minutes="45"), token=token)
    assert refused.status_code == 422 and 'id="form-error"' in refused.text
    saved = await _post(admin, f"/staff/hospitals/{w['hid']}/rules",
                        _rules_form(hold_minutes="25", entrance="registration_level"), token=token)
    assert saved.status_code == 303
    [entry] = await _audit(db, "hospital_rules.update")
    assert entry.hospital_id == w["hid"] and entry.staff_id is not None and entry.at == clock.now()
    assert '"hold_minutes"' in entry.detail
    assert len(await _audit(db, "hospital.update")) == 1
    async with db.read() as s:
        assert (await catalog_service.get_hospital_or_raise(s, w["hid"])).entrance == "registration_level"
    again = await admin.get(saved.headers["location"])
    assert 'value="25"' in again.text and 'id="notice"' in again.text

    hours = {f"{p}_{e}": v for p, (o, c) in {"morning": ("07:30", "11:30"), "afternoon": ("13:00", "17:00"),
                                           "evening": ("18:00", "21:00")}.items() for e, v in (("opens", o), ("closes", c))}
    r = await _post(admin, f"/staff/hospitals/{w['hid']}/clinic-hours", hours, token=token)
    assert r.status_code == 303
    assert len(await _audit(db, "clinic_hours.update")) == 1
    wrong = await _post(admin, f"/staff/hospitals/{w['hid']}/clinic-hours", {**hours, "morning_closes": "06:00"},
                        token=token)
    assert wrong.status_code == 422


async def test_admin_sets_the_fee_table_departments_and_doctors(app, db, clock):
    w = await _world(db, clock)
    admin = await _as(app, w, ADMIN)
    token = await token_of(admin, f"/staff/hospitals/{w['hid']}/fees")
    r = await _post(admin, f"/staff/hospitals/{w['hid']}/fees",
                    {"general__none__reg": "5", "general__none__cons": "0", "expert__chief__reg": "12.5",
                     "expert__chief__cons": "30"}, token=token)
    assert r.status_code == 303
    async with db.read() as s:
        table = await catalog_service.fee_table(s, w["hid"])
    assert {k: (v.registration_fee, v.consultation_fee) for k, v in table.items()} == {
        ("general", "none"): (500, 0), ("expert", "chief"): (1250, 3000)}
    assert len(await _audit(db, "fees.set")) == 1
    page = await admin.get(f"/staff/hospitals/{w['hid']}/fees")
    assert 'value="12.50"' in page.text

    r = await _post(admin, f"/staff/hospitals/{w['hid']}/departments",
                    {"name": "妇科", "parent_id": "", "location": "门诊楼2层", "allowed_sex": "F", "min_age": "14"},
                    token=token)
    assert r.status_code == 303
    async with db.read() as s:
        departments = {d.name: d for d in await catalog_service.list_departments(s, w["hid"])}
    gyn = departments["妇科"]
    assert (gyn.allowed_sex, gyn.min_age, gyn.location) == ("F", 14, "门诊楼2层")
    taken = await _post(admin, f"/staff/hospitals/{w['hid']}/departments", {"name": "妇科"}, token=token)
    assert taken.status_code == 409 and 'id="form-error"' in taken.text
    r = await _post(admin, f"/staff/hospitals/{w['hid']}/departments/{gyn.id}",
                    {"name": "妇产科", "location": "门诊楼2层", "allowed_sex": "F", "min_age": "", "max_age": ""},
                    token=token)
    assert r.status_code == 303

    r = await _post(admin, f"/staff/hospitals/{w['hid']}/doctors",
                    {"name": "王芳", "department_id": str(gyn.id), "title": "attending",
                     "registration_level": "general", "specialty": "产前检查", "introduction": "从医十年"}, token=token)
    assert r.status_code == 303
    listing = await admin.get(f"/staff/hospitals/{w['hid']}/doctors")
    assert "王芳" in listing.text and "产前检查" in listing.text
    assert [e.action for e in await _audit(db, "department.create")] == ["department.create"]
    assert len(await _audit(db, "department.update")) == 1 and len(await _audit(db, "doctor.create")) == 1


async def _book(db, now, slot_id: int, *, pay: bool) -> int:
    account, _ = await make_account(db, now)
    patient = await make_patient(db, now, account)
    async with db.begin() as s:
        booking = await booking_actions.do_hold(s, account_id=account, patient_id=patient, slot_id=slot_id, now=now)
    if pay:
        async with db.begin() as s:
            await booking_actions.do_confirm(s, booking.id, now=now)
    return booking.id


async def test_scheduler_builds_templates_generates_publishes_and_suspends(app, db, clock):
    w = await _world(db, clock)
    sched = await _as(app, w, SCHEDULER)
    base = f"/staff/hospitals/{w['hid']}"
    grid = await sched.get(f"{base}/schedule-templates?department_id={w['dep']}")
    assert grid.status_code == 200 and 'id="template-grid"' in grid.text
    token = csrf_of(grid.text)
    r = await _post(sched, f"{base}/schedule-templates",
                    {"department_id": str(w["dep"]), f"c_{w['doc']}_0_morning_p": "10", f"c_{w['doc']}_0_morning_o": "2",
                     f"c_{w['doc']}_3_afternoon_p": "6"}, token=token)
    assert r.status_code == 303
    async with db.read() as s:
        templates = {(t.weekday, t.period): (t.platform_capacity, t.onsite_capacity)
                     for t in await s.scalars(select(ScheduleTemplate).where(ScheduleTemplate.hospital_id == w["hid"]))}
    assert templates == {(0, "morning"): (10, 2), (3, "afternoon"): (6, 0)}
    # emptying a cell removes its template
    r = await _post(sched, f"{base}/schedule-templates",
                    {"department_id": str(w["dep"]), f"c_{w['doc']}_0_morning_p": "10", f"c_{w['doc']}_0_morning_o": "2"},
                    token=token)
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(ScheduleTemplate)
                              .where(ScheduleTemplate.hospital_id == w["hid"])) == 1

    # a department of another hospital is refused, never swapped for one of this hospital
    r = await _post(sched, f"{base}/schedule-templates", {"department_id": str(w["other_dep"])}, token=token)
    assert r.status_code == 422
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(ScheduleTemplate)
                              .where(ScheduleTemplate.hospital_id == w["hid"])) == 1

    first = dt.date(2026, 11, 23)  # a Monday
    r = await _post(sched, f"{base}/schedules/generate",
                    {"from_date": first.isoformat(), "to_date": (first + dt.timedelta(days=13)).isoformat()}, token=token)
    assert r.status_code == 303
    async with db.read() as s:
        drafts = list(await s.scalars(select(Schedule).where(Schedule.hospital_id == w["hid"])
                                      .order_by(Schedule.date)))
    assert [(d.date, d.status) for d in drafts] == [(first, "draft"), (first + dt.timedelta(days=7), "draft")]
    calendar = await sched.get(f"{base}/schedules?from={first}")
    assert 'id="publish-all"' in calendar.text
    r = await _post(sched, f"{base}/schedules/publish",
                    {"from_date": first.isoformat(), "to_date": (first + dt.timedelta(days=13)).isoformat()}, token=token)
    assert r.status_code == 303
    async with db.read() as s:
        assert set(await s.scalars(select(Schedule.status).where(Schedule.hospital_id == w["hid"]))) == {"published"}
    assert len(await _audit(db, "schedule.publish")) == 2


async def test_suspend_shows_the_impact_first_then_revokes_with_refunds_and_resume_keeps_them_revoked(app, db,
                                                                                                   clock):
    w = await _world(db, clock)
    schedule_id, slots = await make_schedule(db, w["now"], hospital_id=w["hid"], department_id=w["dep"],
                                             doctor_id=w["doc"], day=DAY, capacity=4, registration_fee=1500,
                                             consultation_fee=0)
    paid = await _book(db, w["now"], slots[0], pay=True)
    held = await _book(db, w["now"], slots[0], pay=False)
    sched = await _as(app, w, SCHEDULER)
    base = f"/staff/hospitals/{w['hid']}/schedules/{schedule_id}"
    token = await token_of(sched, base)

    low = await _post(sched, f"{base}/capacity", {"platform_capacity": "1", "onsite_capacity": "0"}, token=token)
    assert low.status_code == 409 and 'id="form-error"' in low.text

    preview = await _post(sched, f"{base}/suspend/preview", {"reason": "医生临时出诊"}, token=token)
    assert preview.status_code == 200
    assert text_of(preview.text).count("¥15.00") >= 1 and 'id="impact-bookings">2<' in preview.text
    async with db.read() as s:
        assert (await s.get(Schedule, schedule_id)).status == "published"  # the preview changed nothing
    done = await _post(sched, f"{base}/suspend", {"reason": "医生临时出诊"}, token=token)
    assert done.status_code == 303
    async with db.read() as s:
        states = {b.id: b.state for b in await s.scalars(select(Booking).where(Booking.id.in_([paid, held])))}
        refunds = await s.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.topic == "payment.refund"))
    assert states == {paid: "revoked", held: "revoked"} and refunds == 1
    [entry] = await _audit(db, "schedule.suspend")
    assert entry.object_id == str(schedule_id) and '"revoked":2' in entry.detail.replace(' ', '')

    page = await sched.get(base)
    assert "本次停诊撤销的 2 个预约仍为已取消" in text_of(page.text)
    assert "候补队列无人等待" in text_of(page.text)
    resumed = await _post(sched, f"{base}/resume", token=token)
    assert resumed.status_code == 303
    async with db.read() as s:
        assert (await s.get(Schedule, schedule_id)).status == "published"
        states = {b.id: b.state for b in await s.scalars(select(Booking).where(Booking.id.in_([paid, held])))}
    assert states == {paid: "revoked", held: "revoked"}
    [lifted] = await _audit(db, "schedule.resume")
    assert '"revoked":2' in lifted.detail.replace(' ', '')
    again = await _post(sched, f"{base}/resume", token=token)
    assert again.status_code == 409 and 'id="form-error"' in again.text


async def test_leave_preview_then_confirm_and_a_resume_where_nothing_was_revoked(app, db, clock):
    w = await _world(db, clock)
    first, _ = await make_schedule(db, w["now"], hospital_id=w["hid"], department_id=w["dep"], doctor_id=w["doc"],
                                   day=DAY)
    second, _ = await make_schedule(db, w["now"], hospital_id=w["hid"], department_id=w["dep"], doctor_id=w["doc"],
                                    day=DAY + dt.timedelta(days=1))
    admin = await _as(app, w, ADMIN)
    token = await token_of(admin, f"/staff/hospitals/{w['hid']}/leave")
    form = {"doctor_id": str(w["doc"]), "from_date": DAY.isoformat(),
            "to_date": (DAY + dt.timedelta(days=1)).isoformat(), "reason": "休假"}
    preview = await _post(admin, f"/staff/hospitals/{w['hid']}/leave/preview", form, token=token)
    assert preview.status_code == 200 and 'id="impact-sessions">2<' in preview.text
    assert 'id="leave-confirm"' in preview.text
    done = await _post(admin, f"/staff/hospitals/{w['hid']}/leave", form, token=token)
    assert done.status_code == 303
    assert len(await _audit(db, "schedule.suspend")) == 2
    r = await _post(admin, f"/staff/hospitals/{w['hid']}/schedules/{first}/resume", token=token)
    assert r.status_code == 303
    async with db.read() as s:
        assert (await s.get(Schedule, first)).status == "published"
        assert (await s.get(Schedule, second)).status == "suspended"
    assert len(await _audit(db, "schedule.resume")) == 1


async def test_operator_onboards_a_hospital_creates_staff_and_searches_the_audit_log(app, db, clock):
    w = await _world(db, clock)
    op = await _as(app, w, OPERATOR)
    token = await token_of(op, "/staff/operator/hospitals")
    hospital = {"name": "丙医院", "level": "三级甲等", "city": "上海市", "district": "徐汇区", "address": "一号路",
                "phone": "021-1234", "latitude": "31.2", "longitude": "121.4", "timezone": "Asia/Shanghai",
                "entrance": "department", "his_mode": "local"}
    r = await _post(op, "/staff/operator/hospitals", hospital, token=token)
    assert r.status_code == 303
    needs_his = await _post(op, "/staff/operator/hospitals", {**hospital, "name": "丁医院", "his_mode": "realtime"},
                            token=token)
    assert needs_his.status_code == 409 and 'id="form-error"' in needs_his.text
    listing = await op.get("/staff/operator/hospitals")
    assert "丙医院" in listing.text and "丁医院" not in listing.text
    assert len(await _audit(db, "hospital.create")) == 1

    r = await _post(op, "/staff/operator/staff", {"username": "newdesk1", "password": "a-long-password-1",
                                                  "role": "front_desk", "hospital_id": str(w["hid"]),
                                                  "display_name": "新人"}, token=token)
    assert r.status_code == 303
    assert "newdesk1" in (await op.get("/staff/operator/staff")).text

    log = await op.get("/staff/audit", params={"action": "hospital.create"})
    assert log.status_code == 200 and "hospital.create" in log.text
    admin = await _as(app, w, ADMIN)
    assert (await admin.get("/staff/audit", params={"hospital_id": str(w["other"])})).status_code == 404
    own = await admin.get("/staff/audit")
    assert own.status_code == 200 and "hospital.create" not in own.text  # not their hospital's entry


async def test_operator_retries_a_dead_letter_and_it_is_audited(app, db, clock, settings):
    from guahao.jobs.runner import JobConfig, drain
    from guahao.outbox import service as outbox
    from guahao.outbox.registry import JobContext

    w = await _world(db, clock)
    async with db.begin() as s:
        await outbox.enqueue(s, topic="test.nobody_listens", dedupe_key=f"dead:{next(_seq)}", payload={"x": 1},
                             now=clock.now(), hospital_id=w["hid"])
    await drain(JobContext(db=db, clock=clock, settings=settings), config=JobConfig())
    async with db.read() as s:
        dead = await s.scalar(select(OutboxMessage).where(OutboxMessage.state == "dead"))
    op = await _as(app, w, OPERATOR)
    page = await op.get("/staff/operator/jobs")
    assert f'id="dead-{dead.id}"' in page.text
    r = await _post(op, f"/staff/operator/jobs/{dead.id}/retry", token=csrf_of(page.text))
    assert r.status_code == 303
    async with db.read() as s:
        assert (await s.get(OutboxMessage, dead.id)).state == "pending"
    assert len(await _audit(db, "job.retry")) == 1
    again = await _post(op, f"/staff/operator/jobs/{dead.id}/retry", token=csrf_of(page.text))
    assert again.status_code == 409


@pytest.mark.parametrize("path", ["/staff/operator/hospitals", "/staff/operator/jobs", "/staff/operator/staff"])
async def test_operator_pages_refuse_hospital_staff(app, db, clock, path):
    w = await _world(db, clock)
    admin = await _as(app, w, ADMIN)
    assert (await admin.get(path)).status_code == 403


async def test_operator_sets_a_his_connection_and_switches_the_mode_without_showing_the_key(app, db, clock):
    w = await _world(db, clock)
    op = await _as(app, w, OPERATOR)
    url = f"/staff/operator/hospitals/{w['hid']}"
    page = await op.get(url)
    assert page.status_code == 200 and 'id="his-form"' in page.text
    token = csrf_of(page.text)
    form = {"name": "甲医院", "short_name": "", "level": "三级甲等", "city": "北京市", "district": "东城区",
            "address": "测试路1号", "phone": "010-1234", "latitude": "39.91", "longitude": "116.41",
            "timezone": "Asia/Shanghai", "entrance": "department", "introduction": "", "active": "on"}
    refused = await _post(op, url, {**form, "his_mode": "synced"}, token=token)
    assert refused.status_code == 409 and 'id="form-error"' in refused.text  # no connection yet
    key = "ab" * 16
    r = await _post(op, f"{url}/his-connection", {"his_base_url": "http://127.0.0.1:9/his", "his_platform": "guahao",
                                                  "his_pool": "web", "his_key": key}, token=token)
    assert r.status_code == 303
    [entry] = await _audit(db, "his_connection.set")
    assert key not in entry.detail
    r = await _post(op, url, {**form, "his_mode": "synced"}, token=token)
    assert r.status_code == 303
    [update] = await _audit(db, "hospital.update")
    assert '"his_mode"' in update.detail and '"name"' not in update.detail  # only what changed
    shown = await op.get(url)
    assert key not in shown.text and "guahao" in shown.text
