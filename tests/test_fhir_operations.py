"""The IHE ITI Scheduling contracts through /fhir/R4, on both databases: $find, $hold, $book,
cancellation, the caller's own appointments, and the mapping against the JSON API."""
from __future__ import annotations

import datetime as dt
import uuid
from email.utils import parsedate_to_datetime

from tests.booking_builders import make_patient
from tests.builders import auth, make_account, make_staff
from tests.fhir_support import BASE, DAY, check_body, entries, parameters, world


def _key(token: str) -> dict[str, str]:
    return {**auth(token), "Idempotency-Key": uuid.uuid4().hex}


async def _find(client, token, **extra):
    body = parameters(start=DAY.isoformat(), end=DAY.isoformat(), **extra)
    response = await client.post(f"{BASE}/Appointment/$find", json=body, headers=auth(token))
    assert response.status_code == 200, response.text
    return check_body(response)


async def _hold(client, token, slot, patient, headers=None):
    body = parameters(appointment_reference=f"Appointment/proposed-{slot}", patient_reference=f"Patient/{patient}")
    return await client.post(f"{BASE}/Appointment/$hold", json=body, headers=headers or _key(token))


async def test_find_honours_count_and_total_and_never_lists_held_seats(client, db, clock):
    w = await world(db, clock.now(), capacity=3, bands=3)  # three bands of one seat
    found = await _find(client, w["token"], _count=2)
    assert found["type"] == "searchset" and found["total"] == 3
    assert len(entries(found)) == 2
    assert {a["status"] for a in entries(found)} == {"proposed"}
    first = entries(found)[0]["slot"][0]["reference"]
    held = await _hold(client, w["token"], int(first.split("/")[1]), w["patient"])
    assert held.status_code == 200, held.text
    again = await _find(client, w["token"])
    assert again["total"] == 2
    assert first not in {a["slot"][0]["reference"] for a in entries(again)}


async def test_find_filters_by_practitioner_location_and_visit_type(client, db, clock):
    w = await world(db, clock.now())
    assert (await _find(client, w["token"], practitioner=f"PractitionerRole/{w['doctor']}"))["total"] == 1
    assert (await _find(client, w["token"], location_reference=f"Location/{w['hospital']}"))["total"] == 1
    assert (await _find(client, w["token"], location=f"Location/{w['hospital'] + 999}"))["total"] == 0
    assert (await _find(client, w["token"], visit_type="general"))["total"] == 0
    assert (await _find(client, w["token"], visit_type="expert"))["total"] == 1


async def test_hold_gives_one_pending_appointment_and_expires(client, db, clock):
    w = await world(db, clock.now())
    response = await _hold(client, w["token"], w["slots"][0], w["patient"])
    assert response.status_code == 200, response.text
    body = check_body(response)
    [appointment] = entries(body, "Appointment")
    assert appointment["status"] == "pending"
    assert {i["system"].rsplit("/", 1)[1] for i in appointment["identifier"]} == {"visit-number", "booking-code"}
    expires = parsedate_to_datetime(response.headers["Expires"])
    hold_ext = [e for e in appointment["extension"] if e["url"].endswith("hold-expires")][0]["valueInstant"]
    assert expires == dt.datetime.fromisoformat(hold_ext).replace(microsecond=0)
    # the fee is due: the answer says where to pay, as information only
    [info] = entries(body, "OperationOutcome")
    assert info["issue"][0]["severity"] == "information"
    assert f"/bookings/{appointment['id']}/pay" in info["issue"][0]["diagnostics"]


async def test_hold_replays_for_the_same_key_and_is_the_api_hold(client, db, clock):
    w = await world(db, clock.now())
    headers = _key(w["token"])
    first = await _hold(client, w["token"], w["slots"][0], w["patient"], headers)
    second = await _hold(client, w["token"], w["slots"][0], w["patient"], headers)
    assert first.json() == second.json()
    api = await client.post("/api/v1/bookings", json={"slot_id": w["slots"][0], "patient_id": w["patient"]},
                            headers=headers)
    assert api.status_code == 201 and str(api.json()["id"]) == entries(first.json(), "Appointment")[0]["id"]


