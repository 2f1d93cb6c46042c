"""FHIR conformance helpers: the official R4 JSON schema (tests/fixtures/fhir, vendored from
npm) per resource type, and FHIRPath invariants of R4 (fhirpathpy) on every resource."""
from __future__ import annotations

import datetime as dt
import functools
import gzip
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
from fhirpathpy import evaluate

from tests.booking_builders import make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital

SCHEMA = Path(__file__).parent / "fixtures" / "fhir" / "fhir.schema.json.gz"
DAY = dt.date(2026, 11, 21)  # two days after the conftest clock
BASE = "/fhir/R4"

# R4 invariants (StructureDefinition 4.0.1), as FHIRPath. app-4 as R4 writes it ('no-show'):
# a `noshow` with a cancelationReason fails it, so the facade never sends one.
INVARIANTS: dict[str, dict[str, str]] = {
    "Appointment": {
        "app-1": "participant.all(type.exists() or actor.exists())",
        "app-2": "start.exists() = end.exists()",
        "app-3": "(start.exists() and end.exists()) or (status in ('proposed' | 'cancelled' | 'waitlist'))",
        "app-4": "cancelationReason.exists().not() or (status='no-show' or status='cancelled')",
    },
    "Slot": {"slot-times": "start <= end"},  # R4 has no Slot invariant but dom-*; the order is ours
    "Schedule": {"schedule-horizon": "planningHorizon.exists().not() or planningHorizon.start <= planningHorizon.end"},
}
DOM = {
    "dom-2": "contained.contained.empty()",
    "dom-4": "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()",
    "dom-5": "contained.meta.security.empty()",
}


@functools.cache
def _definitions() -> dict[str, Any]:
    with gzip.open(SCHEMA, "rt", encoding="utf-8") as f:
        return json.load(f)


@functools.cache
def validator(resource_type: str):
    schema = _definitions()
    return jsonschema_rs.Draft6Validator({"$schema": schema["$schema"], "$ref": f"#/definitions/{resource_type}",
                                          "definitions": schema["definitions"]})


def _ele1(value: Any, path: str) -> None:
    """ele-1 (every element has a value or children) and no null: JSON's way of saying it."""
    assert value is not None and value != "" and value != [] and value != {}, f"empty element at {path}"
    if isinstance(value, dict):
        for k, v in value.items():
            _ele1(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _ele1(v, f"{path}[{i}]")


def check_resource(resource: dict[str, Any]) -> None:
    """The resource validates against its R4 definition and holds its invariants."""
    kind = resource["resourceType"]
    checked = resource
    if kind == "CapabilityStatement" and resource.get("fhirVersion") == "4.0.1":
        # the published R4 schema's FHIRVersion enum ends at 4.0.0: it was generated before the
        # 4.0.1 technical correction, whose servers rightly say 4.0.1. The one value let through.
        checked = {**resource, "fhirVersion": "4.0.0"}
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"[:300]
              for e in validator(kind).iter_errors(checked)]
    assert not errors, f"{kind} fails the R4 schema: {errors[:5]}"
    _ele1(resource, kind)
    for name, expression in {**DOM, **INVARIANTS.get(kind, {})}.items():
        assert evaluate(resource, expression) in ([True], []), f"{kind}/{resource.get('id')} breaks {name}"
    referenced = json.dumps(resource)
    for contained in resource.get("contained", []):  # dom-3: every contained resource is referenced
        assert f'"#{contained["id"]}"' in referenced, f"dom-3: #{contained['id']} is not referenced"
        check_resource(contained)
    if kind == "Bundle":
        for entry in resource.get("entry", []):
            check_resource(entry["resource"])


def check_body(response) -> dict[str, Any]:
    """A FHIR answer: fhir+json, and its body passes `check_resource`."""
    assert response.headers["content-type"].startswith("application/fhir+json"), response.headers["content-type"]
    body = response.json()
    check_resource(body)
    return body


def check_ndjson(response, resource_type: str) -> list[dict[str, Any]]:
    assert response.headers["content-type"].startswith("application/fhir+ndjson")
    lines = response.text.splitlines()
    found = []
    for line in lines:
        resource = json.loads(line)
        assert resource["resourceType"] == resource_type
        assert line == json.dumps(resource, ensure_ascii=False, separators=(",", ":")), "not minified"
        check_resource(resource)
        found.append(resource)
    return found


def entries(bundle: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if kind is None or e["resource"]["resourceType"] == kind]


def parameters(**values: Any) -> dict[str, Any]:
    """A Parameters resource; a str starting with a type and '/' is a valueReference."""
    items = []
    for name, value in values.items():
        name = name.replace("_", "-") if not name.startswith("_") else name
        if isinstance(value, dict):
            items.append({"name": name, "resource": value})
        elif isinstance(value, str) and "/" in value and value[0].isupper():
            items.append({"name": name, "valueReference": {"reference": value}})
        elif isinstance(value, int):
            items.append({"name": name, "valueInteger": value})
        else:
            items.append({"name": name, "valueString": str(value)})
    return {"resourceType": "Parameters", "parameter": items}


async def world(db, now: dt.datetime, *, capacity: int = 3, fee: bool = True, bands: int = 1) -> dict[str, Any]:
    """A hospital with one department, one doctor, one released schedule on DAY, and a patient."""
    hospital = await make_hospital(db, now, hold_minutes=15)
    department = await make_department(db, hospital, name="心内科")
    doctor = await make_doctor(db, hospital, department, name="李医生")
    schedule, slots = await make_schedule(db, now, hospital_id=hospital, department_id=department, doctor_id=doctor,
                                          day=DAY, capacity=capacity, bands=bands,
                                          registration_fee=500 if fee else 0, consultation_fee=1000 if fee else 0)
    account, token = await make_account(db, now)
    patient = await make_patient(db, now, account)
    return {"hospital": hospital, "department": department, "doctor": doctor, "schedule": schedule, "slots": slots,
            "account": account, "token": token, "patient": patient}


async def waitlisted(db, clock, w: dict[str, Any]) -> dict[str, Any]:
    """A second clinic of w's hospital on DAY (another department, a general clinic with one
    seat), sold out to another patient (paid), and w's patient on its 候补 queue."""
    from tests.waitlist_support import join, sell_out

    department = await make_department(db, w["hospital"], name="眼科")
    schedule, slots = await make_schedule(db, clock.now(), hospital_id=w["hospital"], department_id=department,
                                          doctor_id=None, day=DAY, capacity=1)
    sold = await sell_out(db, clock, {"schedule": schedule, "slots": slots})
    entry = await join(db, clock, w["account"], w["patient"], schedule)
    return {"department": department, "schedule": schedule, "slots": slots, "sold": sold, "entry": entry}
