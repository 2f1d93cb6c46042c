"""Our words in FHIR R4: every resource the facade serves is built here, and only here.

Plain functions from the views the JSON API already answers with (catalog rows through
catalog.service, `ReleasedSchedule` / `AvailableSlot` from scheduling.availability,
`BookingRead` from booking.views), so a FHIR answer and a JSON answer cannot disagree.
docs/FHIR.md is the table of this module. Times are instants in the hospital's zone with
their offset (the R4 JSON schema refuses an instant without one); money is yuan (fen / 100).

Privacy: a patient appears only as `Patient/<id>`, the account's own patient id, with no
name, no phone and no ID number, whatever the booking view carries.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from guahao.scheduling.availability import ReleasedSchedule
from guahao.scheduling.schemas import AvailableSlot
from guahao.waitlist import schemas as waitlist_schemas

SITE = "https://guahao.example/fhir"
CS_LEVEL = f"{SITE}/CodeSystem/registration-level"  # 普通号 / 专家号 / 特需
CS_DEPARTMENT = f"{SITE}/CodeSystem/department"  # a hospital's department dictionary, by our id
CS_TITLE = f"{SITE}/CodeSystem/doctor-title"  # 职称
CS_POOL = f"{SITE}/CodeSystem/pool"  # 号源池: platform / onsite
CS_FEE = f"{SITE}/CodeSystem/fee"  # 挂号费 / 诊查费
CS_CANCEL = f"{SITE}/CodeSystem/cancelation-reason"
SID_VISIT_NO = f"{SITE}/sid/visit-number"  # 就诊序号
SID_BOOKING_CODE = f"{SITE}/sid/booking-code"
EXT_HOLD_EXPIRES = f"{SITE}/StructureDefinition/hold-expires"
EXT_RELEASE_AT = f"{SITE}/StructureDefinition/release-at"
EXT_FEES = f"{SITE}/StructureDefinition/fees"
EXT_PAY_URL = f"{SITE}/StructureDefinition/pay-url"
SID_WAITLIST_ENTRY = f"{SITE}/sid/waitlist-entry"  # 候补: its own ids, never a booking's
EXT_WAITLIST_AHEAD = f"{SITE}/StructureDefinition/waitlist-ahead"  # 前面还有 N 人
EXT_WAITLIST_CUTOFF = f"{SITE}/StructureDefinition/waitlist-cutoff"  # 候补截止
WAITLIST_PREFIX = "waitlist-"
# SMART Scheduling Links (smart-on-fhir/smart-scheduling-links, specification.md)
SMART = "http://fhir-registry.smarthealthit.org/StructureDefinition"
EXT_DEEP_LINK = f"{SMART}/booking-deep-link"
EXT_BOOKING_PHONE = f"{SMART}/booking-phone"
EXT_CAPACITY = f"{SMART}/slot-capacity"
# the resident ID number's OID in Chinese HIS documents: accepted as input, never echoed
OID_RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"

LEVEL_NAMES = {"general": "普通号", "expert": "专家号", "special": "特需"}
TITLE_NAMES = {"chief": "主任医师", "associate_chief": "副主任医师", "attending": "主治医师", "resident": "住院医师",
               "none": "医师"}
# why a booking ended, from its state: a no-show never carries one (R4 invariant app-4
# spells the code 'no-show', so a `noshow` with a reason would fail it)
CANCEL_REASONS = {"cancelled": ("patient", "Cancelled by the patient"),
                  "expired": ("payment-timeout", "The hold ended before the fee was paid"),
                  "revoked": ("hospital-suspended", "The hospital suspended the clinic (停诊)")}
# why a 候补 entry ended without an offer (one that had an offer is its booking)
WAITLIST_ENDED = {"left": ("patient", "The patient left the waitlist"),
                  "closed": ("waitlist-closed", "The waitlist closed before a seat freed (候补截止)"),
                  "skipped": ("waitlist-skipped", "Not eligible when a seat freed")}
# participant status by Appointment status
_PATIENT_STATUS = {"proposed": "needs-action", "pending": "tentative", "booked": "accepted", "arrived": "accepted",
                   "checked-in": "accepted", "fulfilled": "accepted", "noshow": "accepted", "cancelled": "declined",
                   "waitlist": "tentative"}


def instant(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("an instant needs its offset")
    return value.isoformat(timespec="seconds")


def money(fen: int) -> dict[str, Any]:
    return {"value": fen / 100, "currency": "CNY"}


def level_concept(level: str) -> dict[str, Any]:
    return {"coding": [{"system": CS_LEVEL, "code": level, "display": LEVEL_NAMES.get(level, level)}]}


def department_concept(department_id: int, name: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": CS_DEPARTMENT, "code": str(department_id)}
    if name:
        coding["display"] = name
    return {"coding": [coding]}


def ref(resource_type: str, resource_id: int | str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{resource_id}"}


def ref_id(value: str | None, resource_type: str) -> int | None:
    """`Slot/12`, `12`, or an absolute URL ending in `Slot/12` → 12; None when it names another type."""
    if not value:
        return None
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] != resource_type:
        return None
    return int(parts[-1]) if parts[-1].isdigit() else None


# --- catalog ---------------------------------------------------------------------------

def location(hospital) -> dict[str, Any]:
    """A hospital (医院) as the place of its clinics, with its position for map clients."""
    resource: dict[str, Any] = {
        "resourceType": "Location", "id": str(hospital.id), "status": "active" if hospital.active else "inactive",
        "name": hospital.name, "mode": "instance",
        "telecom": [{"system": "phone", "value": hospital.phone, "use": "work"}],
        "address": {"use": "work", "text": f"{hospital.city}{hospital.district}{hospital.address}",
                    "line": [hospital.address], "city": hospital.city, "district": hospital.district,
                    "country": "CN"},
        "position": {"longitude": hospital.longitude, "latitude": hospital.latitude},
    }
    if hospital.short_name:
        resource["alias"] = [hospital.short_name]
    return resource


def healthcare_service(department, hospital) -> dict[str, Any]:
    """A department (科室): its specialty is its own code in the hospital's dictionary."""
    resource: dict[str, Any] = {
        "resourceType": "HealthcareService", "id": str(department.id), "active": bool(hospital.active),
        "specialty": [department_concept(department.id, department.name)],
        "location": [ref("Location", hospital.id)], "name": department.name,
        "telecom": [{"system": "phone", "value": hospital.phone, "use": "work"}],
    }
    if department.location:
        resource["comment"] = department.location
    if department.introduction:
        resource["extraDetails"] = department.introduction
    return resource