async def test_sold_out_hold_is_only_a_fatal_not_found_outcome(client, db, clock):
    w = await world(db, clock.now(), capacity=1)
    assert (await _hold(client, w["token"], w["slots"][0], w["patient"])).status_code == 200
    other_account, other_token = await make_account(db, clock.now())
    other = await make_patient(db, clock.now(), other_account)
    response = await _hold(client, other_token, w["slots"][0], other, _key(other_token))
    assert response.status_code == 409
    body = check_body(response)
    assert [r["resourceType"] for r in entries(body)] == ["OperationOutcome"]
    issue = entries(body)[0]["issue"][0]
    assert (issue["severity"], issue["code"]) == ("fatal", "not-found")
    assert issue["details"]["coding"][0]["code"] == "slot_sold_out"
    assert issue["details"]["text"] == "该号源已约满。" or "约满" in issue["details"]["text"]


async def test_rule_refusals_are_business_rule_in_the_callers_language(client, db, clock):
    w = await world(db, clock.now(), capacity=3, bands=3)
    assert (await _hold(client, w["token"], w["slots"][0], w["patient"])).status_code == 200
    headers = {**_key(w["token"]), "Accept-Language": "en"}
    response = await _hold(client, w["token"], w["slots"][1], w["patient"], headers)
    issue = entries(check_body(response))[0]["issue"][0]
    assert (issue["severity"], issue["code"]) == ("error", "business-rule")
    assert issue["details"]["coding"][0]["code"] == "duplicate_booking"
    api = await client.post("/api/v1/bookings", json={"slot_id": w["slots"][1], "patient_id": w["patient"]},
                            headers={**_key(w["token"]), "Accept-Language": "en"})
    assert api.json()["detail"] == issue["details"]["text"]


async def test_book_on_an_expired_hold_is_refused(client, db, clock):
    w = await world(db, clock.now())
    held = entries((await _hold(client, w["token"], w["slots"][0], w["patient"])).json(), "Appointment")[0]
    clock.advance(minutes=16)
    body = parameters(appointment_reference=f"Appointment/{held['id']}")
    response = await client.post(f"{BASE}/Appointment/$book", json=body, headers=_key(w["token"]))
    assert response.status_code == 409
    issue = entries(check_body(response))[0]["issue"][0]
    assert issue["code"] == "business-rule" and issue["details"]["coding"][0]["code"] == "hold_expired"


async def test_free_registration_is_booked_by_book(client, db, clock):
    w = await world(db, clock.now(), fee=False)
    body = parameters(appointment_resource={"resourceType": "Appointment", "status": "proposed",
                                            "slot": [{"reference": f"Slot/{w['slots'][0]}"}],
                                            "participant": [{"actor": {"reference": f"Patient/{w['patient']}"},
                                                             "status": "accepted"}]})
    response = await client.post(f"{BASE}/Appointment/$book", json=body, headers=_key(w["token"]))
    assert response.status_code == 200, response.text
    [appointment] = entries(check_body(response), "Appointment")
    assert appointment["status"] == "booked"
    assert "Expires" not in response.headers


async def test_cancel_by_book_returns_the_seat_and_find_shows_it(client, db, clock):
    w = await world(db, clock.now(), capacity=1)
    held = entries((await _hold(client, w["token"], w["slots"][0], w["patient"])).json(), "Appointment")[0]
    assert (await _find(client, w["token"]))["total"] == 0
    body = parameters(appointment_resource={**held, "status": "cancelled"})
    response = await client.post(f"{BASE}/Appointment/$book", json=body, headers=_key(w["token"]))
    assert response.status_code == 200, response.text
    [cancelled] = entries(check_body(response), "Appointment")
    assert cancelled["status"] == "cancelled" and cancelled["cancelationReason"]["coding"][0]["code"] == "patient"
    assert (await _find(client, w["token"]))["total"] == 1


