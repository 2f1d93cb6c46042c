"""The patient's draw page after entering, and the hospital's rules in plain words naming the
draw and the waitlist, over plain HTTP (no script)."""
from __future__ import annotations

import datetime as dt
import re

from guahao.draw import service as draw_service
from tests.booking_builders import make_patient
from tests.builders import make_account, make_department, make_hospital
from tests.draw_support import draw_world
from tests.staff_web_support import page_client, text_of
from tests.waitlist_support import make_world
from tests.web_support import csrf_of


async def _patient_browser(app, db, clock, patients: int = 1):
    account_id, token = await make_account(db, clock.now())
    ids = [await make_patient(db, clock.now(), account_id) for _ in range(patients)]
    client = page_client(app)
    client.cookies.set("guahao_session", token)
    return client, ids


async def test_after_entering_the_page_shows_the_receipt_and_countdowns_not_the_form(app, db, clock):
    world = await draw_world(db, clock, window=30)
    client, (first, second) = await _patient_browser(app, db, clock, patients=2)
    clock.set(world.release_at + dt.timedelta(seconds=3))
    path = f"/schedules/{world.schedule_id}/draw"
    before = await client.get(path)
    assert 'id="draw-form"' in before.text
    assert re.search(r"登记开放至 [^，。]+，还有", text_of(before.text))  # "还有 0:27", not a bare count
    entered = await client.post(path, data={"csrf_token": csrf_of(before.text), "patient_id": str(first),
                                            "waitlist_opt_in": "1"})
    assert entered.status_code == 303

    page = await client.get(entered.headers["location"])
    html = page.text
    assert 'id="entered"' in html and 'id="my-entries"' in html
    assert re.search(r'class="muted receipt">[^<]*<code>[0-9a-f]{32}</code>', html)
    assert 'id="draw-form"' not in html and 'name="waitlist_opt_in"' not in html  # no second entry form
    assert 'id="result-countdown"' in html and 'href="#draw-rules"' in html
    assert not re.search(r"</strong>\s*·", html)  # no dangling dot after the masked name
    assert 'id="enter-another"' in html  # the account's other patient may still enter

    another = await client.get(f"{path}?another=1")
    assert 'id="draw-form"' in another.text
    assert f'name="patient_id" value="{second}"' in another.text
    assert f'name="patient_id" value="{first}"' not in another.text


async def test_before_the_window_the_countdown_reads_in_words(app, db, clock):
    world = await draw_world(db, clock, window=30)
    client, _ = await _patient_browser(app, db, clock)
    page = await client.get(f"/schedules/{world.schedule_id}/draw")
    assert "登记将于" in text_of(page.text) and "开始，还有" in text_of(page.text)
    assert 'id="enter-draw" disabled' in page.text


async def test_the_hospital_rules_name_the_draw_and_the_waitlist_rules(app, db, clock):
    world = await make_world(db, clock, offer_minutes=20, max_entries_per_person=2)
    client = page_client(app)
    page = text_of((await client.get(f"/hospitals/{world['hospital']}")).text)
    assert "须在 20 分钟内支付" in page and "最多同时候补 2 个号源" in page
    assert "候补于就诊前一天 23:00 截止" in page
    assert "摇号" not in page  # first come at this hospital: no draw to explain

    now = clock.now()
    draw_dep = await make_department(db, world["hospital"], name="眼科")
    async with db.begin() as s:
        await draw_service.do_set_mode(s, world["hospital"], mode="draw", now=now, staff_id=None,
                                       department_id=draw_dep)
    page = text_of((await client.get(f"/hospitals/{world['hospital']}")).text)
    assert "眼科的号源以摇号方式放号" in page and "30 秒内均可登记" in page

    drawing = await make_hospital(db, now, name="摇号医院", release_mode="draw", draw_window_seconds=45)
    english = page_client(app, "en")
    page = text_of((await english.get(f"/hospitals/{drawing}")).text)
    assert "New numbers are released by draw" in page and "45 seconds" in page
    assert "The waitlist closes at 23:00 the day before the visit." in page