def practitioner(doctor) -> dict[str, Any]:
    """A doctor (医生). Doctors are public in the catalog; they are not patients."""
    return {"resourceType": "Practitioner", "id": str(doctor.id), "active": bool(doctor.active),
            "name": [{"use": "official", "text": doctor.name}]}


def practitioner_role(doctor, department_name: str | None = None) -> dict[str, Any]:
    """The doctor in their department and hospital, with their title (职称) and level (号别)."""
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole", "id": str(doctor.id), "active": bool(doctor.active),
        "practitioner": ref("Practitioner", doctor.id), "location": [ref("Location", doctor.hospital_id)],
        "healthcareService": [ref("HealthcareService", doctor.department_id)],
        "code": [{"coding": [{"system": CS_TITLE, "code": doctor.title,
                              "display": TITLE_NAMES.get(doctor.title, doctor.title)}]},
                 level_concept(doctor.registration_level)],
        "specialty": [department_concept(doctor.department_id, department_name)],
    }
    if doctor.specialty:
        resource["specialty"].append({"text": doctor.specialty})
    return resource


def fee_definition(url: str, registration_fee: int, consultation_fee: int) -> dict[str, Any]:
    """挂号费 and 诊查费 as the two base price components of one ChargeItemDefinition (contained):
    the fee table's row for a schedule, the fees a booking was made at for an appointment."""
    return {
        "resourceType": "ChargeItemDefinition", "id": "fees", "status": "active", "url": url,
        "propertyGroup": [{"priceComponent": [
            {"type": "base", "code": {"coding": [{"system": CS_FEE, "code": "registration-fee",
                                                  "display": "挂号费"}]}, "amount": money(registration_fee)},
            {"type": "base", "code": {"coding": [{"system": CS_FEE, "code": "consultation-fee",
                                                  "display": "诊查费"}]}, "amount": money(consultation_fee)},
        ]}],
    }


def _fees_ref() -> dict[str, Any]:
    return {"url": EXT_FEES, "valueReference": {"reference": "#fees"}}


# --- scheduling ------------------------------------------------------------------------

def clinic_actor(view) -> dict[str, str]:
    """Who the clinic is with: the doctor's role, or the department's general clinic."""
    if view.doctor is not None:
        return ref("PractitionerRole", view.doctor.id)
    return ref("HealthcareService", view.department_id)


