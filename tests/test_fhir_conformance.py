"""Every route of /fhir/R4, generated from the router: each one has a case below that calls it
(successes and refusals), and every FHIR body and NDJSON line it gives validates against the
official R4 JSON schema for its resource type and holds the R4 invariants (fhirpathpy). A new
route without a case fails `test_every_fhir_route_has_a_case`. The CapabilityStatement is
diffed against the same route table."""
from __future__ import annotations

import uuid

from fastapi.routing import APIRoute

from guahao.fhir import capability
from tests.builders import auth
from tests.fhir_support import (
    BASE,
    DAY,
    check_body,
    check_ndjson,
    entries,
    parameters,
    validator,
    waitlisted,
    world,
)


def fhir_routes(app) -> set[tuple[str, str]]:
    try:
        from fastapi.routing import iter_route_contexts

        pairs = [(c.path, c.original_route) for c in iter_route_contexts(app.routes)]
    except ImportError:
        pairs = [(r.path, r) for r in app.routes]
    return {(m, path.removeprefix(BASE)) for path, r in pairs if isinstance(r, APIRoute) and path.startswith(BASE)
            for m in r.methods}


async def _find(client, w):
    body = parameters(start=DAY.isoformat(), end=DAY.isoformat())
    return [await client.post(f"{BASE}/Appointment/$find", json=body, headers=auth(w["token"])),
            await client.post(f"{BASE}/Appointment/$find", json=body),  # 401
            await client.post(f"{BASE}/Appointment/$find", json={"resourceType": "Bundle"}, headers=auth(w["token"]))]


async def _hold(client, w):
    body = parameters(appointment_reference=f"Appointment/proposed-{w['slots'][0]}",
                      patient_reference=f"Patient/{w['patient']}")
    key = {**auth(w["token"]), "Idempotency-Key": uuid.uuid4().hex}
    answers = [await client.post(f"{BASE}/Appointment/$hold", json=body, headers=key),
               await client.post(f"{BASE}/Appointment/$hold", json=body, headers=auth(w["token"]))]  # no key
    w["held"] = entries(answers[0].json(), "Appointment")[0]["id"]
    return answers


async def _book(client, w):
    key = {**auth(w["token"]), "Idempotency-Key": uuid.uuid4().hex}
    body = parameters(appointment_reference=f"Appointment/{w['held']}")
    return [await client.post(f"{BASE}/Appointment/$book", json=body, headers=key),
            await client.post(f"{BASE}/Appointment/$book", json=parameters(appointment_reference="Appointment/999999"),
                              headers=key)]


async def _appointments(client, w):
    answers = [await client.get(f"{BASE}/Appointment", params={"date": DAY.isoformat()}, headers=auth(w["token"])),
               await client.get(f"{BASE}/Appointment", params={"date": "not-a-date"}, headers=auth(w["token"]))]
    # the booking and the 候补 entry, each validated below
    assert {a["status"] for a in entries(answers[0].json())} == {"pending", "waitlist"}
    return answers


async def _appointment(client, w):
    waiting = f"{BASE}/Appointment/waitlist-{w['waitlist']['entry']}"
    return [await client.get(f"{BASE}/Appointment/{w['held']}", headers=auth(w["token"])),
            await client.get(f"{BASE}/Appointment/abc", headers=auth(w["token"])),
            await client.get(waiting, headers=auth(w["token"])),
            await client.get(f"{BASE}/Appointment/waitlist-x", headers=auth(w["token"]))]


async def _patch(client, w):
    cancel = {"json": {"status": "cancelled"}, "headers": auth(w["token"])}
    waiting = f"{BASE}/Appointment/waitlist-{w['waitlist']['entry']}"
    answers = [await client.patch(f"{BASE}/Appointment/{w['held']}", **cancel),
               await client.patch(f"{BASE}/Appointment/{w['held']}", **cancel),  # a repeat: the cancelled one
               await client.patch(waiting, **cancel), await client.patch(waiting, **cancel)]  # leaves the waitlist
    assert [a.json()["status"] for a in answers] == ["cancelled"] * 4
    return answers


def _read_and_search(kind: str, query: dict | str):
    async def case(client, w):
        q = {k: (v.format(**w) if isinstance(v, str) else v) for k, v in query.items()}
        ident = {"Location": "hospital", "HealthcareService": "department", "Practitioner": "doctor",
                 "PractitionerRole": "doctor", "Schedule": "schedule", "Slot": "slots"}[kind]
        value = w[ident][0] if ident == "slots" else w[ident]
        return [await client.get(f"{BASE}/{kind}", params=q), await client.get(f"{BASE}/{kind}/{value}"),
                await client.get(f"{BASE}/{kind}/987654")]
    return case


