"""IHE ITI Scheduling on our actions: Appointment/$find (ITI-115), $hold (ITI-116), $book
(ITI-117), the caller's own appointments (ITI-118), and cancellation by PATCH (Argonaut).

Parameter names are IHE's; Argonaut's are accepted as aliases (`appt-id`, `appt-resource`,
`location-reference`, `patient-id`...). The writes are the JSON API's, not copies of it:
$hold runs `booking.hold_flow.hold_once` (sold-out gate, slot lane, `do_hold`, 建档 and the
realtime HIS hold, the Idempotency-Key protocol), cancellation runs the API's cancel route
(`do_cancel`), reads run the API's booking routes, and the answers are the API's
`BookingRead` mapped by fhir/mapping.py. A $hold and a `POST /api/v1/bookings` with the same
key and the same slot and patient are the same request (I7): the key's answer is shared.
"""
from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from typing import Any

from fastapi import APIRouter, Request

from guahao.booking import errors as booking_errors
from guahao.booking import hold_flow
from guahao.booking import router as booking_api
from guahao.booking.schemas import BookingCreate
from guahao.core import idempotency, metrics
from guahao.core.deps import CurrentAccount, CurrentAccountWithKey
from guahao.core.errors import InvalidRequest, NotFound
from guahao.core.i18n import request_language
from guahao.fhir import mapping, params
from guahao.fhir import waitlist as fhir_waitlist
from guahao.fhir.auth import FhirCaller, need_scope
from guahao.fhir.outcome import FhirJSON, FhirRoute, information, issue, only_outcome
from guahao.fhir.resources import PLATFORM_ZONE, base_of, released, searchset
from guahao.patients import lookup as patient_lookup
from guahao.patients import service as patients_service
from guahao.scheduling.domain import local_today

router = APIRouter(route_class=FhirRoute)
HOLD_PATH = "/api/v1/bookings"  # the key's request is the API's hold: one answer for both faces
PROPOSED = "proposed-"
PAY_NOTICE = {"zh-CN": "号源已为您锁定,请在锁号截止前完成支付,逾期自动释放。",
              "en": "The seat is held for you; pay before the hold ends or it is released."}


async def _parameters(request: Request) -> dict[str, list[dict[str, Any]]]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest(field="Parameters") from None
    return params.parameters(body)


def _locale(request: Request) -> str:
    return request_language(request.headers, getattr(request.state, "account_locale", None))


# --- $find ------------------------------------------------------------------------------

@router.post("/Appointment/$find")
async def find(request: Request, caller: FhirCaller):
    """Free bands as proposed Appointments (IHE ITI-115): `start` / `end`, `specialty`
    (department), `visit-type` / `service-type` (registration level), `practitioner`,
    `location` / `organization` (hospital), `_count`. `total` counts every match; a band
    whose every seat is held or sold is not listed (a held seat is not remaining)."""
    need_scope(caller, "system/Slot.read")
    found = await _parameters(request)
    now = request.app.state.clock.now()
    today = local_today(now, PLATFORM_ZONE)
    bounds = [f"ge{v}" for v in params.all_of(found, "start")] + [f"le{v}" for v in params.all_of(found, "end")]
    first, last = params.date_range(bounds, today, "start")
    where: dict[str, Any] = {}
    practitioner = params.first_of(found, "practitioner")
    if practitioner:
        where["doctor_id"] = (mapping.ref_id(practitioner, "PractitionerRole")
                              or params.reference(practitioner, "Practitioner", "practitioner"))
    place = params.first_of(found, "location", "location-reference", "organization")
    if place:
        where["hospital_id"] = params.reference(place, "Location", "location")
    specialty = params.first_of(found, "specialty")
    if specialty:
        code = specialty["coding"][0].get("code") if isinstance(specialty, dict) and specialty.get("coding") \
            else str(specialty).split("|")[-1]
        if not str(code).isdigit():
            raise InvalidRequest(field="specialty")
        where["department_id"] = int(code)
    visit_type = params.first_of(found, "visit-type", "service-type")
    if visit_type:
        code = visit_type["coding"][0].get("code") if isinstance(visit_type, dict) and visit_type.get("coding") \
            else str(visit_type).split("|")[-1]
        where["registration_level"] = code
    count_value = request.query_params.get("_count") or params.first_of(found, "_count")
    count = params.count(None if count_value is None else str(count_value))
    schedules = await released(request, now, first=first, last=last, **where)
    proposals = [mapping.proposed_appointment(s, item) for s in schedules for item in s.view.slots
                 if item.state == "bookable" and item.remaining > 0]
    return searchset(request, proposals, count=count, offset=0)


