"""就诊人 pages: list (masked), add (with the separate consent for the ID number), the identity
check, edit, delete. Each action is the patients API's route function (patients/router.py);
what a page adds is only the consent it asks for and records (PIPL)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, get_args
from urllib.parse import quote

from fastapi import APIRouter, Path
from pydantic import ValidationError

from guahao.accounts import service as accounts_service
from guahao.core import idcard
from guahao.core.errors import GuahaoError, InvalidRequest
from guahao.patients import router as patients_api
from guahao.patients.schemas import IdType, PatientCreate, PatientUpdate, Relationship, VerifyRequest
from guahao.patients.validation import age_on
from guahao.web.account_pages import ID_NUMBER_VERSION
from guahao.web.pages import Page, PageDep, form_of, redirect, render, safe_next

router = APIRouter(include_in_schema=False)
RELATIONSHIPS, ID_TYPES = get_args(Relationship), get_args(IdType)
PatientId = Annotated[int, Path(ge=1, le=2**63 - 1)]
# 医保卡号, 就诊卡号, e-mail, 家庭住址, 既往病史: optional, shown masked (the history not at all)
OPTIONAL = ("insurance_card", "visit_card", "email", "address", "medical_history")
GUARDIAN_AGE = 14  # PIPL art. 31: personal information of a child under 14 needs the guardian's consent
# The sandbox face check takes no camera: the page offers the two outcomes as buttons.
SANDBOX_TOKENS = {"pass": "pass-web-sandbox", "fail": "fail-web-sandbox"}


def _state(page: Page):
    state = page.request.app.state
    return state.db, state.clock


def _form_page(page: Page, *, values: dict, error: str | None = None, status: int = 200, patient=None,
               next_url: str = "/patients"):
    return render(page, "patients/form.html", status=status, values=values, error=error, patient=patient,
                  relationships=RELATIONSHIPS, id_types=ID_TYPES, next_url=next_url,
                  id_version=ID_NUMBER_VERSION)


@router.get("/patients")
async def patients(page: PageDep):
    account = page.need_account()
    db, clock = _state(page)
    found = await patients_api.list_patients(page.request, account, db, clock)
    return render(page, "patients/list.html", patients=found.items, total=found.total,
                  max_patients=found.max_patients)


@router.get("/patients/new")
async def new_patient(page: PageDep, next: str = "/patients"):
    page.need_account()
    return _form_page(page, values={"relationship": "self", "id_type": "resident_id"}, next_url=safe_next(next))


def _is_minor(values: dict, now: dt.datetime) -> bool:
    if values.get("id_type", "resident_id") != "resident_id":
        return False
    try:
        document = idcard.validate_resident_id(values.get("id_number", ""), today=now.date())
    except GuahaoError:
        return False  # the service reports the bad number itself
    return age_on(document.birth_date, now.date()) < GUARDIAN_AGE


@router.post("/patients/new")
async def add_patient(page: PageDep):
    account = page.need_account()
    form = await form_of(page)
    db, clock = _state(page)
    next_url = safe_next(form.get("next"), "/patients")
    values = {k: (form.get(k) or "").strip() for k in ("relationship", "name", "id_type", "id_number", "phone")}
    shown = {k: v for k, v in values.items() if k != "id_number"}  # the number is never echoed back
    values |= {k: form[k].strip() for k in OPTIONAL if (form.get(k) or "").strip()}
    values["health_consent"] = form.get("consent_health") == ID_NUMBER_VERSION
    if form.get("consent_id") != ID_NUMBER_VERSION:
        return _form_page(page, values=shown, status=422, next_url=next_url,
                          error=page._("Please agree to the processing of the ID number first."))
    if _is_minor(values, clock.now()) and form.get("guardian") != "1":
        return _form_page(page, values=shown, status=422, next_url=next_url,
                          error=page._("This patient is under 14: please confirm that you are the guardian and consent to the processing of the child's information."))
    try:
        body = PatientCreate(**values)
    except ValidationError:
        return _form_page(page, values=shown, status=422, next_url=next_url,
                          error=InvalidRequest().message(page.locale))
    try:
        created = await patients_api.add_patient(body, page.request, account, db, clock)
    except GuahaoError as exc:
        return _form_page(page, values=shown, status=exc.status, error=exc.message(page.locale), next_url=next_url)
    async with db.begin() as session:
        await accounts_service.do_record_consent(session, account.account_id, kind="id_number",
                                                 version=ID_NUMBER_VERSION, now=clock.now())
        if created.medical_history_on_file:
            await accounts_service.do_record_consent(session, account.account_id, kind="health",
                                                     version=ID_NUMBER_VERSION, now=clock.now())
        if created.age < GUARDIAN_AGE:
            await accounts_service.do_record_consent(session, account.account_id, kind="guardian",
                                                     version=ID_NUMBER_VERSION, now=clock.now())
    return redirect(page, f"/patients/{created.id}/verify?next={quote(next_url, safe='')}")


@router.get("/patients/{patient_id}")
async def edit_patient_page(page: PageDep, patient_id: PatientId):
    account = page.need_account()
    db, clock = _state(page)
    patient = await patients_api.get_patient(patient_id, account, db, clock)
    return _form_page(page, values={"relationship": patient.relationship, "name": "", "phone": ""}, patient=patient)


@router.post("/patients/{patient_id}")
async def edit_patient(page: PageDep, patient_id: PatientId):
    """Only what may change: relationship, name, phone (identity stays; a new name needs a new check)."""
    account = page.need_account()
    form = await form_of(page)
    db, clock = _state(page)
    changes = {k: form[k].strip() for k in ("relationship", "name", "phone", *OPTIONAL) if (form.get(k) or "").strip()}
    health = form.get("consent_health") == ID_NUMBER_VERSION
    try:
        body = PatientUpdate(**changes, health_consent=health)
        updated = await patients_api.update_patient(patient_id, body, account, db, clock)
    except (GuahaoError, ValidationError) as exc:
        patient = await patients_api.get_patient(patient_id, account, db, clock)
        message = exc.message(page.locale) if isinstance(exc, GuahaoError) else InvalidRequest().message(page.locale)
        return _form_page(page, values={"relationship": changes.get("relationship", patient.relationship)},
                          patient=patient, error=message, status=getattr(exc, "status", 422))
    if updated.medical_history_on_file and "medical_history" in changes:
        async with db.begin() as session:
            await accounts_service.do_record_consent(session, account.account_id, kind="health",
                                                     version=ID_NUMBER_VERSION, now=clock.now())
    return redirect(page, "/patients")


@router.post("/patients/{patient_id}/delete")
async def delete_patient(page: PageDep, patient_id: PatientId):
    account = page.need_account()
    await form_of(page)
    db, clock = _state(page)
    try:
        await patients_api.remove_patient(patient_id, page.request, account, db, clock)
    except GuahaoError as exc:
        found = await patients_api.list_patients(page.request, account, db, clock)
        return render(page, "patients/list.html", status=exc.status, patients=found.items, total=found.total,
                      max_patients=found.max_patients, error=exc.message(page.locale))
    return redirect(page, "/patients")


@router.get("/patients/{patient_id}/verify")
async def verify_page(page: PageDep, patient_id: PatientId, next: str = "/patients"):
    account = page.need_account()
    db, clock = _state(page)
    patient = await patients_api.get_patient(patient_id, account, db, clock)
    return render(page, "patients/verify.html", patient=patient, next_url=safe_next(next, "/patients"),
                  sandbox=page.request.app.state.settings.face_check_provider == "sandbox")


@router.post("/patients/{patient_id}/verify")
async def verify(page: PageDep, patient_id: PatientId):
    account = page.need_account()
    form = await form_of(page)
    db, clock = _state(page)
    next_url = safe_next(form.get("next"), "/patients")
    token = SANDBOX_TOKENS.get(form.get("outcome", ""), form.get("liveness_token", "") or "-")
    try:
        await patients_api.verify_patient(patient_id, VerifyRequest(liveness_token=token), page.request, account,
                                          db, clock)
    except GuahaoError as exc:
        patient = await patients_api.get_patient(patient_id, account, db, clock)
        return render(page, "patients/verify.html", status=exc.status, patient=patient, next_url=next_url,
                      error=exc.message(page.locale),
                      sandbox=page.request.app.state.settings.face_check_provider == "sandbox")
    return redirect(page, next_url)
