"""The hospital admin's departments (a two-level tree with age/sex restrictions and the
location patients are sent to) and doctors (title, registration level, specialty,
introduction): lists with an add form, and an edit page each.

Writes go through catalog.staff_actions, as the JSON routes do (the same checks and audit).
"""
from __future__ import annotations

from fastapi import APIRouter

from guahao.catalog import photos, staff_actions
from guahao.catalog import service as catalog_service
from guahao.catalog.schemas import DepartmentCreate, DepartmentUpdate, DoctorCreate, DoctorUpdate
from guahao.core.errors import GuahaoError, NotFound
from guahao.web.staff import forms
from guahao.web.staff.base import ADMINS, StaffPageDep, form_of, parse, redirect, render

router = APIRouter(prefix="/staff", include_in_schema=False)


def _scope(staff) -> int | None:
    return None if staff.is_operator else staff.hospital_id


def _department_values(form: dict[str, str]) -> dict:
    return {"name": forms.text(form, "name"), "parent_id": forms.integer(form, "parent_id", required=False),
            "location": forms.text(form, "location"), "introduction": forms.text(form, "introduction"),
            "sort_order": forms.integer(form, "sort_order", required=False) or 0,
            "min_age": forms.integer(form, "min_age", required=False),
            "max_age": forms.integer(form, "max_age", required=False),
            "allowed_sex": forms.text(form, "allowed_sex", optional=True)}


def _doctor_values(form: dict[str, str]) -> dict:
    return {"department_id": forms.integer(form, "department_id"), "name": forms.text(form, "name"),
            "title": forms.text(form, "title"), "registration_level": forms.text(form, "registration_level"),
            "specialty": forms.text(form, "specialty"), "introduction": forms.text(form, "introduction"),
            "active": forms.checked(form, "active")}


async def _departments(page, hospital_id: int):
    async with page.request.app.state.db.read() as session:
        await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        return await catalog_service.list_departments(session, hospital_id)


# --- departments ------------------------------------------------------------------------------

async def _departments_page(page, hospital_id: int, *, status: int = 200, **extra):
    departments = await _departments(page, hospital_id)
    return render(page, "staff/admin/departments.html", status=status,
                  tree=catalog_service.department_tree(departments),
                  top=[d for d in departments if d.parent_id is None], **extra)


@router.get("/hospitals/{hospital_id}/departments")
async def departments(hospital_id: int, page: StaffPageDep, saved: int = 0):
    page.need(*ADMINS, hospital_id=hospital_id)
    return await _departments_page(page, hospital_id, notice=page._("Saved.") if saved else None)


@router.post("/hospitals/{hospital_id}/departments")
async def department_create(hospital_id: int, page: StaffPageDep):
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        data = parse(DepartmentCreate, _department_values(form))
        async with state.db.begin() as session:
            await staff_actions.do_create_department(session, hospital_id, data, staff_id=staff.staff_id,
                                                     now=state.clock.now())
    except GuahaoError as exc:
        return await _departments_page(page, hospital_id, status=exc.status, error=exc.message(page.locale),
                                       values=form)
    return redirect(page, f"/staff/hospitals/{hospital_id}/departments?saved=1")


async def _department_of(page, hospital_id: int, department_id: int):
    async with page.request.app.state.db.read() as session:
        department = await catalog_service.get_department_or_raise(session, department_id, hospital_id=hospital_id,
                                                                   include_inactive=True)
    return department


async def _department_page(page, hospital_id: int, department_id: int, *, status: int = 200, **extra):
    department = await _department_of(page, hospital_id, department_id)
    departments = await _departments(page, hospital_id)
    top = [d for d in departments if d.parent_id is None and d.id != department.id]
    return render(page, "staff/admin/department.html", status=status, department=department, top=top, **extra)


@router.get("/hospitals/{hospital_id}/departments/{department_id}")
async def department_form(hospital_id: int, department_id: int, page: StaffPageDep):
    page.need(*ADMINS, hospital_id=hospital_id)
    return await _department_page(page, hospital_id, department_id)


