"""I8 and the roles on the back-office pages, generated from the route table (as
tests/test_access.py does for the API).

Every route under /staff/ must be described in PAGES (tests/staff_page_table.py): which
hospital roles may use it (the platform operator may use every one) and, for a form, a valid
form. From that, in one world with hospitals X and Y:

- every hospital role of Y gets 403 or 404 for X's pages and objects, also when Y's own
  hospital id is in the URL with X's object ids;
- a role of X not in the page's set gets 403;
- without a session a page sends the browser to /staff/login;
- positive control: a role of X in the set, and the operator, reach the page (no 403/404,
  no login redirect, no server error).

A new /staff/ route that PAGES does not describe fails `test_every_staff_page_is_described`,
so pages added later (admin, scheduler, operator) are covered as soon as they are described.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import httpx
import pytest
from fastapi.routing import APIRoute

from guahao.outbox.models import OutboxMessage
from tests.booking_builders import make_schedule
from tests.builders import make_department, make_doctor, make_hospital, make_staff
from tests.staff_page_table import ADMIN_PAGES, PAGES, PUBLIC
from tests.staff_web_support import ROLES, TODAY, front_desk_world, page_client
from tests.web_support import csrf_of

pytestmark = pytest.mark.timeout(300)


def staff_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route under /staff/ in the app, however it was included."""
    try:
        from fastapi.routing import iter_route_contexts
        entries = [(c.path, c.original_route) for c in iter_route_contexts(app.routes)]
    except ImportError:  # pragma: no cover - older FastAPI
        entries = [(r.path, r) for r in app.routes]
    return sorted({(m, path) for path, route in entries if isinstance(route, APIRoute) and path.startswith("/staff")
                   for m in route.methods if m != "HEAD"})


def url_of(path: str, ids: dict) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        assert name in ids, f"{path}: build an object for {{{name}}} in the world and map its id"
        return str(ids[name])
    return re.sub(r"{(\w+)}", value, path)


@dataclass
class Browser:
    client: httpx.AsyncClient
    token: str

    async def send(self, method: str, url: str, form: dict | None):
        if method == "GET":
            return await self.client.get(url)
        return await self.client.post(url, data={"csrf_token": self.token, **(form or {})})


async def browser(app, session_token: str | None) -> Browser:
    client = page_client(app)
    login_page = await client.get("/staff/login")  # before the session: a page with a token
    if session_token:
        client.cookies.set("guahao_session", session_token)
    return Browser(client, csrf_of(login_page.text))


async def admin_objects(db, now, front_desk: dict | None = None) -> dict:
    """What the admin, scheduler and operator pages name in their URLs, for one hospital (a
    new one unless `front_desk` is a front_desk_world): a department, its doctor, a draft
    clinic two days ahead (so 停诊 there leaves today's window clinic alone) and a dead job."""
    if front_desk is None:
        hid = await make_hospital(db, now, name="乙医院")
        dep = await make_department(db, hid, name="外科")
        doc = await make_doctor(db, hid, dep, name="李雷")
    else:
        hid, dep, doc = front_desk["hospital_id"], front_desk["department_id"], front_desk["doctor_id"]
    schedule, _slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                           day=TODAY + dt.timedelta(days=2), capacity=4, status="draft")
    async with db.begin() as s:
        dead = OutboxMessage(hospital_id=hid, topic="test.nobody_listens", dedupe_key=f"access-dead:{hid}",
                             payload={}, state="dead", attempts=5, available_at=now, created_at=now,
                             last_error="no handler")
        s.add(dead)
        await s.flush()
        message_id = dead.id
    return {"hospital_id": hid, "department_id": dep, "doctor_id": doc, "schedule_id": schedule,
            "message_id": message_id}


@pytest.fixture
async def world(app, db, clock):
    now = clock.now()
    x = await front_desk_world(db, clock, name="甲医院")
    x_objects, y_objects = await admin_objects(db, now, x), await admin_objects(db, now)
    y = y_objects["hospital_id"]
    tokens = {(h, role): (await make_staff(db, now, role=role, hospital_id=hid))[1]
              for h, hid in (("X", x["hospital_id"]), ("Y", y)) for role in ROLES}
    tokens[("platform", "platform_operator")] = (await make_staff(db, now, role="platform_operator",
                                                                  hospital_id=None))[1]
    browsers = {key: await browser(app, token) for key, token in tokens.items()}
    browsers[("nobody", None)] = await browser(app, None)
    ids = {"hospital_id": x["hospital_id"], "booking_id": x["bookings"][0], "restriction_id": x["restriction_id"],
           **x_objects}
    yield {"ids": ids, "y": y, "code": x["codes"][0], "schedule_id": x["schedule_id"], "browsers": browsers}
    for b in browsers.values():
        await b.client.aclose()


