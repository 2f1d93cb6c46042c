"""建档 (medical record) modes against a real HIS simulator process over loopback HTTP:
existing_record_required, auto_create_in_his, create_at_hospital, and the HIS down during the
look-up. The hospitals here run `local` mode: the record rule works with any mode."""
from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select

from guahao.accounts.sms import RecordingSms
from guahao.booking.models import Booking
from guahao.his.records import HisRecord
from guahao.jobs import handlers
from guahao.jobs.runner import drain
from guahao.notifications import templates
from guahao.outbox.registry import JobContext
from tests.booking_builders import make_patient
from tests.builders import make_account
from tests.his_records_support import (  # noqa: F401 (fixture)
    connect,
    fresh_his_clients,
    hold,
    hospital_world,
    operator_headers,
    sim_client,
)
from tests.his_support import his_sim  # noqa: F401 (fixture)


async def _bookings(db) -> int:
    async with db.read() as s:
        return await s.scalar(select(func.count()).select_from(Booking))


async def _records(db, hospital_id: int) -> list[HisRecord]:
    async with db.read() as s:
        return list(await s.scalars(select(HisRecord).where(HisRecord.hospital_id == hospital_id)))


# --- existing_record_required ----------------------------------------------------------------

async def test_patient_with_a_record_at_the_his_books_and_the_booking_carries_it(client, db, clock, his_sim):
    w = await hospital_world(db, clock.now(), record_requirement="existing_record_required")
    await connect(client, await operator_headers(db, clock.now()), w["hospital"], his_sim)
    his = sim_client(his_sim)
    record = await his.create_patient(w["id_number"], w["name"])  # registered at the hospital before
    await his.aclose()

    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 201, r.text
    assert r.json()["his_patient_id"] == record.patient_id and r.json()["record_notice"] is None
    (cached,) = await _records(db, w["hospital"])
    assert (cached.his_patient_id, cached.card_no, cached.source) == (record.patient_id, record.card_no, "found")

    # cached on the person: the next hold does not need the HIS at all
    his_sim.faults(down=True)
    r = await hold(client, w["token"], w["slots"][1], w["patient"])
    assert r.status_code == 201, r.text
    assert r.json()["his_patient_id"] == record.patient_id


async def test_patient_without_a_record_is_told_to_register_at_the_hospital(client, db, clock, his_sim):
    w = await hospital_world(db, clock.now(), record_requirement="existing_record_required")
    await connect(client, await operator_headers(db, clock.now()), w["hospital"], his_sim)

    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 409 and r.json()["code"] == "record_required"
    assert "请先到医院" in r.json()["detail"]
    r = await hold(client, w["token"], w["slots"][0], w["patient"], **{"Accept-Language": "en"})
    assert r.status_code == 409 and "register at the hospital first" in r.json()["detail"]
    assert await _bookings(db) == 0 and await _records(db, w["hospital"]) == []


async def test_a_record_under_another_name_is_not_the_patients(client, db, clock, his_sim):
    w = await hospital_world(db, clock.now(), record_requirement="existing_record_required")
    await connect(client, await operator_headers(db, clock.now()), w["hospital"], his_sim)
    his = sim_client(his_sim)
    await his.create_patient(w["id_number"], "李四")
    await his.aclose()

    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 409 and r.json()["code"] == "record_required"
    assert await _records(db, w["hospital"]) == []


async def test_his_down_during_the_look_up_answers_his_unavailable_and_books_nothing(client, db, clock, his_sim):
    w = await hospital_world(db, clock.now(), record_requirement="existing_record_required")
    await connect(client, await operator_headers(db, clock.now()), w["hospital"], his_sim)
    his = sim_client(his_sim)
    record = await his.create_patient(w["id_number"], w["name"])
    await his.aclose()
    his_sim.faults(down=True)

    key = uuid.uuid4().hex
    r = await hold(client, w["token"], w["slots"][0], w["patient"], key=key)
    assert r.status_code == 503 and r.json()["code"] == "his_unavailable"
    assert "医院系统暂时无法连接" in r.json()["detail"]
    assert await _bookings(db) == 0 and await _records(db, w["hospital"]) == []

    # nothing happened, so a retry with the same key tries again once the HIS is back
    his_sim.faults()
    clock.advance(seconds=1)
    r = await hold(client, w["token"], w["slots"][0], w["patient"], key=key)
    assert r.status_code == 201, r.text
    assert r.json()["his_patient_id"] == record.patient_id


async def test_a_hanging_his_is_given_up_after_the_connections_timeout(client, db, clock, his_sim):
    w = await hospital_world(db, clock.now(), record_requirement="auto_create_in_his")
    await connect(client, await operator_headers(db, clock.now()), w["hospital"], his_sim, timeout_ms=300)
    his_sim.faults(hang=True)
    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 503 and r.json()["code"] == "his_unavailable"
    assert await _bookings(db) == 0 and await _records(db, w["hospital"]) == []


async def test_without_a_connection_nobody_has_a_known_record(client, db, clock):
    w = await hospital_world(db, clock.now(), record_requirement="existing_record_required")
    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 409 and r.json()["code"] == "record_required"


# --- auto_create_in_his ----------------------------------------------------------------------