# --- $hold ------------------------------------------------------------------------------

def _slot_of(found: dict[str, list[dict[str, Any]]]) -> int:
    """The band to hold: a proposed Appointment's id, or an Appointment resource's slot."""
    reference = params.first_of(found, "appointment-reference", "appt-id")
    if isinstance(reference, str):
        last = reference.rstrip("/").split("/")[-1]
        if last.startswith(PROPOSED) and last[len(PROPOSED):].isdigit():
            return int(last[len(PROPOSED):])
        raise InvalidRequest(field="appointment-reference")
    resource = params.first_of(found, "appointment-resource", "appt-resource")
    if isinstance(resource, dict) and resource.get("resourceType") == "Appointment":
        for item in resource.get("slot") or []:
            slot_id = mapping.ref_id(item.get("reference") if isinstance(item, dict) else None, "Slot")
            if slot_id is not None:
                return slot_id
    raise InvalidRequest(field="appointment-reference")


def _patient_reference(found: dict[str, list[dict[str, Any]]]) -> int | None:
    reference = params.first_of(found, "patient-reference", "patient-id")
    if reference is not None:
        return params.reference(str(reference), "Patient", "patient-reference")
    resource = params.first_of(found, "appointment-resource", "appt-resource")
    if isinstance(resource, dict):
        for participant in resource.get("participant") or []:
            actor = (participant.get("actor") or {}).get("reference") if isinstance(participant, dict) else None
            if actor and actor.startswith("Patient/"):
                return params.reference(actor, "Patient", "participant")
    return None


async def _patient_id(request: Request, account_id: int, found: dict[str, list[dict[str, Any]]]) -> int:
    """The caller's patient: by reference (`Patient/<id>`, one of the account's), or by the
    resident ID number in a `patient-resource` identifier, matched through the keyed hash
    among the account's own patients. The number is never echoed, logged or stored here."""
    patient_id = _patient_reference(found)
    if patient_id is not None:
        return patient_id
    resource = params.first_of(found, "patient-resource")
    if isinstance(resource, dict):
        numbers = [i.get("value") for i in resource.get("identifier") or []
                   if isinstance(i, dict) and i.get("system") == mapping.OID_RESIDENT_ID and i.get("value")]
        if numbers:
            now = request.app.state.clock.now()
            async with request.app.state.db.read() as session:
                persons = set(await patient_lookup.person_ids_by_id_number(
                    session, str(numbers[0]), today=local_today(now, PLATFORM_ZONE)))
                mine = [p.id for p in await patients_service.list_for_account(session, account_id)
                        if p.person_id in persons]
            if not mine:
                raise NotFound("patient")
            return mine[0]
    raise InvalidRequest(field="patient-reference")


async def _hold(request: Request, caller, slot_id: int, patient_id: int) -> tuple[int, dict]:
    """The API's hold for this slot and patient, as `POST /api/v1/bookings` runs it."""
    db, clock, locale = request.app.state.db, request.app.state.clock, _locale(request)
    await booking_api.hold_budget(request)
    arrived_at = clock.now()
    account_id, key = caller.principal.account_id, caller.key
    body = BookingCreate(slot_id=slot_id, patient_id=patient_id)
    req_hash = idempotency.request_hash("POST", HOLD_PATH, body.model_dump(exclude_defaults=True))
    stored = await hold_flow.replayed(request, db, clock, idempotency.replay_answer(caller.stored, req_hash, arrived_at),
                                      account_id=account_id, key=key, req_hash=req_hash, arrived_at=arrived_at,
                                      locale=locale)
    if stored is None:
        await booking_api.limit_holds(request, account_id, patient_id)
        stored = await hold_flow.hold_once(request, db, clock, account_id, key, req_hash, body, arrived_at, locale)
    metrics.hold_answered(*stored)
    return stored


def _refused(status: int, problem: dict) -> FhirJSON:
    """A stored problem+json answer of the hold (its message already in the caller's language)
    as the operations' OperationOutcome."""
    found = issue(problem.get("code", "error"), status, problem.get("detail", ""))
    return FhirJSON(only_outcome({"resourceType": "OperationOutcome", "issue": [found]}), status_code=status)


