"""What the facade serves, as one table, and the CapabilityStatement made from it.

`SERVED` is the single description of the facade: the router registers exactly these
interactions (tests/test_fhir_capability.py derives the same table from the routes and diffs
the two), and `GET /metadata` lists them. Search parameters are the R4 standard ones, each
implemented by the search of its resource.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from guahao import __version__

IHE_SERVER = "https://profiles.ihe.net/ITI/Scheduling/CapabilityStatement/IHE.Scheduling.server"
IHE_OPS = "https://profiles.ihe.net/ITI/Scheduling/OperationDefinition"
SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

SERVED: dict[str, dict[str, Any]] = {
    "Location": {"interactions": ("read", "search-type"),
                 "search": {"_id": "token", "name": "string", "address-city": "string"}},
    "HealthcareService": {"interactions": ("read", "search-type"),
                          "search": {"_id": "token", "location": "reference"}},
    "Practitioner": {"interactions": ("read", "search-type"), "search": {"_id": "token"}},
    "PractitionerRole": {"interactions": ("read", "search-type"),
                         "search": {"_id": "token", "location": "reference", "service": "reference",
                                    "practitioner": "reference"}},
    "Schedule": {"interactions": ("read", "search-type"),
                 "search": {"_id": "token", "actor": "reference", "date": "date", "service-type": "token",
                            "active": "token"}},
    "Slot": {"interactions": ("read", "search-type"),
             "search": {"_id": "token", "schedule": "reference", "start": "date", "status": "token",
                        "service-type": "token"}},
    "Appointment": {"interactions": ("read", "search-type", "patch"),
                    "search": {"patient": "reference", "date": "date", "status": "token"},
                    "operations": ("find", "hold", "book")},
}
SYSTEM_OPERATIONS = ("bulk-publish",)
OPERATION_DEFINITIONS = {
    "find": f"{IHE_OPS}/appointment-find", "hold": f"{IHE_OPS}/appointment-hold",
    "book": f"{IHE_OPS}/appointment-book",
    "bulk-publish": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/bulk-publish",
}


def served_interactions() -> set[tuple[str, str]]:
    """(resource type or "system", interaction or "$operation") for every route of the facade."""
    found = {("system", "capabilities"), *(("system", f"${op}") for op in SYSTEM_OPERATIONS)}
    for kind, spec in SERVED.items():
        found |= {(kind, i) for i in spec["interactions"]}
        found |= {(kind, f"${op}") for op in spec.get("operations", ())}
    return found


def capability_statement(base: str, token_url: str, now: dt.datetime) -> dict[str, Any]:
    resources = []
    for kind, spec in SERVED.items():
        entry: dict[str, Any] = {
            "type": kind, "interaction": [{"code": i} for i in spec["interactions"]],
            "searchParam": [{"name": n, "type": t} for n, t in spec["search"].items()],
        }
        if "patch" in spec["interactions"]:
            entry["documentation"] = ("Search and read list the caller's own bookings and 候补 entries (status "
                                      "waitlist, ids waitlist-<n>). PATCH with status cancelled cancels the "
                                      "caller's own appointment or leaves the waitlist (JSON Patch or a partial "
                                      "Appointment)")
        if spec.get("operations"):
            entry["operation"] = [{"name": op, "definition": OPERATION_DEFINITIONS[op]}
                                  for op in spec["operations"]]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": now.isoformat(timespec="seconds"),
        "kind": "instance", "publisher": "guahao", "instantiates": [IHE_SERVER],
        "software": {"name": "guahao", "version": __version__},
        "implementation": {"description": "guahao FHIR R4 scheduling facade", "url": base},
        "fhirVersion": "4.0.1", "format": ["application/fhir+json", "json"], "patchFormat": [
            "application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": ("Catalog, Schedule and Slot reads are public (released schedules only). $find needs "
                              "a partner token (system/Slot.read) or a patient session; $hold, $book and "
                              "Appointment need a patient session. $hold and $book need an Idempotency-Key."),
            "security": {
                "extension": [{"url": SMART_OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_url}]}],
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                         "code": "SMART-on-FHIR"}]}],
                "description": "OAuth2 client credentials for partner systems; the guahao session for patients",
            },
            "resource": resources,
            "operation": [{"name": op, "definition": OPERATION_DEFINITIONS[op]} for op in SYSTEM_OPERATIONS],
        }],
    }