def _read(kind: str, query: dict):
    search = _read_and_search(kind, query)

    async def case(client, w):
        answers = await search(client, w)
        return [answers[1], answers[2]]
    return case


def _search(kind: str, query: dict):
    search = _read_and_search(kind, query)

    async def case(client, w):
        return [(await search(client, w))[0]]
    return case


QUERIES = {"Location": {"address-city": "北京市"}, "HealthcareService": {"location": "Location/{hospital}"},
           "Practitioner": {"_id": "{doctor}"}, "PractitionerRole": {"location": "Location/{hospital}"},
           "Schedule": {"date": DAY.isoformat()}, "Slot": {"start": DAY.isoformat()}}


async def _metadata(client, w):
    return [await client.get(f"{BASE}/metadata")]


async def _manifest(client, w):
    return [await client.get(f"{BASE}/$bulk-publish")]


async def _bulk(client, w):
    return [await client.get(f"{BASE}/bulk/locations.ndjson"), await client.get(f"{BASE}/bulk/schedules.ndjson"),
            await client.get(f"{BASE}/bulk/slots-{DAY.isoformat()}.ndjson"),
            await client.get(f"{BASE}/bulk/slots-1999-01-01.ndjson")]


async def _smart(client, w):
    return [await client.get(f"{BASE}/.well-known/smart-configuration")]


async def _token(client, w):
    return [await client.post(f"{BASE}/auth/token", data={"grant_type": "client_credentials"},
                              auth=("nobody", "wrong"))]


async def _not_served(client, w):
    return [await client.get(f"{BASE}/Patient/1"), await client.post(f"{BASE}/Slot", json={}),
            await client.delete(f"{BASE}/Appointment/1")]


# (method, path) → the case; the order is the order they run in (hold before book and PATCH)
CASES = {("GET", "/metadata"): _metadata, ("GET", "/.well-known/smart-configuration"): _smart,
         ("POST", "/auth/token"): _token, ("POST", "/Appointment/$find"): _find,
         ("POST", "/Appointment/$hold"): _hold, ("POST", "/Appointment/$book"): _book,
         ("GET", "/Appointment"): _appointments, ("GET", "/Appointment/{resource_id}"): _appointment,
         ("PATCH", "/Appointment/{resource_id}"): _patch,
         ("GET", "/$bulk-publish"): _manifest, ("GET", "/bulk/{name}.ndjson"): _bulk}
for _kind, _query in QUERIES.items():
    CASES[("GET", f"/{_kind}")] = _search(_kind, _query)
    CASES[("GET", f"/{_kind}/{{resource_id}}")] = _read(_kind, _query)
# the catch-all: anything not served is a not-found OperationOutcome
NOT_SERVED = {(m, "/{rest:path}") for m in ("GET", "POST", "PUT", "PATCH", "DELETE")}
CASES.update(dict.fromkeys(NOT_SERVED, _not_served))
# routes that are not FHIR REST (OAuth2 and SMART discovery answer plain JSON)
PLAIN_JSON = {("GET", "/.well-known/smart-configuration"), ("POST", "/auth/token"), ("GET", "/$bulk-publish")}
NDJSON = {"locations": "Location", "schedules": "Schedule", "slots": "Slot"}


def test_every_fhir_route_has_a_case(app):
    assert fhir_routes(app) == set(CASES)


async def test_every_fhir_answer_validates_against_the_r4_schema(app, client, db, clock):
    w = await world(db, clock.now(), capacity=2)
    w["waitlist"] = await waitlisted(db, clock, w)
    checked = 0
    for key, case in CASES.items():
        for response in await case(client, w):
            assert response.status_code < 500, (key, response.text)
            if key in PLAIN_JSON:
                assert response.headers["content-type"].startswith("application/json"), key
                continue
            if key == ("GET", "/bulk/{name}.ndjson") and response.status_code == 200:
                name = response.url.path.rsplit("/", 1)[1].removesuffix(".ndjson").split("-")[0]
                checked += len(check_ndjson(response, NDJSON[name]))
                continue
            check_body(response)
            checked += 1
    assert checked > 30


def test_the_schema_fixture_is_the_official_r4_one():
    from tests.fhir_support import _definitions

    schema = _definitions()
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    assert len(schema["definitions"]) == 680
    # a status outside the value set, and an instant without its offset, are refused
    assert not validator("Appointment").is_valid({"resourceType": "Appointment", "status": "held",
                                                  "participant": [{"status": "accepted"}]})
    assert not validator("Slot").is_valid({"resourceType": "Slot", "schedule": {"reference": "Schedule/1"},
                                           "status": "free", "start": "2026-11-21T08:00:00",
                                           "end": "2026-11-21T09:00:00+08:00"})


