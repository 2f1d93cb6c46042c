"""The back office's 候补 rules page and release-mode (摇号) pages over plain HTTP: they call the
same actions as the JSON routes (waitlist.rules.do_update_rules, draw.service.do_set_mode),
write the same audit rows, refuse a post without the CSRF token, keep to the staff member's
hospital, and read in zh-CN and English. Roles: tests/staff_page_table.py (checked by
tests/test_staff_admin_pages.py and tests/test_staff_access_pages.py)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from guahao.core.audit import AuditEntry
from guahao.scheduling.models import Schedule
from guahao.waitlist import rules as waitlist_rules
from tests.booking_builders import make_schedule
from tests.builders import make_department, make_doctor, make_hospital
from tests.staff_web_support import login, make_staff_user, page_client, text_of, token_of
from tests.web_support import csrf_of

DAY = dt.date(2026, 11, 21)
WAITLIST_FORM = {"enabled": "on", "max_entries_per_person": "2", "offer_minutes": "45",
                 "cutoff_minutes_before_visit_day": "120", "quiet_from": "23:00", "quiet_until": "06:30"}


async def _world(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now, name="甲医院")
    other = await make_hospital(db, now, name="乙医院")
    dep = await make_department(db, hid, name="心内科")
    doc = await make_doctor(db, hid, dep, name="张伟")
    other_dep = await make_department(db, other, name="外科")
    schedule, _ = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY,
                                      release_at=now + dt.timedelta(minutes=10))
    users = {role: await make_staff_user(db, now, role=role, hospital_id=hid)
             for role in ("hospital_admin", "scheduler", "front_desk")}
    return {"hid": hid, "other": other, "dep": dep, "other_dep": other_dep, "schedule": schedule, "users": users}


async def _as(app, w, role: str, locale: str = "zh-CN"):
    client = page_client(app, locale)
    assert (await login(client, w["users"][role])).status_code == 303
    return client


async def _audit(db, action: str) -> list[AuditEntry]:
    async with db.read() as s:
        return list(await s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


async def _mode(db, schedule_id: int) -> str:
    async with db.read() as s:
        return await s.scalar(select(Schedule.release_mode).where(Schedule.id == schedule_id))


async def test_an_admin_edits_the_waitlist_rules_and_the_change_is_audited(app, db, clock):
    w = await _world(db, clock)
    admin = await _as(app, w, "hospital_admin")
    path = f"/staff/hospitals/{w['hid']}/waitlist-rules"
    page = await admin.get(path)
    assert page.status_code == 200 and 'id="waitlist-rules-form"' in page.text
    assert 'id="w-max_entries_per_person" name="max_entries_per_person" value="3"' in page.text  # the default K
    assert "候补规则" in text_of(page.text)
    token = csrf_of(page.text)

    no_csrf = await admin.post(path, data=WAITLIST_FORM)
    assert no_csrf.status_code == 403
    too_many = await admin.post(path, data={**WAITLIST_FORM, "max_entries_per_person": "11", "csrf_token": token})
    assert too_many.status_code == 422 and 'id="form-error"' in too_many.text
    assert await _audit(db, "waitlist_rules.update") == []

    saved = await admin.post(path, data={**WAITLIST_FORM, "csrf_token": token})  # strike box left unticked
    assert saved.status_code == 303 and saved.headers["location"].endswith("?saved=1")
    async with db.read() as s:
        rules = await waitlist_rules.get_rules(s, w["hid"])
    assert (rules.max_entries_per_person, rules.offer_minutes, rules.cutoff_minutes_before_visit_day,
            rules.lapse_counts_as_strike, rules.quiet_from, rules.quiet_until) == (
        2, 45, 120, False, dt.time(23, 0), dt.time(6, 30))
    [entry] = await _audit(db, "waitlist_rules.update")
    assert entry.object_id == str(w["hid"]) and '"offer_minutes":"45"' in entry.detail.replace(" ", "")
    shown = await admin.get(f"{path}?saved=1")
    assert 'id="notice"' in shown.text and 'value="45"' in shown.text


async def test_the_waitlist_rules_page_is_the_admins_and_in_english_too(app, db, clock):
    w = await _world(db, clock)
    scheduler = await _as(app, w, "scheduler")
    assert (await scheduler.get(f"/staff/hospitals/{w['hid']}/waitlist-rules")).status_code == 403
    admin = await _as(app, w, "hospital_admin", locale="en")
    assert (await admin.get(f"/staff/hospitals/{w['other']}/waitlist-rules")).status_code == 404
    page = await admin.get(f"/staff/hospitals/{w['hid']}/waitlist-rules")
    assert "Most live 候补 entries per person (K)" in text_of(page.text)
    assert "每人同时有效的候补数上限" not in page.text
    assert f'href="/staff/hospitals/{w["hid"]}/release-modes"' in page.text  # in the side navigation


async def test_an_admin_sets_a_departments_release_mode_and_its_sessions_follow(app, db, clock):
    w = await _world(db, clock)
    admin = await _as(app, w, "hospital_admin")
    path = f"/staff/hospitals/{w['hid']}/release-modes"
    page = await admin.get(path)
    assert page.status_code == 200 and f'id="department-mode-{w["dep"]}"' in page.text
    assert 'id="draw-window">30<' in page.text  # the draw's rules, changed on the booking rules page
    token = csrf_of(page.text)
    done = await admin.post(f"{path}/departments/{w['dep']}", data={"mode": "draw", "csrf_token": token})
    assert done.status_code == 303 and done.headers["location"].endswith("?changed=1")
    assert await _mode(db, w["schedule"]) == "draw"
    [entry] = await _audit(db, "release_mode.update")
    assert entry.object_type == "department" and entry.object_id == str(w["dep"])
    shown = await admin.get(done.headers["location"])
    assert "1 个尚未放号的出诊时段已按此执行" in text_of(shown.text)
    assert '<option value="draw" selected>' in shown.text

    other = await admin.post(f"{path}/departments/{w['other_dep']}", data={"mode": "draw", "csrf_token": token})
    assert other.status_code == 404  # another hospital's department, through this hospital's page
    bad = await admin.post(f"{path}/departments/{w['dep']}", data={"mode": "lottery", "csrf_token": token})
    assert bad.status_code == 422 and 'id="form-error"' in bad.text
    back = await admin.post(f"{path}/departments/{w['dep']}", data={"mode": "inherit", "csrf_token": token})
    assert back.status_code == 303 and await _mode(db, w["schedule"]) == "fifo"


async def test_a_scheduler_sets_a_sessions_release_mode_until_its_release_begins(app, db, clock):
    w = await _world(db, clock)
    scheduler = await _as(app, w, "scheduler")
    base = f"/staff/hospitals/{w['hid']}/schedules/{w['schedule']}"
    page = await scheduler.get(base)
    assert 'id="release-mode-form"' in page.text
    token = await token_of(scheduler, base)
    done = await scheduler.post(f"{base}/release-mode", data={"mode": "draw", "csrf_token": token})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=release_mode")
    assert await _mode(db, w["schedule"]) == "draw"
    assert 'id="release-mode">摇号放号<' in (await scheduler.get(base)).text
    [entry] = await _audit(db, "release_mode.update")
    assert entry.object_type == "schedule"
    admin = await _as(app, w, "hospital_admin")
    listed = await admin.get(f"/staff/hospitals/{w['hid']}/release-modes")
    assert f'href="{base}"' in listed.text

    clock.advance(minutes=11)  # its release has begun: the mode is frozen
    frozen = await scheduler.post(f"{base}/release-mode", data={"mode": "fifo", "csrf_token": token})
    assert frozen.status_code == 409 and 'id="form-error"' in frozen.text
    assert "不能再更改放号方式" in text_of(frozen.text)
    assert await _mode(db, w["schedule"]) == "draw"
    desk = await _as(app, w, "front_desk")
    assert (await desk.post(f"{base}/release-mode", data={"mode": "fifo", "csrf_token": token})).status_code == 403
