"""What every back-office page (/staff/) shares: who is logged in, the role check, the side
navigation by role, rendering into the staff layout, and reading a form.

The pieces of the patient pages are reused, not forked: the Jinja2 environment and
`render` / `redirect` (web.pages), the CSRF check (`form_of`), the gettext catalogs and the
page error handlers. The staff session is the API's own session cookie (the staff login
route sets the same one), so links to the API's CSV exports work from these pages.

Authorisation follows the API (staff/router.py): a page on a hospital first checks that the
staff member belongs to it (another hospital's objects are 404, as if they did not exist),
then the role (403). The platform operator passes both.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from guahao.catalog import service as catalog_service
from guahao.core.deps import StaffPrincipal, bearer_or_cookie
from guahao.core.errors import InvalidRequest, NotFound
from guahao.staff import service as staff_service
from guahao.web import pages
from guahao.web.pages import LoginRequired, Page, page_for

OPERATOR = staff_service.OPERATOR
ADMIN = staff_service.HOSPITAL_ADMIN
SCHEDULER = staff_service.SCHEDULER
FRONT_DESK = staff_service.FRONT_DESK
WINDOW = (FRONT_DESK, ADMIN)
SCHEDULERS = (SCHEDULER, ADMIN)
ADMINS = (ADMIN,)
RESTRICTION_READERS = (ADMIN, FRONT_DESK)


def _(text: str) -> str:
    """Marks a text for the catalogs (web/i18n.py finds the calls); translated when shown."""
    return text


ROLE_LABELS = {OPERATOR: _("Platform operator"), ADMIN: _("Hospital admin"), SCHEDULER: _("Scheduler"),
               FRONT_DESK: _("Front desk")}


@dataclass(frozen=True)
class NavItem:
    """One side-navigation link: `href` may name `{hospital_id}`; shown to `roles` (the
    operator sees every link of a hospital only inside that hospital's pages)."""

    href: str
    label: str
    roles: tuple[str, ...]
    hospital: bool = True
    covers: tuple[str, ...] = ()  # further paths (with `{hospital_id}`) under which this link is current


# Other page groups (admin, scheduler, operator) append their links here at import time.
NAV: list[NavItem] = [
    NavItem("/staff/hospitals/{hospital_id}/window", _("Front desk"), WINDOW,
            covers=("/staff/hospitals/{hospital_id}/bookings",)),
    NavItem("/staff/hospitals/{hospital_id}/walk-in", _("Walk-in registration"), WINDOW),
    NavItem("/staff/hospitals/{hospital_id}/reports", _("Reports"), ADMINS),
    NavItem("/staff/hospitals/{hospital_id}/restrictions", _("Restrictions"), RESTRICTION_READERS),
]
ACCOUNT_NAV: list[NavItem] = [
    NavItem("/staff/password", _("Change password"), (OPERATOR, ADMIN, SCHEDULER, FRONT_DESK), hospital=False),
    NavItem("/staff/totp", _("Two-step verification"), (OPERATOR, ADMIN), hospital=False),
]


@dataclass
class StaffPage(Page):
    """A patient `Page` plus the staff member behind the session (None when logged out)."""

    staff: StaffPrincipal | None = None
    staff_name: str = ""
    hospital_name: str = ""
    hospital_id: int | None = None  # the hospital whose pages are shown (an operator picks one)

    def need(self, *roles: str, hospital_id: int | None = None) -> StaffPrincipal:
        """The staff member, or the login page (no session), 404 (another hospital), 403 (role).
        No roles: any staff member."""
        if self.staff is None:
            url = self.request.url
            if self.request.method != "GET":  # after login, a form's URL cannot be fetched again
                raise LoginRequired("/staff/")
            raise LoginRequired(url.path + (f"?{url.query}" if url.query else ""))
        if hospital_id is not None:
            self.staff.ensure_hospital(hospital_id)
            self.hospital_id = hospital_id
        if roles:
            self.staff.require(*roles)
        return self.staff

    def nav(self) -> list[tuple[str, str, bool]]:
        """(href, label, current) of the links this staff member may use here."""
        if self.staff is None:
            return []
        hid = self.hospital_id if self.hospital_id is not None else self.staff.hospital_id
        path = self.request.url.path
        items = []
        for item in [*NAV, *ACCOUNT_NAV]:
            if self.staff.role not in item.roles and not (self.staff.is_operator and item.hospital):
                continue
            if item.hospital and hid is None:
                continue
            href = item.href.format(hospital_id=hid)
            current = any(path == p or path.startswith(p + "/")
                          for p in (href, *(c.format(hospital_id=hid) for c in item.covers)))
            items.append((href, self._(item.label), current))
        return items


async def _resolve(request: Request) -> tuple[StaffPrincipal | None, str, str]:
    token = bearer_or_cookie(request)
    if not token:
        return None, "", ""
    state = request.app.state
    principal = await state.authenticator.resolve_staff(state.db, token, now=state.clock.now())
    if principal is None:
        return None, "", ""
    # the top bar names the staff member's hospital; the operator's, the hospital being viewed
    shown = principal.hospital_id
    if principal.is_operator and str(request.path_params.get("hospital_id", "")).isdigit():
        shown = int(request.path_params["hospital_id"])
    async with state.db.read() as session:
        user = await staff_service.get(session, principal.staff_id)
        try:
            hospital = (await catalog_service.get_hospital_or_raise(session, shown, include_inactive=True)
                        if shown is not None else None)
        except NotFound:  # an operator on an unknown hospital id: the page itself answers 404
            hospital = None
    return principal, user.display_name if user else "", hospital.name if hospital else ""


async def current_staff_page(request: Request) -> StaffPage:
    base = page_for(request)
    staff, name, hospital = await _resolve(request)
    return StaffPage(request=base.request, locale=base.locale, elder=False, csrf_nonce=base.csrf_nonce,
                     new_nonce=base.new_nonce, staff=staff, staff_name=name, hospital_name=hospital)


StaffPageDep = Annotated[StaffPage, Depends(current_staff_page)]


async def form_of(page: StaffPage) -> dict[str, str]:
    """The posted form after the CSRF check (the patient pages' check, unchanged)."""
    return await pages.form_of(page)


def parse(model: type[BaseModel], values: dict[str, Any]) -> Any:
    """A form's values through the API's own request schema, so a page accepts exactly what
    the JSON route accepts; a refusal names the first field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRequest(field=".".join(str(p) for p in first.get("loc", ())) or "form") from exc


def render(page: StaffPage, template: str, *, status: int = 200, **values: Any):
    return pages.render(page, template, status=status, nav=page.nav(), role_labels=ROLE_LABELS, **values)


def redirect(page: StaffPage, url: str):
    return pages.redirect(page, url)


def local_today(now: dt.datetime, zone) -> dt.date:
    return now.astimezone(zone).date()