def _appointment_answer(request: Request, booking: dict, *, status: int = 200) -> FhirJSON:
    """One Appointment in a collection Bundle; a running hold adds `Expires` and, when a fee is
    due, an informational OperationOutcome with the page to pay on (IHE has no payment step)."""
    resource = mapping.appointment(booking)
    entries = [resource]
    headers = {}
    if booking["state"] == "held" and booking.get("hold_expires_at"):
        expires = dt.datetime.fromisoformat(booking["hold_expires_at"]).astimezone(dt.UTC)
        headers["Expires"] = format_datetime(expires, usegmt=True)
        if "pay" in booking.get("allowed_actions", []):
            pay = f"{request.app.state.settings.base_url.rstrip('/')}/bookings/{booking['id']}/pay"
            entries.append(information(PAY_NOTICE["en" if _locale(request) == "en" else "zh-CN"], diagnostics=pay))
    found = mapping.bundle("collection", entries, base=base_of(request))
    return FhirJSON(found, status_code=status, headers=headers)


@router.post("/Appointment/$hold")
async def hold(request: Request, caller: CurrentAccountWithKey):
    """Hold a seat of a band for one of your patients (IHE ITI-116): `appointment-reference`
    (a proposed Appointment from $find; Argonaut `appt-id`) or `appointment-resource` with
    its slot, and `patient-reference` (`Patient/<id>`, one of yours) or `patient-resource`
    with the resident ID number. Success: one pending Appointment (booked when the fee is 0)
    and `Expires`; refused: only an OperationOutcome. Needs an Idempotency-Key."""
    found = await _parameters(request)
    slot_id = _slot_of(found)
    patient_id = await _patient_id(request, caller.principal.account_id, found)
    status, payload = await _hold(request, caller, slot_id, patient_id)
    if status >= 400:
        return _refused(status, payload)
    return _appointment_answer(request, payload)


# --- $book ------------------------------------------------------------------------------

async def _read(request: Request, account, booking_id: int) -> dict:
    read = await booking_api.get_booking(booking_id, account, request.app.state.db, request.app.state.clock,
                                         _locale(request))
    return read.model_dump(mode="json", exclude={"visit_reason"})


async def _cancel(request: Request, account, booking_id: int) -> dict:
    """The API's cancellation; an appointment already cancelled by its patient is answered as
    it is (a retried cancel), anything else goes to `do_cancel` and its rules."""
    current = await _read(request, account, booking_id)
    if current["state"] == "cancelled":
        return current
    read = await booking_api.cancel_booking(request, booking_id, account, request.app.state.db,
                                            request.app.state.clock, _locale(request))
    return read.model_dump(mode="json", exclude={"visit_reason"})


