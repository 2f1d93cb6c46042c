"""SMART Scheduling Links publication: the manifest's shape, content types, offsets, cache
headers, slot capacity and deep links, and no personal data anywhere public."""
from __future__ import annotations

import datetime as dt
import re
import uuid
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

from tests.booking_builders import make_schedule
from tests.builders import auth
from tests.fhir_support import BASE, DAY, check_ndjson, parameters, world

OFFSET = re.compile(r"T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _instants(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _instants(v, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from _instants(v, path)
    elif isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}T", value):
        yield path, value


async def test_manifest_shape_types_and_cache_headers(client, db, clock):
    await world(db, clock.now())
    response = await client.get(f"{BASE}/$bulk-publish", headers={"Accept": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert re.fullmatch(r"public, max-age=\d+", response.headers["cache-control"])
    assert 60 <= int(response.headers["cache-control"].rsplit("=", 1)[1]) <= 300
    manifest = response.json()
    assert set(manifest) >= {"transactionTime", "request", "output"}
    assert OFFSET.search(manifest["transactionTime"])
    assert manifest["request"].endswith("/fhir/R4/$bulk-publish")
    assert {o["type"] for o in manifest["output"]} == {"Location", "Schedule", "Slot"}
    etag = response.headers["etag"]
    again = await client.get(f"{BASE}/$bulk-publish", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    for item in manifest["output"]:
        file = await client.get(urlparse(item["url"]).path)
        assert file.status_code == 200
        assert file.headers["content-type"].startswith("application/fhir+ndjson")
        assert "max-age" in file.headers["cache-control"] and file.headers["etag"]
        for resource in check_ndjson(file, item["type"]):
            for path, value in _instants(resource):
                assert OFFSET.search(value), (item["type"], path, value)


async def test_slots_carry_remaining_capacity_and_a_deep_link(client, db, clock):
    w = await world(db, clock.now(), capacity=3)
    body = parameters(appointment_reference=f"Appointment/proposed-{w['slots'][0]}",
                      patient_reference=f"Patient/{w['patient']}")
    held = await client.post(f"{BASE}/Appointment/$hold", json=body,
                             headers={**auth(w["token"]), "Idempotency-Key": uuid.uuid4().hex})
    assert held.status_code == 200
    file = await client.get(f"{BASE}/bulk/slots-{DAY.isoformat()}.ndjson")
    [slot] = check_ndjson(file, "Slot")
    ext = {e["url"].rsplit("/", 1)[1]: e for e in slot["extension"]}
    assert ext["slot-capacity"]["valueInteger"] == 2 and slot["status"] == "free"
    link = ext["booking-deep-link"]["valueUrl"]
    assert urlparse(link).path == f"/book/{w['slots'][0]}"
    # SMART clients append source and booking-referral by URL parsing; the link keeps working
    parts = urlparse(link)
    query = parse_qs(parts.query) | {"source": ["map-app"], "booking-referral": ["r1"]}
    joined = urlunparse(parts._replace(query=urlencode(query, doseq=True)))
    page = await client.get(urlparse(joined).path + "?" + urlparse(joined).query)
    assert page.status_code in (200, 303, 302)


async def test_unreleased_and_draft_schedules_are_not_published(client, db, clock):
    w = await world(db, clock.now())
    later = clock.now() + dt.timedelta(days=1)
    await make_schedule(db, clock.now(), hospital_id=w["hospital"], department_id=w["department"],
                        doctor_id=w["doctor"], day=DAY, period="afternoon", release_at=later)
    await make_schedule(db, clock.now(), hospital_id=w["hospital"], department_id=w["department"],
                        doctor_id=w["doctor"], day=DAY + dt.timedelta(days=1), status="draft")
    schedules = check_ndjson(await client.get(f"{BASE}/bulk/schedules.ndjson"), "Schedule")
    assert [s["id"] for s in schedules] == [str(w["schedule"])]
    assert (await client.get(f"{BASE}/Schedule/{w['schedule'] + 1}")).status_code == 404


async def test_no_personal_data_in_any_public_output(client, db, clock):
    from tests.conftest import SENSITIVE_VALUES

    w = await world(db, clock.now())
    body = parameters(appointment_reference=f"Appointment/proposed-{w['slots'][0]}",
                      patient_reference=f"Patient/{w['patient']}")
    await client.post(f"{BASE}/Appointment/$hold", json=body,
                      headers={**auth(w["token"]), "Idempotency-Key": uuid.uuid4().hex})
    manifest = (await client.get(f"{BASE}/$bulk-publish")).json()
    texts = [(await client.get(urlparse(o["url"]).path)).text for o in manifest["output"]]
    for path in ("/Location", "/Slot", "/Schedule", f"/HealthcareService?location=Location/{w['hospital']}",
                 f"/PractitionerRole?location=Location/{w['hospital']}", "/metadata"):
        texts.append((await client.get(BASE + path)).text)
    public = "\n".join(texts)
    assert "Patient" not in public
    leaked = [v for v in SENSITIVE_VALUES if v in public]
    assert leaked == []
    phone_or_id = re.compile(r"1[3-9]\d{9}|\d{17}[\dX]")
    assert not phone_or_id.search(public)
