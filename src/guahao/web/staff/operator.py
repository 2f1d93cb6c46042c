"""The platform operator's pages: the hospitals and onboarding one (profile, level, location,
time zone, HIS mode and connection, entrance), staff users, platform health (job queue
counts, dead letters with retry) and the audit log search (hospital admins search their own
hospital's entries, as in the API).

Writes call the functions the JSON routes call: catalog.staff_actions, his.admin_actions,
staff.service.do_create_staff, jobs.service.do_retry_dead (each audited there).
"""
from __future__ import annotations

from fastapi import APIRouter

from guahao.catalog import service as catalog_service
from guahao.catalog import staff_actions
from guahao.catalog.schemas import HospitalCreate, HospitalUpdate
from guahao.core import audit
from guahao.core.clock import SHANGHAI
from guahao.core.errors import GuahaoError, InvalidRequest
from guahao.his import admin_actions
from guahao.his import connections as his_connections
from guahao.his.schemas import HisConnectionUpdate
from guahao.jobs import service as jobs_service
from guahao.staff import service as staff_service
from guahao.staff.models import ROLES
from guahao.staff.schemas import StaffUserCreate
from guahao.web.staff import forms
from guahao.web.staff.base import (
    ADMIN,
    NAV,
    OPERATOR,
    NavItem,
    StaffPageDep,
    _,
    form_of,
    parse,
    redirect,
    render,
)

router = APIRouter(prefix="/staff", include_in_schema=False)

NAV.extend([
    NavItem("/staff/operator/hospitals", _("Hospitals"), (OPERATOR,), hospital=False),
    NavItem("/staff/operator/staff", _("Staff users"), (OPERATOR,), hospital=False),
    NavItem("/staff/operator/jobs", _("Platform health"), (OPERATOR,), hospital=False),
    NavItem("/staff/audit", _("Audit log"), (OPERATOR, ADMIN), hospital=False),
])
HIS_MODE_LABELS = {"local": _("Local (this platform keeps the slots)"), "synced": _("Synced from the HIS"),
                   "realtime": _("Real time with the HIS")}
ENTRANCE_LABELS = {"department": _("Department tree first"), "registration_level": _("普通号 / 专家号 first")}
HOSPITAL_FIELDS = ("name", "short_name", "level", "city", "district", "address", "phone", "latitude", "longitude",
                   "timezone", "entrance", "introduction")
AUDIT_PAGE = 50


# --- hospitals --------------------------------------------------------------------------------

async def _hospitals_page(page, *, status: int = 200, values: dict | None = None, **extra):
    async with page.request.app.state.db.read() as session:
        hospitals = await staff_actions.list_all_hospitals(session)
    return render(page, "staff/operator/hospitals.html", status=status, hospitals=hospitals, levels=staff_actions.LEVELS,
                  his_modes=staff_actions.HIS_MODES, his_mode_labels=HIS_MODE_LABELS, entrances=staff_actions.ENTRANCES,
                  entrance_labels=ENTRANCE_LABELS, values=values or {"timezone": "Asia/Shanghai"}, **extra)


@router.get("/operator/hospitals")
async def hospitals(page: StaffPageDep, created: int | None = None):
    page.need(OPERATOR)
    return await _hospitals_page(page, notice=page._("The hospital was onboarded.") if created else None)


def _connection(form: dict[str, str]) -> HisConnectionUpdate | None:
    if not forms.text(form, "his_base_url"):
        return None
    return parse(HisConnectionUpdate, {"base_url": forms.text(form, "his_base_url"),
                                       "platform": forms.text(form, "his_platform"),
                                       "pool": forms.text(form, "his_pool"), "key": forms.text(form, "his_key")})