async def test_auto_create_makes_the_record_at_the_first_hold_and_the_booking_shows_it(client, db, clock, his_sim):
    w = await hospital_world(db, clock.now(), record_requirement="auto_create_in_his")
    await connect(client, await operator_headers(db, clock.now()), w["hospital"], his_sim)

    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 201, r.text
    his_patient_id = r.json()["his_patient_id"]
    assert his_patient_id and r.json()["record_notice"] is None
    his = sim_client(his_sim)
    at_his = await his.find_patient(w["id_number"], w["name"])
    await his.aclose()
    assert at_his is not None and at_his.patient_id == his_patient_id
    (cached,) = await _records(db, w["hospital"])
    assert cached.source == "created" and cached.card_no == at_his.card_no

    r = await client.get(f"/api/v1/bookings/{r.json()['id']}", headers={"Authorization": f"Bearer {w['token']}"})
    assert r.json()["his_patient_id"] == his_patient_id


async def test_two_concurrent_first_holds_create_exactly_one_record(client, db, clock, his_sim):
    w = await hospital_world(db, clock.now(), record_requirement="auto_create_in_his")
    await connect(client, await operator_headers(db, clock.now()), w["hospital"], his_sim)
    # the same person added by a second account: two first holds at once, from two accounts
    other_account, other_token = await make_account(db, clock.now())
    other_patient = await make_patient(db, clock.now(), other_account, name=w["name"], id_number=w["id_number"])
    his_sim.faults(latency_ms=300)  # both look-ups are at the HIS at the same time

    first, second = await asyncio.gather(hold(client, w["token"], w["slots"][0], w["patient"]),
                                         hold(client, other_token, w["slots"][1], other_patient))
    assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)
    assert first.json()["his_patient_id"] == second.json()["his_patient_id"]
    records = await _records(db, w["hospital"])
    assert len(records) == 1 and records[0].his_patient_id == first.json()["his_patient_id"]
    his_sim.faults()
    his = sim_client(his_sim)
    assert (await his.find_patient(w["id_number"])).patient_id == records[0].his_patient_id
    # a second create at the HIS would have been another id; the HIS numbers records in order
    assert (await his.create_patient(w["id_number"], w["name"])).patient_id == records[0].his_patient_id
    await his.aclose()


async def test_auto_create_without_a_connection_books_and_says_register_at_the_hospital(client, db, clock):
    w = await hospital_world(db, clock.now(), record_requirement="auto_create_in_his")
    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 201, r.text
    assert r.json()["his_patient_id"] is None and "建档" in r.json()["record_notice"]


# --- create_at_hospital ----------------------------------------------------------------------

async def test_create_at_hospital_books_and_the_booking_and_sms_say_register_first(client, db, clock, settings):
    w = await hospital_world(db, clock.now(), fee=0, record_requirement="create_at_hospital")
    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 201 and r.json()["state"] == "confirmed", r.text
    assert "窗口或自助机" in r.json()["record_notice"] and r.json()["his_patient_id"] is None
    booking_id = r.json()["id"]
    r = await client.get(f"/api/v1/bookings/{booking_id}",
                         headers={"Authorization": f"Bearer {w['token']}", "Accept-Language": "en"})
    assert "self-service machine" in r.json()["record_notice"]

    handlers.load(settings)
    sms = RecordingSms()
    await drain(JobContext(db=db, clock=clock, settings=settings, providers={"sms": sms}))
    confirmations = [m for m in sms.sent if m.template.startswith("booking_confirmed")]
    assert confirmations and {m.template for m in confirmations} == {"booking_confirmed_register"}
    text = templates.render("booking_confirmed_register", confirmations[0].params, "zh-CN")
    assert "办理建档" in text and confirmations[0].params["code"] in text


async def test_a_hospital_without_the_rule_sends_the_plain_confirmation(client, db, clock, settings):
    w = await hospital_world(db, clock.now(), fee=0)
    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 201 and r.json()["record_notice"] is None
    handlers.load(settings)
    sms = RecordingSms()
    await drain(JobContext(db=db, clock=clock, settings=settings, providers={"sms": sms}))
    assert {m.template for m in sms.sent if m.template.startswith("booking_confirmed")} == {"booking_confirmed"}


# --- what the rule costs a hold ----------------------------------------------------------------

class CountingRecords:
    """The record port, counting what a hold asks of it (the real one does the work)."""

    def __init__(self, real) -> None:
        self.real, self.calls = real, []

    async def cached(self, session, **kw):
        self.calls.append("cached")
        return await self.real.cached(session, **kw)

    async def look_up(self, db, **kw):
        self.calls.append("look_up")
        return await self.real.look_up(db, **kw)


async def test_the_his_is_asked_only_for_a_persons_first_hold_at_a_hospital_with_the_rule(app, client, db, clock,
                                                                                          his_sim):
    counting = CountingRecords(app.state.providers["his_records"])
    app.state.providers["his_records"] = counting
    plain = await hospital_world(db, clock.now())
    r = await hold(client, plain["token"], plain["slots"][0], plain["patient"])
    assert r.status_code == 201 and counting.calls == []  # no rule: not even the cache is read

    w = await hospital_world(db, clock.now(), record_requirement="auto_create_in_his")
    await connect(client, await operator_headers(db, clock.now()), w["hospital"], his_sim)
    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    # the hold's miss, the look-up step's own read, the HIS, the hold again
    assert r.status_code == 201 and counting.calls == ["cached", "cached", "look_up", "cached"]
    counting.calls.clear()
    r = await hold(client, w["token"], w["slots"][1], w["patient"])
    assert r.status_code == 201 and counting.calls == ["cached"]
