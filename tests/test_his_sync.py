"""The sync of a synced hospital against a real simulator process: schedules mirrored from the
HIS platform pool, capacity changes (a cut below what is sold flags, never oversells), a
session the HIS cancelled becoming our 停诊 with refund and SMS once, the window's on-site
sales not touching our pool, and bad data from the HIS refused without harm."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from guahao.booking import actions as booking_actions
from guahao.booking.errors import SlotSoldOut
from guahao.core.audit import AuditEntry, load_detail
from guahao.his import sync
from guahao.his.client import HisBadAnswer
from guahao.outbox.models import OutboxMessage
from guahao.payments.fake import InMemoryPayments
from guahao.payments.models import Refund
from guahao.scheduling.models import Schedule
from tests.booking_builders import make_patient
from tests.builders import make_account
from tests.his_records_support import fresh_his_clients  # noqa: F401 (fixture)
from tests.his_support import his_sim  # noqa: F401 (fixture)
from tests.his_synced_support import (
    BAND,
    DAY,
    SESSION,
    booking,
    confirmed,
    held,
    his_rows,
    job_context,
    platform_slot,
    run_jobs,
    seat_count,
    synced_world,
)
from tests.payments_support import start_payment
from tests.test_his_client import _Liar, liar  # noqa: F401 (fixture)


@pytest.fixture
def fake(app, clock) -> InMemoryPayments:
    port = InMemoryPayments(clock=clock)
    app.state.providers["payments"] = port
    return port


async def _sync(db, clock, hid):
    return await sync.sync_hospital(db, hid, now=clock.now())


async def _schedule(db, his_session_id: str) -> Schedule:
    async with db.read() as s:
        return await s.scalar(select(Schedule).where(Schedule.his_session_id == his_session_id))


async def test_sync_mirrors_sessions_and_bands_and_a_second_run_changes_nothing(client, db, clock, his_sim):
    w = await synced_world(client, db, clock, his_sim)
    assert w["sync"].created == 6  # 3 doctors x am/pm on DAY
    schedule = await _schedule(db, SESSION)
    assert (schedule.date, schedule.period, schedule.status, schedule.doctor_id) == (
        DAY, "morning", "published", w["doctors"]["D001"])
    slot = await platform_slot(db, BAND)
    assert slot.capacity == 2 and await seat_count(db, slot.id) == 2  # the `guahao` pool, not shared/onsite

    again = await _sync(db, clock, w["hospital"])
    assert (again.created, again.grown, again.cut, again.refused) == (0, 0, 0, [])
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Schedule)) == 6


async def test_window_sales_of_the_onsite_pool_do_not_change_our_platform_pool(client, db, clock, his_sim):
    w = await synced_world(client, db, clock, his_sim)
    for _ in range(4):  # the whole on-site pool of the band, sold at the window
        his_sim.admin("POST", "/admin/window/sales", {"band_id": BAND})
    await _sync(db, clock, w["hospital"])
    slot = await platform_slot(db, BAND)
    assert slot.capacity == 2 and await seat_count(db, slot.id) == 2
    for _ in range(2):
        await held(db, clock, slot.id)  # both platform numbers still sell


async def test_capacity_increase_at_the_his_grows_our_pool(client, db, clock, his_sim):
    w = await synced_world(client, db, clock, his_sim)
    his_sim.admin("POST", "/admin/capacity", {"band_id": BAND, "pool": "guahao", "capacity": 5})
    report = await _sync(db, clock, w["hospital"])
    slot = await platform_slot(db, BAND)
    assert report.grown == 3 and slot.capacity == 5 and await seat_count(db, slot.id) == 5


async def test_capacity_cut_below_sold_keeps_the_sold_numbers_and_flags_the_extra_bookings(client, db, clock, his_sim):
    w = await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    first, _, _ = await confirmed(db, clock, slot.id)
    second, _, _ = await held(db, clock, slot.id)  # a running hold is sold too
    his_sim.admin("POST", "/admin/capacity", {"band_id": BAND, "pool": "guahao", "capacity": 1})

    report = await _sync(db, clock, w["hospital"])
    slot = await platform_slot(db, BAND)
    assert slot.capacity == 2 and await seat_count(db, slot.id) == 2  # max(new, sold): nobody loses a number
    assert report.flagged == [second]  # the later number is beyond the new capacity
    assert ((await booking(db, first)).his_flag, (await booking(db, second)).his_flag) == (None, "capacity_cut")
    assert ((await booking(db, first)).state, (await booking(db, second)).state) == ("confirmed", "held")
    account, _ = await make_account(db, clock.now())
    patient = await make_patient(db, clock.now(), account)
    with pytest.raises(SlotSoldOut):  # and nothing more is sold
        async with db.begin() as s:
            await booking_actions.do_hold(s, account_id=account, patient_id=patient, slot_id=slot.id,
                                          now=clock.now())
    again = await _sync(db, clock, w["hospital"])
    assert again.flagged == [] and (await platform_slot(db, BAND)).capacity == 2  # flagged once, still no oversell
    async with db.read() as s:  # audited: the creation, then the cut (the unchanged third run writes nothing)
        created, cut = list(await s.scalars(select(AuditEntry).where(
            AuditEntry.action == "schedule.sync_from_his", AuditEntry.object_id == str(slot.schedule_id))
            .order_by(AuditEntry.id)))
    assert load_detail(created)["created"] is True
    assert (load_detail(cut)["flagged"], cut.hospital_id, cut.staff_id) == ([second], w["hospital"], None)


async def test_capacity_cut_with_free_numbers_removes_only_free_ones(client, db, clock, his_sim):
    w = await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    his_sim.admin("POST", "/admin/capacity", {"band_id": BAND, "pool": "guahao", "capacity": 5})
    await _sync(db, clock, w["hospital"])
    sold, _, _ = await confirmed(db, clock, slot.id)
    his_sim.admin("POST", "/admin/capacity", {"band_id": BAND, "pool": "guahao", "capacity": 1})
    report = await _sync(db, clock, w["hospital"])
    assert report.cut == 4 and report.flagged == []
    assert (await platform_slot(db, BAND)).capacity == 1 and (await booking(db, sold)).visit_no is not None


async def test_a_session_cancelled_at_the_his_becomes_our_suspension_with_refund_and_sms_once(
        client, db, clock, his_sim, app, settings, fake):
    w = await synced_world(client, db, clock, his_sim)
    ctx = job_context(app, settings, clock)
    slot = await platform_slot(db, BAND)
    booking_id, token, _ = await held(db, clock, slot.id)
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    headers, body = fake.pay(no)
    assert (await client.post("/api/v1/payments/notify/paysim", content=body, headers=headers)).status_code == 200
    await run_jobs(ctx, clock)  # confirmed at the HIS
    sms = ctx.providers["sms"]
    before = len(sms.sent)

    his_sim.admin("POST", f"/admin/sessions/{SESSION}/cancel")  # the doctor is off, decided at the hospital
    for _ in range(2):  # a second sync sees the same cancelled session and does nothing more
        report = await _sync(db, clock, w["hospital"])
    schedule = await _schedule(db, SESSION)
    assert schedule.status == "suspended" and report.suspended == []
    assert (await booking(db, booking_id)).state == "revoked"
    await run_jobs(ctx, clock)
    async with db.read() as s:
        refunds = list(await s.scalars(select(Refund)))
        audits = await s.scalar(select(func.count()).select_from(AuditEntry)
                                .where(AuditEntry.action == "schedule.suspend_by_his"))
        revoked_sms = await s.scalar(select(func.count()).select_from(OutboxMessage)
                                     .where(OutboxMessage.topic == "notify.booking_revoked"))
    assert len(refunds) == 1 and refunds[0].amount == (await booking(db, booking_id)).amount_due
    assert audits == 1 and revoked_sms == 1
    assert any(m.template == "booking_revoked" for m in sms.sent[before:]), [m.template for m in sms.sent]
    # the order at the HIS was cancelled by the HIS itself; our write-back agrees with it
    assert his_rows(his_sim, "SELECT state FROM orders WHERE platform = 'guahao'") == [("cancelled",)]


async def test_negative_capacity_from_the_his_is_refused_and_the_pool_stays(client, db, clock, his_sim, app,
                                                                            settings):
    w = await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    _commit(his_sim, "UPDATE pools SET capacity = -3 WHERE band_id = ? AND pool = 'guahao'", BAND)
    with pytest.raises(HisBadAnswer):
        await _sync(db, clock, w["hospital"])
    # the job itself logs it and carries on with other hospitals (no exception out of it)
    assert await sync.sync_all(job_context(app, settings, clock)) == []
    assert (await platform_slot(db, BAND)).capacity == 2 and await seat_count(db, slot.id) == 2


async def test_unknown_codes_from_the_his_are_refused_per_session(client, db, clock, his_sim):
    w = await synced_world(client, db, clock, his_sim)
    _commit(his_sim, "INSERT INTO doctors VALUES ('D999', 'NEI', '赵医生', '主任医师')")
    _commit(his_sim, "INSERT INTO sessions (id, doctor_code, date, half) VALUES ('S-X', 'D999', ?, 'am')",
            DAY.isoformat())
    _commit(his_sim, "INSERT INTO bands VALUES ('S-X-1', 'S-X', '08:00', '09:00')")
    _commit(his_sim, "INSERT INTO pools VALUES ('S-X-1', 'guahao', 3)")
    his_sim.admin("POST", "/admin/capacity", {"band_id": BAND, "pool": "guahao", "capacity": 3})
    report = await _sync(db, clock, w["hospital"])
    assert report.refused == [("S-X", "unknown department or doctor code")]
    assert await _schedule(db, "S-X") is None
    assert (await platform_slot(db, BAND)).capacity == 3  # the good sessions still synced


def _commit(sim, sql: str, *args) -> None:
    import sqlite3

    conn = sqlite3.connect(str(sim.db_path), timeout=30)
    try:
        conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()



async def test_the_demo_synced_hospital_syncs_every_session_of_the_simulator(db, clock, settings, his_sim):
    from guahao.demo.seed import run_seed
    from guahao.his import connections
    from guahao.his.schemas import HisConnectionUpdate

    report = await run_seed(settings, if_empty=True, clock=clock, db=db, echo=lambda _: None)
    [built] = [b for b in report.hospitals if b.spec.his is not None and b.spec.his.mode == "synced"]
    async with db.begin() as s:  # the demo's connection, pointed at this test's simulator
        await connections.do_set_connection(s, built.id, HisConnectionUpdate(
            base_url=his_sim.url, platform="guahao", pool="guahao", key=his_sim.platform_key().hex()),
            now=clock.now())
    his_sim.seed(DAY, 2)
    result = await _sync(db, clock, built.id)
    assert result.refused == [] and result.created == 12  # 3 doctors x am/pm x 2 days, fees and codes all found


async def test_the_demo_realtime_hospital_gets_the_his_layout_from_the_sync_job(db, clock, settings, his_sim, app):
    """Realtime holds are decided by the HIS, but patients pick our mirror of its sessions and
    bands: the periodic job mirrors realtime hospitals too (capacity = the shared pool)."""
    from guahao.demo.seed import run_seed
    from guahao.his import connections
    from guahao.his.schemas import HisConnectionUpdate

    report = await run_seed(settings, if_empty=True, clock=clock, db=db, echo=lambda _: None)
    [built] = [b for b in report.hospitals if b.spec.his is not None and b.spec.his.mode == "realtime"]
    async with db.begin() as s:
        await connections.do_set_connection(s, built.id, HisConnectionUpdate(
            base_url=his_sim.url, platform="guahao", pool="shared", key=his_sim.platform_key().hex()),
            now=clock.now())
    his_sim.seed(DAY, 2)
    reports = await sync.sync_all(job_context(app, settings, clock))
    [mine] = [r for r in reports if r.hospital_id == built.id]
    assert mine.refused == [] and mine.created > 0
    async with db.read() as s:
        mirrored = await s.scalar(select(func.count()).select_from(Schedule).where(
            Schedule.hospital_id == built.id, Schedule.his_session_id.is_not(None)))
    assert mirrored == mine.created


async def test_malformed_answers_are_refused_logged_and_change_nothing(client, db, clock, his_sim, app, settings,
                                                                       liar):
    from tests.his_records_support import connect

    w = await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    _Liar.answers = {"/v1/availability": (200, b"{\"sessions\": [{\"session_id\": 7"),
                     "/v1/orders": (200, b"<html>not json</html>")}
    await connect(client, w["operator"], w["hospital"], his_sim, base_url=f"http://127.0.0.1:{liar.server_port}")
    clock.advance(seconds=1)  # (the repointed connection gets a new client)
    assert await sync.sync_all(job_context(app, settings, clock)) == []  # logged, no exception out of the job
    assert (await platform_slot(db, BAND)).capacity == 2 and await seat_count(db, slot.id) == 2
    r = await client.get(f"/api/v1/staff/hospitals/{w['hospital']}/his-drift", headers=w["operator"])
    assert r.status_code == 200 and r.json()["his_error"] == "his_bad_answer"