@router.post("/hospitals/{hospital_id}/departments/{department_id}")
async def department_save(hospital_id: int, department_id: int, page: StaffPageDep):
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        await _department_of(page, hospital_id, department_id)  # 404 for another hospital's
        data = parse(DepartmentUpdate, _department_values(form))
        async with state.db.begin() as session:
            await staff_actions.do_update_department(session, department_id, data, scope=hospital_id,
                                                     staff_id=staff.staff_id, now=state.clock.now())
    except NotFound:
        raise
    except GuahaoError as exc:
        return await _department_page(page, hospital_id, department_id, status=exc.status,
                                      error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/departments?saved=1")


# --- doctors ----------------------------------------------------------------------------------

async def _doctors_page(page, hospital_id: int, *, status: int = 200, **extra):
    departments = await _departments(page, hospital_id)
    async with page.request.app.state.db.read() as session:
        doctors = await staff_actions.list_hospital_doctors(session, hospital_id)
    return render(page, "staff/admin/doctors.html", status=status, doctors=doctors, departments=departments,
                  department_names={d.id: d.name for d in departments}, titles=staff_actions.TITLES, levels=staff_actions.REGISTRATION_LEVELS,
                  **extra)


@router.get("/hospitals/{hospital_id}/doctors")
async def doctors(hospital_id: int, page: StaffPageDep, saved: int = 0):
    page.need(*ADMINS, hospital_id=hospital_id)
    return await _doctors_page(page, hospital_id, notice=page._("Saved.") if saved else None)


@router.post("/hospitals/{hospital_id}/doctors")
async def doctor_create(hospital_id: int, page: StaffPageDep):
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        data = parse(DoctorCreate, {**_doctor_values(form), "active": True})
        async with state.db.begin() as session:
            await staff_actions.do_create_doctor(session, hospital_id, data, staff_id=staff.staff_id,
                                                 now=state.clock.now())
    except GuahaoError as exc:
        return await _doctors_page(page, hospital_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/doctors?saved=1")


async def _doctor_page(page, hospital_id: int, doctor_id: int, *, status: int = 200, **extra):
    async with page.request.app.state.db.read() as session:
        doctor = await catalog_service.get_doctor_or_raise(session, doctor_id, hospital_id=hospital_id,
                                                           include_inactive=True)
        photo_tag = (await photos.photo_tags(session, [doctor.id])).get(doctor.id)
    departments = await _departments(page, hospital_id)
    return render(page, "staff/admin/doctor.html", status=status, doctor=doctor, departments=departments,
                  titles=staff_actions.TITLES, levels=staff_actions.REGISTRATION_LEVELS, photo_tag=photo_tag,
                  max_mb=photos.MAX_BYTES // (1024 * 1024), **extra)


@router.get("/hospitals/{hospital_id}/doctors/{doctor_id}")
async def doctor_form(hospital_id: int, doctor_id: int, page: StaffPageDep, saved: int = 0):
    page.need(*ADMINS, hospital_id=hospital_id)
    return await _doctor_page(page, hospital_id, doctor_id, notice=page._("Saved.") if saved else None)


@router.post("/hospitals/{hospital_id}/doctors/{doctor_id}")
async def doctor_save(hospital_id: int, doctor_id: int, page: StaffPageDep):
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    async with state.db.read() as session:  # another hospital's doctor: 404 before anything
        await catalog_service.get_doctor_or_raise(session, doctor_id, hospital_id=hospital_id, include_inactive=True)
    try:
        data = parse(DoctorUpdate, _doctor_values(form))
        async with state.db.begin() as session:
            await staff_actions.do_update_doctor(session, doctor_id, data, scope=hospital_id,
                                                 staff_id=staff.staff_id, now=state.clock.now())
    except GuahaoError as exc:
        return await _doctor_page(page, hospital_id, doctor_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/doctors?saved=1")


@router.post("/hospitals/{hospital_id}/doctors/{doctor_id}/photo")
async def doctor_photo_save(hospital_id: int, doctor_id: int, page: StaffPageDep):
    """Upload (multipart, field `photo`) or, with `remove`, delete the doctor's photo."""
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)  # the CSRF check; the file part is read below from the same parsed form
    state = page.request.app.state
    async with state.db.read() as session:  # another hospital's doctor: 404 before anything
        await catalog_service.get_doctor_or_raise(session, doctor_id, hospital_id=hospital_id, include_inactive=True)
    upload = (await page.request.form()).get("photo")
    try:
        if forms.checked(form, "remove"):
            async with state.db.begin() as session:
                await staff_actions.do_delete_doctor_photo(session, doctor_id, scope=hospital_id,
                                                           staff_id=staff.staff_id, now=state.clock.now())
        else:
            content = await photos.read_limited(upload) if hasattr(upload, "read") else b""
            async with state.db.begin() as session:
                await staff_actions.do_set_doctor_photo(session, doctor_id, content, scope=hospital_id,
                                                        staff_id=staff.staff_id, now=state.clock.now())
    except GuahaoError as exc:
        return await _doctor_page(page, hospital_id, doctor_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/doctors/{doctor_id}?saved=1")