def _is_login_redirect(r) -> bool:
    return r.status_code == 303 and r.headers.get("location", "").startswith("/staff/login")


def test_every_staff_page_is_described(app):
    routes = set(staff_routes(app))
    undescribed = sorted(routes - set(PAGES))
    assert undescribed == [], f"describe these /staff/ routes in PAGES (roles and a valid form): {undescribed}"
    assert sorted(set(PAGES) - routes) == [], "stale PAGES entries"
    assert len(routes) >= 20


async def test_staff_of_another_hospital_get_403_or_404(app, world):
    failures = []
    for (method, path), spec in PAGES.items():
        if spec.roles is PUBLIC or "{hospital_id}" not in path:
            continue
        form = spec.form(world) if spec.form else None
        urls = [url_of(path, world["ids"])]
        if len(re.findall(r"{\w+}", path)) > 1:  # Y's own hospital in the URL, X's object in it
            urls.append(url_of(path, {**world["ids"], "hospital_id": world["y"]}))
        for url in urls:
            for role in ROLES:
                r = await world["browsers"][("Y", role)].send(method, url, form)
                if r.status_code not in (403, 404):
                    failures.append(f"{method} {url}: {role} of hospital Y got {r.status_code}")
    assert failures == [], "\n".join(failures)


async def test_a_role_without_the_permission_gets_403(app, world):
    failures = []
    for (method, path), spec in PAGES.items():
        if spec.roles is PUBLIC:
            continue
        url = url_of(path, world["ids"])
        for role in sorted(set(ROLES) - spec.roles):
            r = await world["browsers"][("X", role)].send(method, url, spec.form(world) if spec.form else None)
            if r.status_code != 403:
                failures.append(f"{method} {url}: {role} of hospital X got {r.status_code}, not 403")
    assert failures == [], "\n".join(failures)


async def test_without_a_session_every_page_sends_to_the_login(app, world):
    failures = []
    for (method, path), spec in PAGES.items():
        if spec.roles is PUBLIC:
            continue
        url = url_of(path, world["ids"])
        r = await world["browsers"][("nobody", None)].send(method, url, spec.form(world) if spec.form else None)
        if not _is_login_redirect(r):
            failures.append(f"{method} {url}: {r.status_code} without a session")
    assert failures == [], "\n".join(failures)


async def test_the_allowed_roles_and_the_operator_reach_every_page(app, world):
    """The positive control: the same URLs and forms get through for the roles in the table
    (a refusal of the action itself, such as 409 or 422, is fine). GETs first, so that state
    changes do not hide objects."""
    failures = []
    ordered = sorted(PAGES.items(), key=lambda item: (item[0][0] != "GET", item[0][1]))
    for (method, path), spec in ordered:
        if spec.roles is PUBLIC:
            continue
        url = url_of(path, world["ids"])
        who = [("X", role) for role in sorted(spec.roles)] + [("platform", "platform_operator")]
        for key in who:
            r = await world["browsers"][key].send(method, url, spec.form(world) if spec.form else None)
            if r.status_code in (403, 404) or r.status_code >= 500 or _is_login_redirect(r):
                failures.append(f"{method} {url}: {key} got {r.status_code}: {r.text[:200]}")
            elif (method, path) in ADMIN_PAGES and r.status_code in (400, 422):
                # these rows' forms are meant to be valid: a 422 means the form's shape is wrong
                # and the handler never ran (older rows above post refused forms on purpose)
                failures.append(f"{method} {url}: {key} got {r.status_code}: the form is not valid")
    assert failures == [], "\n".join(failures)


async def test_the_audit_log_of_an_admin_is_their_own_hospitals(app, world):
    """/staff/audit names no hospital in its path, so the generated checks above cannot ask
    for another hospital there: an admin of Y asking for X's entries gets 404."""
    x = world["ids"]["hospital_id"]
    r = await world["browsers"][("Y", "hospital_admin")].client.get("/staff/audit", params={"hospital_id": str(x)})
    assert r.status_code == 404
    own = await world["browsers"][("X", "hospital_admin")].client.get("/staff/audit", params={"hospital_id": str(x)})
    assert own.status_code == 200