def test_a_noshow_never_carries_a_cancelation_reason():
    from guahao.fhir import mapping

    booking = {"id": 1, "fhir_status": "noshow", "state": "no_show", "booking_code": "12345678", "visit_no": 3,
               "doctor_id": 2, "department_id": 3, "department_name": "内科", "hospital_id": 4,
               "registration_fee": 500, "consultation_fee": 0, "starts_at": "2026-11-21T08:00:00+08:00",
               "ends_at": "2026-11-21T12:00:00+08:00", "created_at": "2026-11-19T10:00:00+08:00", "slot_id": 5,
               "patient": {"id": 6}}
    resource = mapping.appointment(booking)
    assert "cancelationReason" not in resource
    from tests.fhir_support import check_resource

    check_resource(resource)


async def test_the_capability_statement_lists_exactly_what_is_served(app, client):
    body = check_body(await client.get(f"{BASE}/metadata"))
    [rest] = body["rest"]
    listed = {("system", "capabilities")} | {("system", f"${o['name']}") for o in rest["operation"]}
    for resource in rest["resource"]:
        listed |= {(resource["type"], i["code"]) for i in resource["interaction"]}
        listed |= {(resource["type"], f"${o['name']}") for o in resource.get("operation", [])}
    served = set()
    for method, path in fhir_routes(app) - PLAIN_JSON - NOT_SERVED - {("GET", "/bulk/{name}.ndjson")}:
        parts = path.strip("/").split("/")
        if parts == ["metadata"]:
            served.add(("system", "capabilities"))
        elif parts[0].startswith("$"):
            served.add(("system", parts[0]))
        elif len(parts) == 1:
            served.add((parts[0], "search-type"))
        elif parts[1].startswith("$"):
            served.add((parts[0], parts[1]))
        else:
            served.add((parts[0], {"GET": "read", "PATCH": "patch"}[method]))
    served.add(("system", "$bulk-publish"))  # plain JSON (the SMART manifest), listed as an operation
    assert listed == served == capability.served_interactions()
    assert body["fhirVersion"] == "4.0.1"
    assert rest["security"]["extension"][0]["extension"][0]["valueUri"].endswith("/fhir/R4/auth/token")


def test_fhir_holds_count_as_holds_in_admission_control():
    from guahao.core.admission import route_class

    assert route_class("POST", f"{BASE}/Appointment/$hold") == "hold"
    assert route_class("POST", f"{BASE}/Appointment/$book") == "hold"
    assert route_class("GET", f"{BASE}/Slot") == "api"
    assert route_class("POST", "/api/v1/bookings") == "hold"


async def test_what_is_not_served_is_a_not_found_outcome(client):
    for method, path in (("GET", "/Patient/1"), ("POST", "/Slot"), ("PUT", "/Appointment/1"), ("GET", "/Slot/x")):
        response = await client.request(method, BASE + path, json={})
        assert response.status_code == 404, (method, path)
        assert check_body(response)["issue"][0]["code"] == "not-found"


# Who may call each route: public (anyone), caller (a partner token or a patient's session),
# patient (a patient's session only). A new route must be placed here, like in CASES.
ACCESS = {key: "public" for key in CASES}
ACCESS.update({("POST", "/Appointment/$find"): "caller", ("POST", "/Appointment/$hold"): "patient",
               ("POST", "/Appointment/$book"): "patient", ("GET", "/Appointment"): "patient",
               ("GET", "/Appointment/{resource_id}"): "patient", ("PATCH", "/Appointment/{resource_id}"): "patient"})
SAMPLE = {"{resource_id}": "1", "{name}": "locations", "{rest:path}": "Patient"}


async def test_every_route_answers_anonymous_callers_as_its_access_class_says(app, client):
    assert set(ACCESS) == fhir_routes(app)
    for (method, path), access in ACCESS.items():
        url = BASE + path
        for placeholder, value in SAMPLE.items():
            url = url.replace(placeholder, value)
        kwargs = {"json": parameters()} if method in ("POST", "PATCH") and "$" in path else {}
        response = await client.request(method, url, **kwargs)
        if access == "public":
            assert response.status_code != 401, (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code)


async def test_a_bug_is_a_fatal_exception_outcome_not_a_problem(client, monkeypatch):
    from guahao.fhir import capability as fhir_capability

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(fhir_capability, "capability_statement", broken)
    response = await client.get(f"{BASE}/metadata")
    assert response.status_code == 500
    issue = check_body(response)["issue"][0]
    assert (issue["severity"], issue["code"]) == ("fatal", "exception")