def schedule(released: ReleasedSchedule) -> dict[str, Any]:
    """A schedule (排班): one doctor or general clinic on one date and period. A 停诊 makes it
    inactive (its slots busy-unavailable)."""
    view = released.view
    title = view.doctor.title if view.doctor is not None else "none"
    actors = [ref("HealthcareService", view.department_id), ref("Location", released.hospital_id)]
    if view.doctor is not None:
        actors.insert(0, ref("PractitionerRole", view.doctor.id))
    return {
        "resourceType": "Schedule", "id": str(view.schedule_id),
        "contained": [fee_definition(f"{SITE}/ChargeItemDefinition/{released.hospital_id}-{view.registration_level}-{title}",
                                     view.registration_fee, view.consultation_fee)],
        "extension": [{"url": EXT_RELEASE_AT, "valueDateTime": instant(released.release_at)}, _fees_ref()],
        "active": view.state != "suspended",
        "serviceType": [level_concept(view.registration_level)],
        "specialty": [department_concept(view.department_id)],
        "actor": actors,
        "planningHorizon": {"start": instant(released.starts_at), "end": instant(released.ends_at)},
        "comment": released.period,
    }


def slot_status(state: str, remaining: int) -> str:
    if state == "suspended":
        return "busy-unavailable"
    return "free" if state == "bookable" and remaining > 0 else "busy"


def slot(released: ReleasedSchedule, item: AvailableSlot, *, base_url: str,
         booking_phone: str | None = None) -> dict[str, Any]:
    """A time band of the platform pool (号源): one FHIR Slot per band, not per seat; its
    remaining seats are SMART's `slot-capacity`, its page the `booking-deep-link`."""
    extensions: list[dict[str, Any]] = [
        {"url": EXT_DEEP_LINK, "valueUrl": deep_link(base_url, item.slot_id)},
        {"url": EXT_CAPACITY, "valueInteger": item.remaining},
    ]
    if booking_phone:
        extensions.append({"url": EXT_BOOKING_PHONE, "valueString": booking_phone})
    return {
        "resourceType": "Slot", "id": str(item.slot_id), "extension": extensions,
        "serviceType": [level_concept(released.view.registration_level)],
        "specialty": [department_concept(released.view.department_id)],
        "appointmentType": {"coding": [{"system": CS_POOL, "code": "platform", "display": "网上号源"}]},
        "schedule": ref("Schedule", released.view.schedule_id),
        "status": slot_status(item.state, item.remaining),
        "start": instant(item.starts_at), "end": instant(item.ends_at),
    }


def deep_link(base_url: str, slot_id: int) -> str:
    return f"{base_url.rstrip('/')}/book/{slot_id}"


def proposed_appointment(released: ReleasedSchedule, item: AvailableSlot) -> dict[str, Any]:
    """What $find proposes: a free band, as an Appointment that does not exist yet. Its id
    names the band, so `$hold` can be given it back as `appointment-reference`."""
    view = released.view
    return {
        "resourceType": "Appointment", "id": f"proposed-{item.slot_id}", "status": "proposed",
        "extension": [{"url": EXT_CAPACITY, "valueInteger": item.remaining}],
        "serviceType": [level_concept(view.registration_level)],
        "specialty": [department_concept(view.department_id)],
        "start": instant(item.starts_at), "end": instant(item.ends_at),
        "slot": [ref("Slot", item.slot_id)],
        "participant": [{"actor": clinic_actor(view), "required": "required", "status": "needs-action"},
                        {"actor": ref("Location", released.hospital_id), "required": "required",
                         "status": "needs-action"}],
    }


# --- bookings --------------------------------------------------------------------------

def appointment(booking: dict[str, Any]) -> dict[str, Any]:
    """A booking (挂号单), from the JSON API's BookingRead (as JSON), for its own account.

    Status through booking.lifecycle.FHIR_STATUS (the view's `fhir_status`); visit number and
    booking code as identifiers; the hold deadline as an extension (and the `Expires` header
    of $hold); fees as a contained ChargeItemDefinition."""
    status = booking["fhir_status"]
    identifiers = [{"use": "secondary", "system": SID_BOOKING_CODE, "value": booking["booking_code"]}]
    if booking.get("visit_no") is not None:
        identifiers.insert(0, {"use": "official", "system": SID_VISIT_NO, "value": str(booking["visit_no"])})
    extensions: list[dict[str, Any]] = [_fees_ref()]
    if booking["state"] == "held" and booking.get("hold_expires_at"):
        extensions.append({"url": EXT_HOLD_EXPIRES, "valueInstant": booking["hold_expires_at"]})
    clinic = (ref("PractitionerRole", booking["doctor_id"]) if booking.get("doctor_id") is not None
              else ref("HealthcareService", booking["department_id"]))
    resource: dict[str, Any] = {
        "resourceType": "Appointment", "id": str(booking["id"]),
        "contained": [fee_definition(f"{SITE}/ChargeItemDefinition/booking-{booking['id']}",
                                     booking["registration_fee"], booking["consultation_fee"])],
        "extension": extensions, "identifier": identifiers, "status": status,
        "specialty": [department_concept(booking["department_id"], booking.get("department_name"))],
        "start": booking["starts_at"], "end": booking["ends_at"], "created": booking["created_at"],
        "slot": [ref("Slot", booking["slot_id"])],
        "participant": [
            {"actor": ref("Patient", booking["patient"]["id"]), "required": "required",
             "status": _PATIENT_STATUS[status]},
            {"actor": clinic, "required": "required", "status": "accepted"},
            {"actor": ref("Location", booking["hospital_id"]), "required": "required", "status": "accepted"},
        ],
    }
    if status == "cancelled" and booking["state"] in CANCEL_REASONS:
        code, text = CANCEL_REASONS[booking["state"]]
        resource["cancelationReason"] = {"coding": [{"system": CS_CANCEL, "code": code}], "text": text}
    return resource


