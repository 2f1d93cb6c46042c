"""HTTP routes of the staff feature: login, staff users, hospital rules, the audit log.

Authorisation: every route takes `CurrentStaff`; routes on a hospital call
`ensure_hospital` first (staff of another hospital get 404, as if it did not exist) and the
role check second (staff of this hospital without the role get 403).
"""
from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response, status

from guahao.accounts import service as accounts_service
from guahao.accounts.cookies import clear_session_cookie, set_session_cookie
from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.catalog.schemas import HospitalRulesRead, HospitalRulesUpdate
from guahao.core import audit
from guahao.core.clock import SHANGHAI  # staff accounts: the platform zone
from guahao.core.deps import ClockDep, CurrentStaff, Db, Limiter
from guahao.core.errors import Forbidden, NotFound
from guahao.core.localtime import localize
from guahao.staff import login as staff_login
from guahao.staff import service as staff_service
from guahao.staff.schemas import (
    AuditPage,
    AuditRead,
    StaffLogin,
    StaffLoginRead,
    StaffUserCreate,
    StaffUserRead,
)

router = APIRouter(prefix="/api/v1/staff", tags=["staff"])
ADMIN_CREATABLE_ROLES = (staff_service.SCHEDULER, staff_service.FRONT_DESK)


@router.post("/auth/login", response_model=StaffLoginRead)
async def login(body: StaffLogin, request: Request, response: Response, db: Db, clock: ClockDep,
                limiter: Limiter) -> StaffLoginRead:
    """Log in with username and password (and `otp`, the authenticator's code, once the user
    switched on two-step verification: 401 `otp_required` without it); the token also comes
    back as an HttpOnly cookie.

    Limits: a few tries a minute per username and address (429 `rate_limited`), and after
    `staff_login_max_failures` wrong passwords within the window the username is locked for
    everyone for a while (429 `login_locked`, with Retry-After)."""
    client = request.client.host if request.client else "unknown"
    username = staff_service.normalize_username(body.username)
    await limiter.hit(staff_login.LOGIN_LIMIT, "staff-login", username, client)
    now = clock.now()
    done = await staff_login.do_login(db, username=username, password=body.password, otp=body.otp, now=now,
                                      policy=staff_login.policy_of(request.app.state.settings))
    set_session_cookie(response, done.token, settings=request.app.state.settings, ttl=staff_service.SESSION_TTL)
    return localize(StaffLoginRead(token=done.token, expires_at=now + staff_service.SESSION_TTL,
                                   staff=StaffUserRead.model_validate(done.user)), SHANGHAI)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(staff: CurrentStaff, request: Request, db: Db, clock: ClockDep) -> Response:
    """End this staff session."""
    async with db.begin() as session:
        await accounts_service.do_revoke_session(session, staff.session_id, now=clock.now())
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookie(response, settings=request.app.state.settings)
    return response


@router.get("/me", response_model=StaffUserRead)
async def read_me(staff: CurrentStaff, db: Db) -> StaffUserRead:
    """The logged-in staff member: role and hospital."""
    async with db.read() as session:
        user = await staff_service.get(session, staff.staff_id)
    if user is None:
        raise NotFound("staff")
    return localize(StaffUserRead.model_validate(user), SHANGHAI)


# --- staff users ----------------------------------------------------------------------------

@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=StaffUserRead)
async def create_user(body: StaffUserCreate, staff: CurrentStaff, db: Db, clock: ClockDep) -> StaffUserRead:
    """Operators create any staff user; a hospital admin creates schedulers and front-desk
    users of their own hospital."""
    hospital_id = body.hospital_id
    if not staff.is_operator:
        staff.require(staff_service.HOSPITAL_ADMIN)
        hospital_id = staff.hospital_id if hospital_id is None else hospital_id
        staff.ensure_hospital(hospital_id)
        if body.role not in ADMIN_CREATABLE_ROLES:
            raise Forbidden()
    async with db.begin() as session:
        user = await staff_service.do_create_staff(
            session, username=body.username, password=body.password, role=body.role, hospital_id=hospital_id,
            display_name=body.display_name, now=clock.now(), actor_staff_id=staff.staff_id)
    return localize(StaffUserRead.model_validate(user), SHANGHAI)


@router.get("/users", response_model=list[StaffUserRead])
async def list_users(staff: CurrentStaff, db: Db, hospital_id: int | None = None) -> list[StaffUserRead]:
    """Operators see everyone (or one hospital's staff); a hospital admin sees their hospital's."""
    if not staff.is_operator:
        staff.require(staff_service.HOSPITAL_ADMIN)
        hospital_id = staff.hospital_id if hospital_id is None else hospital_id
        staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        users = await staff_service.list_staff(session, hospital_id=hospital_id)
    return localize([StaffUserRead.model_validate(u) for u in users], SHANGHAI)


# --- hospital rules -------------------------------------------------------------------------

@router.get("/hospitals/{hospital_id}/rules", response_model=HospitalRulesRead)
async def read_rules(hospital_id: int, staff: CurrentStaff, db: Db) -> HospitalRulesRead:
    """Any staff user of the hospital may read its rules (they explain them to patients)."""
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        rules = await hospital_rules.get_rules(session, hospital_id)
        zone = await catalog_service.zone_of(session, hospital_id)
    return localize(HospitalRulesRead.model_validate(rules), zone)


@router.put("/hospitals/{hospital_id}/rules", response_model=HospitalRulesRead)
async def replace_rules(hospital_id: int, body: HospitalRulesUpdate, staff: CurrentStaff, db: Db,
                        clock: ClockDep) -> HospitalRulesRead:
    """Replace the hospital's rules (every field); the change is written to the audit log."""
    staff.ensure_hospital(hospital_id)
    staff.require(staff_service.HOSPITAL_ADMIN)
    async with db.begin() as session:
        rules = await hospital_rules.do_update_rules(session, hospital_id, body, now=clock.now(),
                                                  staff_id=staff.staff_id)
        zone = await catalog_service.zone_of(session, hospital_id)
    return localize(HospitalRulesRead.model_validate(rules), zone)


# --- audit log ------------------------------------------------------------------------------

@router.get("/audit", response_model=AuditPage)
async def list_audit(staff: CurrentStaff, db: Db, hospital_id: int | None = None,
                     before_id: int | None = Query(default=None, ge=1),
                     limit: int = Query(default=50, ge=1, le=200),
                     action: str | None = Query(default=None, max_length=64)) -> AuditPage:
    """Newest first. Hospital admins see their hospital's entries; operators everyone's."""
    if not staff.is_operator:
        hospital_id = staff.hospital_id if hospital_id is None else hospital_id
        staff.ensure_hospital(hospital_id)
        staff.require(staff_service.HOSPITAL_ADMIN)
    async with db.read() as session:
        entries = await audit.list_entries(session, hospital_id=hospital_id, limit=limit + 1,
                                           before_id=before_id, action=action)
        zone = await catalog_service.zone_of(session, hospital_id)  # the platform's zone for operators
    page = entries[:limit]
    items = [AuditRead(id=e.id, at=e.at, staff_id=e.staff_id, account_id=e.account_id, hospital_id=e.hospital_id,
                       action=e.action, object_type=e.object_type, object_id=e.object_id,
                       detail=audit.load_detail(e)) for e in page]
    return localize(AuditPage(items=items, next_cursor=page[-1].id if len(entries) > limit else None), zone)