def _booking_id(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    return mapping.ref_id(value, "Appointment")


@router.post("/Appointment/$book")
async def book(request: Request, caller: CurrentAccountWithKey):
    """Book (IHE ITI-117): an `appointment-reference` to your pending Appointment (a $hold),
    or to a proposed one / an `appointment-resource` with a slot (hold and book in one); an
    `appointment-resource` with your Appointment's id and status `cancelled` cancels it (a
    `waitlist-<id>` one leaves the waitlist).
    A free registration is booked at once; a fee keeps it pending until paid (the
    OperationOutcome names the page). An expired hold is refused (`hold_expired`)."""
    found = await _parameters(request)
    account = caller.principal
    resource = params.first_of(found, "appointment-resource", "appt-resource")
    if isinstance(resource, dict) and resource.get("status") == "cancelled":
        entry = fhir_waitlist.entry_id(str(resource.get("id")))
        if entry is not None:  # a 候补 entry: leave the waitlist
            found = mapping.bundle("collection", [await fhir_waitlist.leave(request, account.account_id, entry)],
                                   base=base_of(request))
            return FhirJSON(found)
        booking_id = _booking_id(f"Appointment/{resource.get('id')}")
        if booking_id is None:
            raise InvalidRequest(field="appointment-resource")
        return _appointment_answer(request, await _cancel(request, account, booking_id))
    cancelled = _booking_id(params.first_of(found, "cancelled-appt-id"))
    reference = params.first_of(found, "appointment-reference", "appt-id")
    booking_id = _booking_id(reference)
    if booking_id is None:  # a proposed Appointment or a resource with a slot: hold it now
        status, payload = await _hold(request, caller, _slot_of(found), await _patient_id(request, account.account_id,
                                                                                           found))
        if status >= 400:
            return _refused(status, payload)
        booking = payload
    else:
        booking = await _read(request, account, booking_id)
        if booking["state"] == "expired":
            raise booking_errors.HoldExpired()
        if booking["state"] not in ("held", "confirmed"):
            raise booking_errors.TransitionRefused(state=booking["state"], event="book")
    if cancelled is not None:  # Argonaut's reschedule: the new one stands, then the old one goes
        await _cancel(request, account, cancelled)
    return _appointment_answer(request, booking)


# --- the caller's own appointments ------------------------------------------------------

@router.get("/Appointment")
async def search_appointments(request: Request, account: CurrentAccount):
    """Your own appointments (IHE ITI-118): your bookings and your 候补 entries (status
    `waitlist`, fhir/waitlist.py), by `patient` (`Patient/<id>`, one of yours), `date` (the
    visit date, with ge / le), `status`. Never another account's."""
    q = request.query_params
    page = {"count": params.count(q.get("_count")), "offset": params.offset(q.get("_offset"))}
    patient_id = params.reference(q.get("patient"), "Patient", "patient")
    dates = q.getlist("date")
    now = request.app.state.clock.now()
    first, last = params.date_range(dates, local_today(now, PLATFORM_ZONE), "date") if dates else (None, None)
    statuses = set(q.get("status").split(",")) if q.get("status") else None
    items, offset = [], 0
    while True:
        found = await booking_api.list_bookings(account, request.app.state.db, request.app.state.clock,
                                                _locale(request), state=None, limit=100, offset=offset)
        items += found.items
        offset += 100
        if offset >= found.total:
            break
    found = [(item.patient.id, item.visit_date, mapping.appointment(item.model_dump(mode="json",
                                                                                  exclude={"visit_reason"})))
             for item in items]
    found += [(entry.patient_id, entry.visit_date, resource)
              for entry, resource in await fhir_waitlist.appointments(request, account.account_id)]
    resources = [resource for patient, visit, resource in found
                 if (patient_id is None or patient == patient_id)
                 and (first is None or first <= visit <= last)
                 and (statuses is None or resource["status"] in statuses)]
    return searchset(request, resources, **page)


@router.get("/Appointment/{resource_id}")
async def read_appointment(resource_id: str, request: Request, account: CurrentAccount):
    """One of your appointments (a booking, or a 候补 entry as `waitlist-<id>`); another
    account's is 404, like a missing one."""
    entry = fhir_waitlist.entry_id(resource_id)
    if entry is not None:
        return FhirJSON(await fhir_waitlist.read(request, account.account_id, entry))
    booking_id = _booking_id(f"Appointment/{resource_id}")
    if booking_id is None:
        raise NotFound("booking")
    return FhirJSON(mapping.appointment(await _read(request, account, booking_id)))


@router.patch("/Appointment/{resource_id}")
async def patch_appointment(resource_id: str, request: Request, account: CurrentAccount):
    """Cancel one of your appointments (Argonaut): a JSON Patch replacing `/status` with
    `cancelled`, or a partial Appointment with `"status": "cancelled"`. Nothing else may change.
    On a 候补 entry (`waitlist-<id>`) it leaves the waitlist (`do_leave`)."""
    entry = fhir_waitlist.entry_id(resource_id)
    booking_id = _booking_id(f"Appointment/{resource_id}")
    if booking_id is None and entry is None:
        raise NotFound("booking")
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest(field="body") from None
    wanted = None
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict) \
            and body[0].get("op") == "replace" and body[0].get("path") == "/status":
        wanted = body[0].get("value")
    elif isinstance(body, dict) and set(body) <= {"resourceType", "id", "status"} \
            and body.get("resourceType", "Appointment") == "Appointment":
        wanted = body.get("status")
    if wanted != "cancelled":
        raise InvalidRequest(field="status")
    if entry is not None:
        return FhirJSON(await fhir_waitlist.leave(request, account.account_id, entry))
    return FhirJSON(mapping.appointment(await _cancel(request, account, booking_id)))