async def test_patch_cancels_and_nothing_else(client, db, clock):
    w = await world(db, clock.now())
    held = entries((await _hold(client, w["token"], w["slots"][0], w["patient"])).json(), "Appointment")[0]
    url = f"{BASE}/Appointment/{held['id']}"
    refused = await client.patch(url, json=[{"op": "replace", "path": "/start", "value": "x"}], headers=auth(w["token"]))
    assert refused.status_code == 422 and check_body(refused)["resourceType"] == "OperationOutcome"
    response = await client.patch(url, json=[{"op": "replace", "path": "/status", "value": "cancelled"}],
                                  headers={**auth(w["token"]), "Content-Type": "application/json-patch+json"})
    assert response.status_code == 200, response.text
    assert check_body(response)["status"] == "cancelled"


async def test_own_appointments_only(client, db, clock):
    w = await world(db, clock.now(), capacity=2)
    held = entries((await _hold(client, w["token"], w["slots"][0], w["patient"])).json(), "Appointment")[0]
    mine = await client.get(f"{BASE}/Appointment", params={"patient": f"Patient/{w['patient']}",
                                                           "date": DAY.isoformat()}, headers=auth(w["token"]))
    assert [a["id"] for a in entries(check_body(mine))] == [held["id"]]
    other_account, other_token = await make_account(db, clock.now())
    theirs = await client.get(f"{BASE}/Appointment", params={"patient": f"Patient/{w['patient']}"},
                              headers=auth(other_token))
    assert check_body(theirs)["total"] == 0
    read = await client.get(f"{BASE}/Appointment/{held['id']}", headers=auth(other_token))
    assert read.status_code == 404 and check_body(read)["issue"][0]["code"] == "not-found"
    patch = await client.patch(f"{BASE}/Appointment/{held['id']}", json={"status": "cancelled"},
                               headers=auth(other_token))
    assert patch.status_code == 404
    anonymous = await client.get(f"{BASE}/Appointment")
    assert anonymous.status_code == 401 and check_body(anonymous)["issue"][0]["code"] == "login"
    _staff, staff_token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=w["hospital"])
    assert (await client.get(f"{BASE}/Appointment", headers=auth(staff_token))).status_code == 401


async def test_hold_by_id_number_never_echoes_it(client, db, clock):
    from tests.booking_builders import make_id_number

    w = await world(db, clock.now())
    number = make_id_number()
    patient = await make_patient(db, clock.now(), w["account"], id_number=number)
    body = parameters(appointment_reference=f"Appointment/proposed-{w['slots'][0]}",
                      patient_resource={"resourceType": "Patient", "identifier": [
                          {"system": "urn:oid:2.16.156.10011.1.3", "value": number}]})
    response = await client.post(f"{BASE}/Appointment/$hold", json=body, headers=_key(w["token"]))
    assert response.status_code == 200, response.text
    assert number not in response.text and number[-4:] not in response.text
    [appointment] = entries(response.json(), "Appointment")
    assert appointment["participant"][0]["actor"]["reference"] == f"Patient/{patient}"
    assert "display" not in appointment["participant"][0]["actor"]


async def test_mapping_round_trip_against_the_json_api(client, db, clock):
    w = await world(db, clock.now(), capacity=4, bands=2)
    await _hold(client, w["token"], w["slots"][0], w["patient"])
    api = (await client.get(f"/api/v1/doctors/{w['doctor']}/availability",
                            params={"from": DAY.isoformat(), "days": 1})).json()
    remaining = {s["slot_id"]: s["remaining"] for d in api["days"] for p in d["periods"]
                 for sch in p["schedules"] for s in sch["slots"]}
    slots = entries(check_body(await client.get(f"{BASE}/Slot", params={"schedule": f"Schedule/{w['schedule']}"})))
    capacity = {int(s["id"]): [e["valueInteger"] for e in s["extension"] if e["url"].endswith("slot-capacity")][0]
                for s in slots}
    assert capacity == remaining and sorted(remaining.values()) == [1, 2]
    bookings = (await client.get("/api/v1/bookings", headers=auth(w["token"]))).json()["items"]
    mine = entries((await client.get(f"{BASE}/Appointment", headers=auth(w["token"]))).json())
    assert {b["id"]: b["fhir_status"] for b in bookings} == {int(a["id"]): a["status"] for a in mine}