def waitlist_status(entry, now: dt.datetime) -> str | None:
    """The FHIR status of a 候补 entry (the waitlist's `WaitlistEntryRead`) as its own
    Appointment, or None when it is not one: the waitlist's own table
    (`waitlist.schemas.fhir_status`, also its JSON API's `fhir_status`)."""
    return waitlist_schemas.fhir_status(state=entry.state, offer_booking_id=entry.offer_booking_id,
                                        cutoff_at=entry.cutoff_at, now=now)


def waitlist_appointment(entry, released: ReleasedSchedule, *, status: str) -> dict[str, Any]:
    """A 候补 (waitlist) entry, from the waitlist's `WaitlistEntryRead`, for its own account:
    id `waitlist-<entry id>` and identifier `…/sid/waitlist-entry` (never a booking's id), no
    start, end or slot (R4 app-3 allows that for waitlist and cancelled), the schedule's
    window as `requestedPeriod`, 前面还有 N 人 and the queue's cutoff as extensions. `status`
    is `waitlist_status`'s (the caller decides, so a just-left entry answers cancelled)."""
    view, zone = released.view, released.starts_at.tzinfo
    cutoff = instant(entry.cutoff_at.astimezone(zone))
    extensions: list[dict[str, Any]] = [{"url": EXT_WAITLIST_CUTOFF, "valueInstant": cutoff}]
    if status == "waitlist" and entry.ahead is not None:
        extensions.insert(0, {"url": EXT_WAITLIST_AHEAD, "valueInteger": entry.ahead})
    resource: dict[str, Any] = {
        "resourceType": "Appointment", "id": f"{WAITLIST_PREFIX}{entry.id}", "extension": extensions,
        "identifier": [{"use": "official", "system": SID_WAITLIST_ENTRY, "value": str(entry.id)}],
        "status": status,
        "serviceType": [level_concept(view.registration_level)],
        "specialty": [department_concept(view.department_id, entry.department_name)],
        "created": instant(entry.joined_at.astimezone(zone)),
        "requestedPeriod": [{"start": instant(released.starts_at), "end": instant(released.ends_at)}],
        "participant": [{"actor": ref("Patient", entry.patient_id), "required": "required",
                         "status": _PATIENT_STATUS[status]},
                        {"actor": clinic_actor(view), "required": "required", "status": "needs-action"},
                        {"actor": ref("Location", released.hospital_id), "required": "required",
                         "status": "needs-action"}],
    }
    if status == "cancelled":
        code, text = WAITLIST_ENDED["closed" if entry.state == "waiting" else entry.state]
        if entry.state == "skipped" and entry.reason:
            text = f"{text} ({entry.reason})"  # the refusal's stable code, as the API shows it
        resource["cancelationReason"] = {"coding": [{"system": CS_CANCEL, "code": code}], "text": text}
    return resource


def bundle(kind: str, entries: list[dict[str, Any]], *, base: str, total: int | None = None,
           link: str | None = None) -> dict[str, Any]:
    """A Bundle: `searchset` (with total and search modes) or `collection` (operation output)."""
    result: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if total is not None:
        result["total"] = total
    if link:
        result["link"] = [{"relation": "self", "url": link}]
    result["entry"] = []
    for resource in entries:
        entry: dict[str, Any] = {"resource": resource}
        if "id" in resource:
            entry["fullUrl"] = f"{base}/{resource['resourceType']}/{resource['id']}"
        if kind == "searchset":
            entry["search"] = {"mode": "outcome" if resource["resourceType"] == "OperationOutcome" else "match"}
        result["entry"].append(entry)
    if not result["entry"]:
        del result["entry"]
    return result
