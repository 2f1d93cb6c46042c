"""候补 entries through /fhir/R4 (issue 14), on both databases: a waiting entry is a `waitlist`
Appointment of its own account only; an offered one is its offer's pending hold; leaving
(PATCH or $book with status cancelled) runs the waitlist's own leave and answers cancelled;
every body validates against the R4 schema and the invariants (tests/fhir_support.py)."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from guahao.booking import actions as booking_actions
from guahao.fhir import mapping
from guahao.outbox.registry import JobContext
from guahao.waitlist import promote
from guahao.waitlist.schemas import WaitlistEntryRead
from tests.builders import auth, make_account
from tests.fhir_support import BASE, DAY, check_body, check_resource, entries, parameters, waitlisted, world
from tests.waitlist_support import run_jobs, states


@pytest.fixture
def ctx(app, settings, clock) -> JobContext:
    return JobContext(db=app.state.db, clock=clock, settings=settings, providers=app.state.providers)


async def _mine(client, token, **query) -> list[dict]:
    response = await client.get(f"{BASE}/Appointment", params=query, headers=auth(token))
    assert response.status_code == 200, response.text
    return entries(check_body(response))


def _by_id(found: list[dict]) -> dict[str, dict]:
    return {a["id"]: a for a in found}


async def test_a_waiting_entry_is_a_waitlist_appointment_of_its_own_account(client, db, clock):
    w = await world(db, clock.now())
    q = await waitlisted(db, clock, w)
    key = f"waitlist-{q['entry']}"
    found = _by_id(await _mine(client, w["token"], patient=f"Patient/{w['patient']}", date=DAY.isoformat()))
    assert list(found) == [key]
    appointment = found[key]
    assert appointment["status"] == "waitlist"
    assert appointment["identifier"] == [{"use": "official", "system": mapping.SID_WAITLIST_ENTRY,
                                          "value": str(q["entry"])}]
    assert "start" not in appointment and "slot" not in appointment
    assert appointment["requestedPeriod"] == [{"start": f"{DAY.isoformat()}T08:00:00+08:00",
                                               "end": f"{DAY.isoformat()}T12:00:00+08:00"}]
    ahead = [e["valueInteger"] for e in appointment["extension"] if e["url"] == mapping.EXT_WAITLIST_AHEAD]
    assert ahead == [0]
    actors = [p["actor"]["reference"] for p in appointment["participant"]]
    assert actors == [f"Patient/{w['patient']}", f"HealthcareService/{q['department']}", f"Location/{w['hospital']}"]
    read = await client.get(f"{BASE}/Appointment/{key}", headers=auth(w["token"]))
    assert read.status_code == 200 and check_body(read) == appointment
    # the JSON API agrees: one waiting entry, the same id
    api = (await client.get("/api/v1/waitlist", headers=auth(w["token"]))).json()["items"]
    assert [(i["id"], i["state"], i["fhir_status"]) for i in api] == [(q["entry"], "waiting", "waitlist")]
    # filters: another date, another status, another patient id of the account
    assert await _mine(client, w["token"], date=(DAY + dt.timedelta(days=1)).isoformat()) == []
    assert await _mine(client, w["token"], status="booked") == []
    assert [a["id"] for a in await _mine(client, w["token"], status="waitlist")] == [key]


async def test_another_account_sees_nothing_of_the_entry(client, db, clock):
    w = await world(db, clock.now())
    q = await waitlisted(db, clock, w)
    _other, other_token = await make_account(db, clock.now())
    theirs = await client.get(f"{BASE}/Appointment", params={"patient": f"Patient/{w['patient']}"},
                              headers=auth(other_token))
    assert check_body(theirs)["total"] == 0
    url = f"{BASE}/Appointment/waitlist-{q['entry']}"
    read = await client.get(url, headers=auth(other_token))
    assert read.status_code == 404 and check_body(read)["issue"][0]["code"] == "not-found"
    patch = await client.patch(url, json={"status": "cancelled"}, headers=auth(other_token))
    assert patch.status_code == 404 and check_body(patch)["issue"][0]["code"] == "not-found"
    assert await states(db, q["schedule"]) == ["waiting"]  # untouched
    assert (await client.get(url)).status_code == 401
    # the seller of the sold-out seat (another account) sees their booking, not the entry
    seller_token = q["sold"][0][1]
    assert [a["status"] for a in await _mine(client, seller_token)] == ["booked"]


async def test_waitlist_ids_never_clash_with_booking_ids(client, db, clock):
    w = await world(db, clock.now())
    q = await waitlisted(db, clock, w)
    body = parameters(appointment_reference=f"Appointment/proposed-{w['slots'][0]}",
                      patient_reference=f"Patient/{w['patient']}")
    held = await client.post(f"{BASE}/Appointment/$hold", json=body,
                             headers={**auth(w["token"]), "Idempotency-Key": uuid.uuid4().hex})
    [booking] = entries(held.json(), "Appointment")
    found = _by_id(await _mine(client, w["token"]))
    assert set(found) == {booking["id"], f"waitlist-{q['entry']}"}
    assert {found[booking["id"]]["status"], found[f"waitlist-{q['entry']}"]["status"]} == {"pending", "waitlist"}
    # the entry's number read as a booking id is not the entry (a booking, or not found)
    plain = await client.get(f"{BASE}/Appointment/{q['entry']}", headers=auth(w["token"]))
    assert plain.status_code == 404 or check_body(plain)["status"] != "waitlist"


async def test_an_offered_entry_is_the_pending_appointment_of_its_hold(client, db, clock, ctx):
    w = await world(db, clock.now())
    q = await waitlisted(db, clock, w)
    seller, _token, _patient, paid = q["sold"][0]
    async with db.begin() as s:  # a seat frees: the head of the queue is offered it
        await booking_actions.do_cancel(s, account_id=seller, booking_id=paid, now=clock.now())
    await run_jobs(ctx)
    assert await states(db, q["schedule"]) == ["offered"]
    offer = (await client.get(f"/api/v1/waitlist/{q['entry']}", headers=auth(w["token"]))).json()
    assert offer["fhir_status"] is None  # the JSON API agrees: the hold is the appointment now
    found = await _mine(client, w["token"])
    assert [(a["id"], a["status"]) for a in found] == [(str(offer["offer_booking_id"]), "pending")]
    assert found[0]["slot"] == [{"reference": f"Slot/{q['slots'][0]}"}]
    gone = await client.get(f"{BASE}/Appointment/waitlist-{q['entry']}", headers=auth(w["token"]))
    assert gone.status_code == 404 and check_body(gone)["issue"][0]["code"] == "not-found"
    # leaving through FHIR is refused for it: the hold is cancelled as an Appointment of its own
    patch = await client.patch(f"{BASE}/Appointment/waitlist-{q['entry']}", json={"status": "cancelled"},
                               headers=auth(w["token"]))
    assert patch.status_code == 404
    assert await states(db, q["schedule"]) == ["offered"]


async def test_leaving_by_patch_runs_the_waitlists_leave_and_answers_cancelled(client, db, clock):
    w = await world(db, clock.now())
    q = await waitlisted(db, clock, w)
    url = f"{BASE}/Appointment/waitlist-{q['entry']}"
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    refused = await client.patch(url, json=[{"op": "replace", "path": "/status", "value": "booked"}],
                                 headers=auth(w["token"]))
    assert refused.status_code == 422 and await states(db, q["schedule"]) == ["waiting"]
    response = await client.patch(url, json=patch, headers=auth(w["token"]))
    assert response.status_code == 200, response.text
    left = check_body(response)
    assert (left["id"], left["status"]) == (f"waitlist-{q['entry']}", "cancelled")
    assert left["cancelationReason"]["coding"][0]["code"] == "patient"
    assert await states(db, q["schedule"]) == ["left"]
    api = (await client.get(f"/api/v1/waitlist/{q['entry']}", headers=auth(w["token"]))).json()
    assert (api["state"], api["fhir_status"]) == ("left", "cancelled")
    again = await client.patch(url, json=patch, headers=auth(w["token"]))  # a retried cancel
    assert again.status_code == 200 and check_body(again) == left
    assert check_body(await client.get(url, headers=auth(w["token"]))) == left
    assert await _mine(client, w["token"], status="waitlist") == []
    assert [a["id"] for a in await _mine(client, w["token"], status="cancelled")] == [left["id"]]


async def test_leaving_by_book_with_status_cancelled(client, db, clock):
    w = await world(db, clock.now())
    q = await waitlisted(db, clock, w)
    body = parameters(appointment_resource={"resourceType": "Appointment", "id": f"waitlist-{q['entry']}",
                                            "status": "cancelled", "participant": [{"status": "declined"}]})
    response = await client.post(f"{BASE}/Appointment/$book", json=body,
                                 headers={**auth(w["token"]), "Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 200, response.text
    [left] = entries(check_body(response), "Appointment")
    assert (left["id"], left["status"]) == (f"waitlist-{q['entry']}", "cancelled")
    assert await states(db, q["schedule"]) == ["left"]


async def test_an_entry_past_its_cutoff_is_cancelled_before_any_sweep(client, db, clock):
    w = await world(db, clock.now())
    q = await waitlisted(db, clock, w)
    clock.set(dt.datetime(2026, 11, 20, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=8))))  # 候补截止 23:00
    [appointment] = await _mine(client, w["token"], date=DAY.isoformat())
    assert appointment["status"] == "cancelled"
    assert appointment["cancelationReason"]["coding"][0]["code"] == "waitlist-closed"
    assert await states(db, q["schedule"]) == ["waiting"]  # the promoter has not closed it yet


async def test_every_entry_state_maps_to_one_valid_appointment_or_to_its_booking(db, clock):
    """The mapping table of docs/FHIR.md, state by state, against the R4 schema and app-1..4."""
    from guahao.scheduling import availability

    w = await world(db, clock.now())
    async with db.read() as session:
        [released] = await availability.released_schedules(session, now=clock.now(), first=DAY, last=DAY)
    now = clock.now()
    base = {"id": 7, "schedule_id": w["schedule"], "hospital_id": w["hospital"], "hospital_name": "医院",
            "department_name": "心内科", "doctor_name": "李医生", "visit_date": DAY, "period": "morning",
            "starts_at": released.starts_at, "patient_id": w["patient"], "patient_name": "王*", "position": 3,
            "ahead": None, "offer_booking_id": None, "offer_expires_at": None, "reason": None,
            "cutoff_at": now + dt.timedelta(days=1), "suspended": False, "joined_at": now, "fhir_status": None}
    cases = {("waiting", None, None): ("waitlist", None), ("left", None, "left"): ("cancelled", "patient"),
             ("closed", None, "cutoff"): ("cancelled", "waitlist-closed"),
             ("skipped", None, "restricted_until"): ("cancelled", "waitlist-skipped"),
             ("offered", 5, None): (None, None), ("fulfilled", 5, None): (None, None),
             ("lapsed", 5, "offer_lapsed"): (None, None), ("left", 5, "offer_cancelled"): (None, None)}
    for (state, offer, reason), (status, code) in cases.items():
        entry = WaitlistEntryRead(**{**base, "state": state, "offer_booking_id": offer, "reason": reason,
                                     "ahead": 2 if state == "waiting" else None})
        assert mapping.waitlist_status(entry, now) == status, state
        if status is None:
            continue
        resource = mapping.waitlist_appointment(entry, released, status=status)
        check_resource(resource)
        assert resource["id"] == "waitlist-7" and resource["status"] == status
        assert resource.get("cancelationReason", {}).get("coding", [{}])[0].get("code") == code
        if state == "skipped":
            assert "restricted_until" in resource["cancelationReason"]["text"]
    late = WaitlistEntryRead(**{**base, "state": "waiting", "cutoff_at": now})
    assert mapping.waitlist_status(late, now) == "cancelled"


async def test_a_suspension_revoking_the_offer_puts_the_waitlist_appointment_back(client, db, clock, ctx):
    from tests.builders import make_staff

    w = await world(db, clock.now())
    q = await waitlisted(db, clock, w)
    seller, _token, _patient, paid = q["sold"][0]
    async with db.begin() as s:
        await booking_actions.do_cancel(s, account_id=seller, booking_id=paid, now=clock.now())
    await run_jobs(ctx)
    [offer] = await _mine(client, w["token"])
    assert offer["status"] == "pending"
    _staff, staff_token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=w["hospital"])
    suspended = await client.post(f"/api/v1/staff/schedules/{q['schedule']}/suspend", json={"reason": "医生出诊任务"},
                                  headers=auth(staff_token))
    assert suspended.status_code == 200, suspended.text
    found = _by_id(await _mine(client, w["token"]))  # the hold is revoked; the queue has not caught up yet
    assert list(found) == [offer["id"]] and found[offer["id"]]["status"] == "cancelled"
    async with db.begin() as s:  # the promoter's next run (the sweep's, at the latest a minute later)
        await promote.do_promote(s, schedule_id=q["schedule"], now=clock.now())
    assert await states(db, q["schedule"]) == ["waiting"]  # back at its place, the queue paused
    found = _by_id(await _mine(client, w["token"]))
    assert set(found) == {offer["id"], f"waitlist-{q['entry']}"}
    assert found[offer["id"]]["status"] == "cancelled"
    assert found[offer["id"]]["cancelationReason"]["coding"][0]["code"] == "hospital-suspended"
    assert found[f"waitlist-{q['entry']}"]["status"] == "waitlist"
