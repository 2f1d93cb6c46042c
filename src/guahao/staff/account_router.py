"""A staff user's own account: change password, TOTP second factor (operators and admins)."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from guahao.core.deps import ClockDep, CurrentStaff, Db, Limiter
from guahao.core.errors import Forbidden, NotFound
from guahao.staff import service as staff_service
from guahao.staff import totp
from guahao.staff.schemas import OtpCode, PasswordChange, TotpEnrolment, TotpStatus

router = APIRouter(prefix="/api/v1/staff", tags=["staff"])
ATTEMPT_LIMIT = "5/minute"  # as for login: each try costs an argon2 hash or guesses a code


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _user(session, staff_id: int):
    user = await staff_service.get(session, staff_id)
    if user is None:
        raise NotFound("staff")
    return user


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(body: PasswordChange, request: Request, staff: CurrentStaff, db: Db, clock: ClockDep,
                          limiter: Limiter) -> Response:
    """Change one's own password (the current one is required); every other session of the
    user ends; audited."""
    await limiter.hit(ATTEMPT_LIMIT, "staff-password", str(staff.staff_id), _client(request))
    async with db.read() as session:
        user = await _user(session, staff.staff_id)
    password_hash = await staff_service.new_password_hash(user, current_password=body.current_password,
                                                          new_password=body.new_password)
    async with db.begin() as session:
        await staff_service.do_set_password(session, staff.staff_id, password_hash, now=clock.now(),
                                            keep_session_id=staff.session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/totp", response_model=TotpStatus)
async def totp_status(staff: CurrentStaff, db: Db) -> TotpStatus:
    """Whether your two-step verification is on."""
    async with db.read() as session:
        return TotpStatus(enabled=await totp.is_enabled(session, staff.staff_id))


@router.post("/me/totp", status_code=status.HTTP_201_CREATED, response_model=TotpEnrolment)
async def enroll_totp(staff: CurrentStaff, db: Db, clock: ClockDep, response: Response) -> TotpEnrolment:
    """Start two-step verification: a new secret, shown once. Operators and admins only."""
    async with db.begin() as session:
        uri = await totp.do_enroll(session, await _user(session, staff.staff_id), now=clock.now())
    response.headers["Cache-Control"] = "no-store"
    return TotpEnrolment(otpauth_uri=uri)


@router.post("/me/totp/confirm", response_model=TotpStatus)
async def confirm_totp(body: OtpCode, request: Request, staff: CurrentStaff, db: Db, clock: ClockDep,
                       limiter: Limiter) -> TotpStatus:
    """Switch two-step verification on with the first code the app shows; login then needs one."""
    await limiter.hit(ATTEMPT_LIMIT, "staff-totp", str(staff.staff_id), _client(request))
    async with db.begin() as session:
        await totp.do_confirm(session, await _user(session, staff.staff_id), body.code, now=clock.now())
    return TotpStatus(enabled=True)


@router.post("/me/totp/disable", response_model=TotpStatus)
async def disable_totp(body: OtpCode, request: Request, staff: CurrentStaff, db: Db, clock: ClockDep,
                       limiter: Limiter) -> TotpStatus:
    """Turn two-step verification off with a current code; audited."""
    await limiter.hit(ATTEMPT_LIMIT, "staff-totp", str(staff.staff_id), _client(request))
    async with db.begin() as session:
        await totp.do_disable(session, await _user(session, staff.staff_id), body.code, now=clock.now())
    return TotpStatus(enabled=False)


@router.post("/users/{staff_id}/totp/reset", response_model=TotpStatus)
async def reset_totp(staff_id: int, staff: CurrentStaff, db: Db, clock: ClockDep) -> TotpStatus:
    """Remove another user's second factor (they lost their phone): the operator for anyone,
    a hospital admin for their hospital's users. Audited."""
    staff.require(staff_service.HOSPITAL_ADMIN)
    async with db.begin() as session:
        user = await _user(session, staff_id)
        if not staff.is_operator:
            if user.hospital_id is None:
                raise NotFound("staff")  # an operator, as seen from a hospital: not theirs
            staff.ensure_hospital(user.hospital_id)
            if user.id == staff.staff_id:
                raise Forbidden()  # one's own factor is switched off with a code (/me/totp/disable)
        await totp.do_reset(session, user, actor_staff_id=staff.staff_id, now=clock.now())
    return TotpStatus(enabled=False)
