"""The HIS drift page (web/staff/his_pages.py): what the JSON drift route reports, as a page
for the operator and the hospital's admin; a local hospital says there is nothing to compare;
other roles and other hospitals' staff are refused."""
from __future__ import annotations

from guahao.his.client import order_id_for
from tests.builders import make_hospital
from tests.his_records_support import fresh_his_clients  # noqa: F401 (fixture)
from tests.his_support import his_sim  # noqa: F401 (fixture)
from tests.his_synced_support import BAND, confirmed, job_context, platform_slot, run_jobs, synced_world
from tests.staff_web_support import login, make_staff_user, page_client, text_of


async def test_the_admin_sees_a_window_cancellation_as_drift(client, app, db, clock, his_sim, settings):
    w = await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    booking_id, _, _ = await confirmed(db, clock, slot.id)
    await run_jobs(job_context(app, settings, clock), clock)  # written back: in agreement
    admin = await make_staff_user(db, clock.now(), role="hospital_admin", hospital_id=w["hospital"])
    async with page_client(app) as browser:
        await login(browser, admin)
        calm = await browser.get(f"/staff/hospitals/{w['hospital']}/his-drift")
        assert calm.status_code == 200 and "无差异" in text_of(calm.text)
        his_sim.admin("POST", f"/admin/orders/guahao/{order_id_for(booking_id)}/cancel")
        r = await browser.get(f"/staff/hospitals/{w['hospital']}/his-drift")
    assert r.status_code == 200
    page = text_of(r.text)
    assert "已在医院窗口取消" in page and order_id_for(booking_id) in page
    assert f"/staff/hospitals/{w['hospital']}/bookings/{booking_id}" in r.text


async def test_local_hospitals_and_other_roles(app, db, clock):
    local = await make_hospital(db, clock.now(), name="本地医院")
    other = await make_hospital(db, clock.now(), name="别家医院")
    admin = await make_staff_user(db, clock.now(), role="hospital_admin", hospital_id=local)
    desk = await make_staff_user(db, clock.now(), role="front_desk", hospital_id=local)
    async with page_client(app) as browser:
        await login(browser, admin)
        r = await browser.get(f"/staff/hospitals/{local}/his-drift")
        assert r.status_code == 200 and "本地模式" in text_of(r.text)
        assert (await browser.get(f"/staff/hospitals/{other}/his-drift")).status_code == 404
    async with page_client(app) as browser:
        await login(browser, desk)
        assert (await browser.get(f"/staff/hospitals/{local}/his-drift")).status_code == 403


async def test_the_operator_reads_the_days_reconciliation(app, db, clock):
    """The page shows reports.reconcile_day (tested in depth through the API); here: it renders
    the balanced day for the operator and refuses a hospital's admin."""
    hid = await make_hospital(db, clock.now())
    operator = await make_staff_user(db, clock.now(), role="platform_operator", hospital_id=None)
    admin = await make_staff_user(db, clock.now(), role="hospital_admin", hospital_id=hid)
    async with page_client(app) as browser:
        await login(browser, operator)
        r = await browser.get("/staff/operator/reconciliation?date=2026-11-18")
        assert r.status_code == 200 and "已平账" in text_of(r.text), text_of(r.text)[-300:]
        assert 'href="/staff/operator/reconciliation"' in r.text  # in the operator's navigation
    async with page_client(app) as browser:
        await login(browser, admin)
        assert (await browser.get("/staff/operator/reconciliation")).status_code == 403