@router.post("/operator/hospitals")
async def onboard(page: StaffPageDep):
    """One unit of work: the hospital (in local mode first), its HIS connection when given,
    then the HIS mode asked for (which the catalog refuses without a connection)."""
    staff = page.need(OPERATOR)
    form = await form_of(page)
    state = page.request.app.state
    now = state.clock.now()
    try:
        values = {name: form.get(name, "").strip() for name in HOSPITAL_FIELDS}
        values["short_name"] = values["short_name"] or None
        data = parse(HospitalCreate, {**values, "his_mode": "local"})
        connection = _connection(form)
        mode = forms.text(form, "his_mode") or "local"
        async with state.db.begin() as session:
            hospital = await staff_actions.do_create_hospital(session, data, staff_id=staff.staff_id, now=now)
            if connection is not None:
                await admin_actions.do_replace_connection(session, hospital.id, connection, now=now,
                                                          staff_id=staff.staff_id)
            if mode != "local":
                providers = state.providers
                await staff_actions.do_update_hospital(
                    session, hospital.id, parse(HospitalUpdate, {"his_mode": mode}), staff_id=staff.staff_id,
                    now=now, bookings=providers["bookings"], connections=providers.get("his_connections"))
    except GuahaoError as exc:
        kept = {k: v for k, v in form.items() if k != "his_key"}  # the key is never sent back
        return await _hospitals_page(page, status=exc.status, error=exc.message(page.locale), values=kept)
    return redirect(page, "/staff/operator/hospitals?created=1")


# --- staff users ------------------------------------------------------------------------------

async def _staff_page(page, *, status: int = 200, values: dict | None = None, **extra):
    async with page.request.app.state.db.read() as session:
        users = await staff_service.list_staff(session, hospital_id=None)
        hospitals = await staff_actions.list_all_hospitals(session)
    return render(page, "staff/operator/staff.html", status=status, users=users, hospitals=hospitals,
                  hospital_names={h.id: h.name for h in hospitals}, roles=ROLES,
                  values=values or {}, **extra)


@router.get("/operator/staff")
async def staff_users(page: StaffPageDep, created: int | None = None):
    page.need(OPERATOR)
    return await _staff_page(page, notice=page._("The staff user was created.") if created else None)


@router.post("/operator/staff")
async def staff_create(page: StaffPageDep):
    staff = page.need(OPERATOR)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(StaffUserCreate, {"username": forms.text(form, "username"), "password": form.get("password", ""),
                                       "role": forms.text(form, "role"),
                                       "hospital_id": forms.integer(form, "hospital_id", required=False),
                                       "display_name": forms.text(form, "display_name")})
        async with state.db.begin() as session:
            await staff_service.do_create_staff(
                session, username=body.username, password=body.password, role=body.role,
                hospital_id=body.hospital_id, display_name=body.display_name, now=state.clock.now(),
                actor_staff_id=staff.staff_id)
    except GuahaoError as exc:
        kept = {k: v for k, v in form.items() if k != "password"}
        return await _staff_page(page, status=exc.status, error=exc.message(page.locale), values=kept)
    return redirect(page, "/staff/operator/staff?created=1")


# --- platform health --------------------------------------------------------------------------

async def _jobs_page(page, *, status: int = 200, **extra):
    state = page.request.app.state
    async with state.db.read() as session:
        by_state, by_topic, lag = await jobs_service.stats(session, now=state.clock.now())
        dead = [(m, m.created_at.astimezone(SHANGHAI)) for m in await jobs_service.list_dead(session, limit=100)]
    return render(page, "staff/operator/jobs.html", status=status, by_state=by_state, by_topic=by_topic, lag=lag,
                  dead=dead, **extra)


@router.get("/operator/jobs")
async def jobs(page: StaffPageDep, retried: int | None = None):
    page.need(OPERATOR)
    notice = page._("Job %(id)s is back in the queue.") % {"id": retried} if retried else None
    return await _jobs_page(page, notice=notice)


