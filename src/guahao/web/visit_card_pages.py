"""就诊卡号 pages: per 就诊人, the card numbers hospitals gave them (masked), add or replace one,
remove one. Each action is the patients API's route (patients/router.py)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from guahao.catalog import service as catalog_service
from guahao.core.errors import GuahaoError
from guahao.patients import router as patients_api
from guahao.patients.schemas import VisitCardIn
from guahao.web.pages import Page, PageDep, form_of, redirect, render

router = APIRouter(include_in_schema=False)
PatientId = Annotated[int, Path(ge=1, le=2**63 - 1)]
HOSPITAL_CHOICES = 200  # the select lists this many; a hospital page links here with its id preset


async def _cards_page(page: Page, patient_id: int, *, error: str | None = None, status: int = 200,
                      chosen: int | None = None):
    account = page.need_account()
    state = page.request.app.state
    patient = await patients_api.get_patient(patient_id, account, state.db, state.clock)
    cards = await patients_api.list_visit_cards(patient_id, account, state.db)
    async with state.db.read() as session:
        hospitals, _ = await catalog_service.list_hospitals(session, limit=HOSPITAL_CHOICES)
    return render(page, "patients/cards.html", status=status, patient=patient, cards=cards, error=error,
                  hospitals=[h for h, _ in hospitals], chosen=chosen)


@router.get("/patients/{patient_id}/cards")
async def cards_page(page: PageDep, patient_id: PatientId, hospital: int | None = None):
    return await _cards_page(page, patient_id, chosen=hospital)


@router.post("/patients/{patient_id}/cards")
async def save_card(page: PageDep, patient_id: PatientId):
    account = page.need_account()
    form = await form_of(page)
    state = page.request.app.state
    try:
        hospital_id = int(form.get("hospital_id") or "0")
    except ValueError:
        hospital_id = 0
    number = (form.get("card_number") or "").strip()
    if hospital_id <= 0 or not number or len(number) > 64:
        return await _cards_page(page, patient_id, status=422, chosen=hospital_id or None,
                                 error=page._("Choose the hospital and type the card number."))
    try:
        await patients_api.set_visit_card(patient_id, hospital_id, VisitCardIn(card_number=number), account,
                                          state.db, state.clock)
    except GuahaoError as exc:
        return await _cards_page(page, patient_id, status=exc.status, error=exc.message(page.locale),
                                 chosen=hospital_id)
    return redirect(page, f"/patients/{patient_id}/cards")


@router.post("/patients/{patient_id}/cards/{hospital_id}/delete")
async def remove_card(page: PageDep, patient_id: PatientId, hospital_id: Annotated[int, Path(ge=1, le=2**63 - 1)]):
    account = page.need_account()
    await form_of(page)
    state = page.request.app.state
    await patients_api.remove_visit_card(patient_id, hospital_id, account, state.db)
    return redirect(page, f"/patients/{patient_id}/cards")