async def test_suspension_makes_slots_busy_unavailable_and_appointments_cancelled(client, db, clock):
    w = await world(db, clock.now())
    held = entries((await _hold(client, w["token"], w["slots"][0], w["patient"])).json(), "Appointment")[0]
    _staff, staff_token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=w["hospital"])
    suspended = await client.post(f"/api/v1/staff/schedules/{w['schedule']}/suspend", json={"reason": "医生出诊任务"},
                                  headers=auth(staff_token))
    assert suspended.status_code == 200, suspended.text
    slot = check_body(await client.get(f"{BASE}/Slot/{w['slots'][0]}"))
    assert slot["status"] == "busy-unavailable"
    assert check_body(await client.get(f"{BASE}/Schedule/{w['schedule']}"))["active"] is False
    appointment = check_body(await client.get(f"{BASE}/Appointment/{held['id']}", headers=auth(w["token"])))
    assert appointment["status"] == "cancelled"
    assert appointment["cancelationReason"]["coding"][0]["code"] == "hospital-suspended"


async def test_realtime_hospital_shows_the_his_counts(app, client, db, clock):
    """At a realtime hospital the HIS decides: Slot and $find show the smaller of its count and
    our free seats, as the API's availability does (scheduling.availability.with_his)."""
    from sqlalchemy import update

    from guahao.catalog.models import Hospital
    from guahao.scheduling.availability import HisCounts
    from guahao.scheduling.models import Slot

    w = await world(db, clock.now(), capacity=3, bands=3)
    async with db.begin() as session:
        await session.execute(update(Hospital).where(Hospital.id == w["hospital"]).values(his_mode="realtime"))
        for i, slot in enumerate(w["slots"]):
            await session.execute(update(Slot).where(Slot.id == slot).values(his_band_id=f"B{i}"))

    class FakeHis:
        async def remaining(self, db, *, hospital_id, first, last, now):
            return HisCounts(by_band={"B0": 1, "B1": 0}, as_of=now)  # B2 unknown to the HIS

    app.state.providers["his_availability"] = FakeHis()
    slots = entries(check_body(await client.get(f"{BASE}/Slot", params={"schedule": f"Schedule/{w['schedule']}"})))
    assert [s["status"] for s in sorted(slots, key=lambda s: int(s["id"]))] == ["free", "busy", "busy"]
    found = await _find(client, w["token"])
    assert [a["slot"][0]["reference"] for a in entries(found)] == [f"Slot/{w['slots'][0]}"]


async def test_book_in_one_call_replays_for_its_key_and_books_once(client, db, clock):
    from sqlalchemy import func, select

    from guahao.booking.models import Booking

    w = await world(db, clock.now(), fee=False)
    headers = _key(w["token"])
    body = parameters(appointment_reference=f"Appointment/proposed-{w['slots'][0]}",
                      patient_reference=f"Patient/{w['patient']}")
    first = await client.post(f"{BASE}/Appointment/$book", json=body, headers=headers)
    again = await client.post(f"{BASE}/Appointment/$book", json=body, headers=headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Booking)) == 1


async def test_another_accounts_patient_cannot_be_held_for(client, db, clock):
    w = await world(db, clock.now())
    _other, other_token = await make_account(db, clock.now())
    response = await _hold(client, other_token, w["slots"][0], w["patient"], _key(other_token))
    assert response.status_code == 404
    assert entries(check_body(response))[0]["issue"][0]["code"] == "not-found"