@router.post("/operator/jobs/{message_id}/retry")
async def retry(message_id: int, page: StaffPageDep):
    staff = page.need(OPERATOR)
    await form_of(page)
    state = page.request.app.state
    try:
        async with state.db.begin() as session:
            await jobs_service.do_retry_dead(session, message_id, now=state.clock.now(), staff_id=staff.staff_id)
    except GuahaoError as exc:
        if exc.status == 404:
            raise
        return await _jobs_page(page, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/operator/jobs?retried={message_id}")


# --- audit log --------------------------------------------------------------------------------

@router.get("/audit")
async def audit_log(page: StaffPageDep, hospital_id: str = "", action: str = "", before_id: str = ""):
    """Newest first, AUDIT_PAGE at a time. A hospital admin sees their hospital's entries only
    (another hospital's id is 404, as in the API)."""
    staff = page.need(OPERATOR, ADMIN)
    try:
        hid = int(hospital_id) if hospital_id.strip() else None
        before = int(before_id) if before_id.strip() else None
    except ValueError as exc:
        raise InvalidRequest(field="hospital_id") from exc
    if not staff.is_operator:
        hid = staff.hospital_id if hid is None else hid
        staff.ensure_hospital(hid)
    action = action.strip()[:64]
    async with page.request.app.state.db.read() as session:
        entries = await audit.list_entries(session, hospital_id=hid, limit=AUDIT_PAGE + 1, before_id=before,
                                           action=action or None)
    shown = entries[:AUDIT_PAGE]
    rows = [(e, e.at.astimezone(SHANGHAI), audit.load_detail(e)) for e in shown]  # staff work in platform time
    return render(page, "staff/operator/audit.html", rows=rows, hospital_id=hid, action=action,
                  next_before=shown[-1].id if len(entries) > AUDIT_PAGE else None)


# --- one hospital: profile, HIS mode and connection ---------------------------------------------

async def _hospital_page(page, hospital_id: int, *, status: int = 200, **extra):
    async with page.request.app.state.db.read() as session:
        hospital = await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        connection = await his_connections.get_connection(session, hospital_id)
    return render(page, "staff/operator/hospital.html", status=status, hospital=hospital, connection=connection,
                  levels=staff_actions.LEVELS, his_modes=staff_actions.HIS_MODES, his_mode_labels=HIS_MODE_LABELS,
                  entrances=staff_actions.ENTRANCES, entrance_labels=ENTRANCE_LABELS, **extra)


@router.get("/operator/hospitals/{hospital_id}")
async def hospital(hospital_id: int, page: StaffPageDep, done: str = ""):
    page.need(OPERATOR)
    notices = {"profile": page._("The hospital was saved."), "his": page._("The HIS connection was saved.")}
    return await _hospital_page(page, hospital_id, notice=notices.get(done))


@router.post("/operator/hospitals/{hospital_id}")
async def hospital_save(hospital_id: int, page: StaffPageDep):
    """Only the fields that changed are sent, so the audit row lists just those. A HIS mode
    switch is refused with live bookings or without a connection (catalog/his_mode.py)."""
    staff = page.need(OPERATOR)
    form = await form_of(page)
    state = page.request.app.state
    async with state.db.read() as session:
        current = await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
    try:
        values = {name: form.get(name, "").strip() for name in (*HOSPITAL_FIELDS, "his_mode")}
        values["short_name"] = values["short_name"] or None
        values["active"] = forms.checked(form, "active")
        full = parse(HospitalUpdate, values)
        changed = {k: v for k, v in full.model_dump(exclude_unset=True).items() if getattr(current, k) != v}
        async with state.db.begin() as session:
            providers = state.providers
            await staff_actions.do_update_hospital(
                session, hospital_id, parse(HospitalUpdate, changed), staff_id=staff.staff_id, now=state.clock.now(),
                bookings=providers["bookings"], connections=providers.get("his_connections"))
    except GuahaoError as exc:
        return await _hospital_page(page, hospital_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/operator/hospitals/{hospital_id}?done=profile")


@router.post("/operator/hospitals/{hospital_id}/his-connection")
async def his_connection_save(hospital_id: int, page: StaffPageDep):
    staff = page.need(OPERATOR)
    form = await form_of(page)
    state = page.request.app.state
    try:
        connection = _connection(form)
        if connection is None:
            raise InvalidRequest(field="his_base_url")
        async with state.db.begin() as session:
            await admin_actions.do_replace_connection(session, hospital_id, connection, now=state.clock.now(),
                                                      staff_id=staff.staff_id)
    except GuahaoError as exc:
        if exc.status == 404:
            raise
        return await _hospital_page(page, hospital_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/operator/hospitals/{hospital_id}?done=his")
