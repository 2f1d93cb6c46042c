"""I8 isolation, generated from the route table.

Every API route that names an object by id (a `*_id` in its path, query or body) is
classified by how it authenticates: `account` routes (they depend on `current_account`),
`staff` routes (`current_staff`), or an explicit allow-list of public routes. Then, in one
world with hospitals X and Y and accounts A and B:

- account B gets 404 for every account route aimed at account A's objects;
- every hospital role of hospital Y gets 403 or 404 for every staff route aimed at X's;
- without a session, both kinds answer 401;
- positive controls: A and the staff of X reach the same objects (so the ids are right), and
  the public routes answer anyone.

A new route with an id that fits none of the classes fails `test_every_route_with_an_object_id_
is_classified`; a new id name or a route whose body the tables below do not supply fails with
a message saying what to add. A 422 validation answer proves nothing about isolation (the
handler never ran), so it is a failure, never a pass.
"""
from __future__ import annotations

import datetime as dt
import re
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import select

from guahao.booking import actions as booking_actions
from guahao.booking.models import Restriction
from guahao.catalog import notices as hospital_notices
from guahao.catalog import rules as hospital_rules
from guahao.catalog.schemas import HospitalRulesUpdate
from guahao.core import deps
from guahao.draw.models import Draw
from guahao.his import connections as his_connections
from guahao.his.schemas import HisConnectionUpdate
from guahao.outbox.models import OutboxMessage
from guahao.patients.models import Patient
from guahao.payments.models import Payment
from guahao.scheduling import templates
from guahao.scheduling.schemas import TemplateCreate
from guahao.waitlist import actions as waitlist_actions
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital, make_staff

TODAY = dt.date(2026, 11, 19)  # the conftest clock
DAY = TODAY + dt.timedelta(days=2)
HOSPITAL_ROLES = ("hospital_admin", "scheduler", "front_desk")

# Routes anyone may call: the public catalog and availability. A public route sees no
# personal data; adding one here is a deliberate decision, reviewed like any other.
PUBLIC = {
    ("GET", "/api/v1/search"),
    ("GET", "/api/v1/hospitals/{hospital_id}"),
    ("GET", "/api/v1/hospitals/{hospital_id}/departments"),
    ("GET", "/api/v1/departments/{department_id}"),
    ("GET", "/api/v1/departments/{department_id}/doctors"),
    ("GET", "/api/v1/departments/{department_id}/availability"),
    ("GET", "/api/v1/doctors/{doctor_id}"),
    ("GET", "/api/v1/doctors/{doctor_id}/availability"),
    ("GET", "/api/v1/hospitals/{hospital_id}/notices"),  # what the hospital publishes to everyone
    ("GET", "/api/v1/schedules/{schedule_id}/draw"),  # a draw's timeline and commitment (issue 13)
    ("GET", "/api/v1/schedules/{schedule_id}/draw/audit"),  # its audit record: receipts, no personal data
}
# `*_id` parameters that are not references to an object (cursors and the like)
NOT_OBJECT_IDS = {"before_id"}
# id parameters named after their role rather than their kind
ID_ALIASES = {"parent_id": "department_id"}
# Path parameters that are not ids, with every value to try
PATH_VALUES: dict[str, tuple[str, ...]] = {"action": ("check-in", "complete"), "provider": ("paysim",)}
# Query parameters a route needs besides the ids (filled from the world automatically)
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/v1/search"): {"q": "内科"},
    ("GET", "/api/v1/staff/hospitals/{hospital_id}/schedules"): {"from": TODAY.isoformat(),
                                                                  "to": (TODAY + dt.timedelta(days=6)).isoformat()},
    ("GET", "/api/v1/staff/hospitals/{hospital_id}/roster"): {"date": DAY.isoformat()},
}


@dataclass(frozen=True)
class Multipart:
    """A body sent as multipart/form-data (file uploads) instead of JSON."""
    files: dict


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32  # the magic bytes are what the upload check reads


def _rules_body(_ids: dict) -> dict:
    return HospitalRulesUpdate(**hospital_rules.default_values()).model_dump(mode="json")


# A valid body per route (a function of the world's ids): the request must reach the handler.
BODIES: dict[tuple[str, str], Callable[[dict], Any]] = {
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/waitlist-rules"): lambda w: {"offer_minutes": 20},
    ("POST", "/api/v1/waitlist"): lambda w: {"schedule_id": w["schedule_id"], "patient_id": w["patient_id"]},
    ("PUT", "/api/v1/staff/maintenance"): lambda w: {"active": False},
    ("PATCH", "/api/v1/staff/hospitals/{hospital_id}"): lambda w: {"phone": "010-87654321"},
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/his-connection"):
        lambda w: {"base_url": "http://127.0.0.1:9", "platform": "guahao", "pool": "guahao", "key": "ab" * 32},
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/departments"): lambda w: {"name": "新设科室"},
    ("PATCH", "/api/v1/staff/departments/{department_id}"): lambda w: {"location": "门诊楼9层"},
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/doctors"):
        lambda w: {"department_id": w["department_id"], "name": "新来医生", "title": "attending"},
    ("PATCH", "/api/v1/staff/doctors/{doctor_id}"): lambda w: {"specialty": "高血压"},
    ("PUT", "/api/v1/staff/doctors/{doctor_id}/photo"): lambda w: Multipart({"photo": ("d.png", PNG, "image/png")}),
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/fees"):
        lambda w: [{"registration_level": level, "title": title, "registration_fee": 500, "consultation_fee": fee}
                   for level, title, fee in (("general", "none", 0), ("expert", "chief", 5000))],
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/schedule-templates"):
        lambda w: {"doctor_id": w["doctor_id"], "weekday": 6, "period": "evening", "platform_capacity": 5},
    ("PATCH", "/api/v1/staff/schedule-templates/{template_id}"): lambda w: {"platform_capacity": 6},
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/schedules/generate"):
        lambda w: {"from_date": TODAY.isoformat(), "to_date": (TODAY + dt.timedelta(days=6)).isoformat()},
    ("PATCH", "/api/v1/staff/schedules/{schedule_id}"): lambda w: {"platform_capacity": 4},
    ("POST", "/api/v1/staff/schedules/{schedule_id}/suspend"): lambda w: {"reason": "医生外出会诊"},
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/check-in"): lambda w: {"booking_code": w["booking_code"]},
    ("POST", "/api/v1/staff/restrictions/{restriction_id}/lift"): lambda w: {"reason": "核实后解除"},
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/rules"): _rules_body,
    ("POST", "/api/v1/schedules/{schedule_id}/draw/entries"): lambda w: {"patient_id": w["patient_id"]},
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/release-modes/departments/{department_id}"):
        lambda w: {"mode": "inherit"},
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/release-modes/schedules/{schedule_id}"):
        lambda w: {"mode": "inherit"},
    ("POST", "/api/v1/staff/users"):
        lambda w: {"username": f"u{uuid.uuid4().hex[:10]}", "password": "long-enough-password",
                   "role": "scheduler", "hospital_id": w["hospital_id"]},
    ("PATCH", "/api/v1/me/patients/{patient_id}"): lambda w: {"relationship": "relative"},
    ("POST", "/api/v1/me/patients/{patient_id}/verify"): lambda w: {"liveness_token": "pass"},
    ("POST", "/api/v1/bookings/{booking_id}/cancel"): lambda w: {"reason": "行程有变"},
    ("POST", "/api/v1/bookings"): lambda w: {"slot_id": w["slot_id"], "patient_id": w["patient_id"]},
    ("POST", "/api/v1/staff/payments/{payment_id}/refund"): lambda w: {"reason": "核实后退款"},
    ("POST", "/api/v1/staff/payments/{payment_id}/close"): lambda w: {"reason": "核实未支付"},
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/clinic-hours"):
        lambda w: {"morning": {"opens": "08:00", "closes": "11:30"}, "afternoon": {"opens": "13:00", "closes": "17:00"},
                   "evening": {"opens": "18:00", "closes": "20:30"}},
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/window/search"): lambda w: {"code": w["booking_code"]},
    ("POST", "/api/v1/staff/bookings/{booking_id}/window-check-in"): lambda w: {"id_number": "110101199003070011"},
    ("POST", "/api/v1/staff/bookings/{booking_id}/void"): lambda w: {"reason": "窗口退号"},
    ("POST", "/api/v1/staff/schedules/{schedule_id}/walk-ins"):
        lambda w: {"name": "现场患者", "id_number": "110101199003070011", "phone": "13800138000"},
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/leave/preview"):
        lambda w: {"doctor_id": w["doctor_id"], "from_date": TODAY.isoformat(),
                   "to_date": (TODAY + dt.timedelta(days=6)).isoformat()},
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/leave"):
        lambda w: {"doctor_id": w["doctor_id"], "from_date": TODAY.isoformat(),
                   "to_date": (TODAY + dt.timedelta(days=6)).isoformat(), "reason": "医生休假"},
    ("PUT", "/api/v1/me/patients/{patient_id}/visit-cards/{hospital_id}"): lambda w: {"card_number": "JZK0012345"},
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/notices"): lambda w: {"title": "停车场改造", "body": "请走南门。"},
    ("PATCH", "/api/v1/staff/notices/{notice_id}"): lambda w: {"pinned": True},
}


# --- the route table ------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    kind: str | None  # "account" | "staff" | "public" | None (unclassified)
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    id_params: frozenset[str]  # object ids named in the path, query or body
    has_body: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _route_entries(app) -> list[tuple[str, APIRoute]]:
    """(full path, route) of every API route (the patient pages, which call these same route
    functions, have their own isolation test in test_web_pages.py). FastAPI >= 0.16x keeps included routers as
    wrappers in app.routes; iter_route_contexts flattens them (older versions list them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI
        return [(r.path, r) for r in app.routes if isinstance(r, APIRoute) and r.path.startswith("/api/")]
    return [(c.path, c.original_route) for c in iter_route_contexts(app.routes)
            if isinstance(c.original_route, APIRoute) and c.path.startswith("/api/")]


def _dependants(dependant):
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []  # lists of rows and scalars name no single object


def _is_object_id(name: str) -> bool:
    return name.endswith("_id") and name not in NOT_OBJECT_IDS


def endpoints(app) -> list[Endpoint]:
    found = []
    for path, route in _route_entries(app):
        nodes = list(_dependants(route.dependant))
        calls = {node.call for node in nodes}
        account_deps = {deps.current_account, deps.current_account_with_key}
        kind = ("account" if account_deps & set(calls) else "staff" if deps.current_staff in calls else None)
        path_params = tuple(re.findall(r"{(\w+)(?::\w+)?}", path))
        query = tuple(p.alias for node in nodes for p in node.query_params)
        body_names: list[str] = []
        for node in nodes:
            for param in node.body_params:
                body_names.append(param.alias)
                for model in _models(param.field_info.annotation):
                    body_names += list(model.model_fields)
        ids = frozenset(n for n in (*path_params, *query, *body_names) if _is_object_id(n))
        for method in sorted(route.methods):
            public = (method, path) in PUBLIC
            assert not (public and kind), f"{method} {path} is in PUBLIC but requires a session"
            found.append(Endpoint(method, path, "public" if public else kind, path_params, query, ids,
                                  bool(body_names)))
    return found


def id_endpoints(app, kind: str | None = "any") -> list[Endpoint]:
    return [e for e in endpoints(app) if e.id_params and (kind == "any" or e.kind == kind)]


# --- the world ------------------------------------------------------------------------------

@pytest.fixture
async def world(client, db, clock):
    """Hospital X with every kind of object, account A's patient and booking at X; hospital
    Y and account B as the outsiders; sessions for every hospital role of X and Y."""
    now = clock.now()
    x = await make_hospital(db, now, name="甲医院")
    y = await make_hospital(db, now, name="乙医院", lat=31.2, lon=121.4, city="上海市", district="徐汇区")
    async with db.begin() as s:  # X has a HIS connection, so its staff can read it
        await his_connections.do_set_connection(s, x, HisConnectionUpdate(
            base_url="http://127.0.0.1:9", platform="guahao", pool="guahao", key="ab" * 32), now=now)
    top = await make_department(db, x, name="内科")
    department = await make_department(db, x, name="心内科", parent_id=top)
    doctor = await make_doctor(db, x, department)
    async with db.begin() as s:
        template = (await templates.do_create_template(s, x, TemplateCreate(
            doctor_id=doctor, weekday=0, period="morning", platform_capacity=5), now=now)).id
    schedule, slots = await make_schedule(db, now, hospital_id=x, department_id=department, doctor_id=doctor,
                                          day=DAY, capacity=5)
    staff = {(h, role): (await make_staff(db, now, role=role, hospital_id=hid))[1]
             for h, hid in (("X", x), ("Y", y)) for role in HOSPITAL_ROLES}

    account_a, token_a = await make_account(db, now)
    _, token_b = await make_account(db, now)
    patient = await make_patient(db, now, account_a, name="钱多多")
    r = await client.post("/api/v1/bookings", json={"slot_id": slots[0], "patient_id": patient},
                          headers={**auth(token_a), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    booking = r.json()
    # a 候补 entry of A's patient on a sold-out session of X
    full, full_slots = await make_schedule(db, now, hospital_id=x, department_id=department, doctor_id=doctor,
                                           day=DAY + dt.timedelta(days=1), capacity=1)
    other_account, _ = await make_account(db, now)
    other_patient = await make_patient(db, now, other_account, name="孙七")
    async with db.begin() as s:
        await booking_actions.do_hold(s, account_id=other_account, patient_id=other_patient, slot_id=full_slots[0],
                                      now=now)
        entry_id = (await waitlist_actions.do_join(s, account_id=account_a, patient_id=patient, schedule_id=full,
                                                   now=now)).id
    async with db.begin() as s:  # after the booking: a restriction would have refused it
        person_id = await s.scalar(select(Patient.person_id).where(Patient.id == patient))
        restriction = Restriction(person_id=person_id, hospital_id=x, starts_at=now, until=now + dt.timedelta(days=30),
                                  reason="3 no-shows", strikes=3)
        s.add(restriction)
        await s.flush()
        restriction_id = restriction.id
        dead = OutboxMessage(hospital_id=x, topic="test.dead", dedupe_key="test.dead:1", payload={}, state="dead",
                             attempts=8, available_at=now, created_at=now)
        s.add(dead)
        await s.flush()
        message_id = dead.id
        flagged = Payment(hospital_id=x, booking_id=booking["id"], account_id=account_a, provider="paysim",
                          out_trade_no=f"GH{uuid.uuid4().hex[:16]}", amount=booking["amount_due"], state="created",
                          flagged_reason="amount_mismatch", created_at=now, updated_at=now)
        s.add(flagged)
        await s.flush()
        payment_id = flagged.id
    async with db.begin() as s:  # the schedule's draw (issue 13), held: its public routes answer 200
        s.add(Draw(hospital_id=x, schedule_id=schedule, status="allocated", opens_at=now - dt.timedelta(hours=1),
                   release_at=now - dt.timedelta(hours=1), closes_at=now - dt.timedelta(minutes=59),
                   result_at=now - dt.timedelta(minutes=59), commitment="c" * 64, secret="a" * 64, root="b" * 64,
                   seed="d" * 64, seats=5, created_at=now))
    staff[("platform", "platform_operator")] = (await make_staff(db, now, role="platform_operator",
                                                                 hospital_id=None))[1]
    target_staff_id, _ = await make_staff(db, now, role="front_desk", hospital_id=x)  # a staff user as an object
    async with db.begin() as s:
        notice_id = (await hospital_notices.do_publish(s, hospital_id=x, title="门诊时间调整", body="周六下午停诊。",
                                                       valid_from=now, valid_until=None, pinned=False, staff_id=None,
                                                       now=now)).id
    ids = {"hospital_id": x, "department_id": department, "doctor_id": doctor, "template_id": template,
           "schedule_id": schedule, "slot_id": slots[0], "patient_id": patient, "booking_id": booking["id"],
           "restriction_id": restriction_id, "message_id": message_id, "payment_id": payment_id,
           "staff_id": target_staff_id, "notice_id": notice_id, "entry_id": entry_id}
    return {"ids": ids, "booking_code": booking["booking_code"], "token_a": token_a, "token_b": token_b,
            "staff": staff}


@dataclass(frozen=True)
class Call:
    endpoint: Endpoint
    url: str
    params: dict
    body: Any

    def __str__(self) -> str:
        return f"{self.endpoint.method} {self.url}"


def calls_for(endpoint: Endpoint, world: dict) -> list[Call]:
    ids = {**world["ids"], **{alias: world["ids"][kind] for alias, kind in ID_ALIASES.items()}}
    values = {**ids, "booking_code": world["booking_code"]}
    urls = [endpoint.path]
    for name in endpoint.path_params:
        choices = [str(ids[name])] if name in ids else list(PATH_VALUES.get(name, ()))
        urls = [u.replace(f"{{{name}}}", c) for u in urls for c in choices]
    params = {n: ids[n] for n in endpoint.query_params if n in ids}
    params.update(QUERIES.get(endpoint.key, {}))
    make_body = BODIES.get(endpoint.key)
    body = make_body(values) if make_body else None
    return [Call(endpoint, url, params, body) for url in urls]


async def send(client, call: Call, token: str | None):
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    if token:
        headers.update(auth(token))
    kwargs = {"params": call.params, "headers": headers}
    if isinstance(call.body, Multipart):
        kwargs["files"] = call.body.files
    elif call.body is not None:
        kwargs["json"] = call.body
    return await client.request(call.endpoint.method, call.url, **kwargs)


def is_validation_error(response) -> bool:
    """The request never reached the handler: FastAPI refused its shape."""
    return response.status_code == 422 and "errors" in response.json()


def needs_table_entry(call: Call, response) -> str:
    return (f"{call}: 422 {response.json().get('errors')} - the request never reached the handler, so it proves "
            f"nothing about isolation; add a valid body to BODIES or query to QUERIES for {call.endpoint.key}")


# --- the tests ------------------------------------------------------------------------------

def test_every_route_with_an_object_id_is_classified(app):
    unclassified = [str(e) for e in id_endpoints(app) if e.kind is None]
    assert unclassified == [], (
        "routes that name an object id but neither require an account or staff session nor are "
        f"allow-listed in PUBLIC: {unclassified}")
    known = {"hospital_id", "department_id", "doctor_id", "template_id", "schedule_id", "slot_id", "patient_id",
             "booking_id", "restriction_id", "message_id", "payment_id", "staff_id", "notice_id", "entry_id",
             *ID_ALIASES}
    unknown = sorted({f"{n} ({e})" for e in id_endpoints(app) for n in e.id_params if n not in known})
    assert unknown == [], f"new id parameters: build the object in the `world` fixture and map its id: {unknown}"
    other = sorted({f"{n} ({e})" for e in endpoints(app) for n in e.path_params
                    if not _is_object_id(n) and n not in PATH_VALUES})
    assert other == [], f"path parameters without values to try: add them to PATH_VALUES: {other}"
    routes = {e.key for e in endpoints(app)}
    assert routes >= PUBLIC, f"stale PUBLIC entries: {sorted(PUBLIC - routes)}"
    assert {e.kind for e in id_endpoints(app)} == {"account", "staff", "public"}


async def test_another_account_gets_404_for_account_objects(app, client, world):
    failures = []
    for endpoint in id_endpoints(app, "account"):
        for call in calls_for(endpoint, world):
            r = await send(client, call, world["token_b"])
            if is_validation_error(r):
                failures.append(needs_table_entry(call, r))
            elif r.status_code != 404:
                failures.append(f"{call}: account B got {r.status_code} for account A's object: {r.text[:200]}")
    assert failures == [], "\n".join(failures)


async def test_staff_of_another_hospital_get_403_or_404(app, client, world):
    failures = []
    for endpoint in id_endpoints(app, "staff"):
        for call in calls_for(endpoint, world):
            for role in HOSPITAL_ROLES:
                r = await send(client, call, world["staff"][("Y", role)])
                if is_validation_error(r):
                    failures.append(needs_table_entry(call, r))
                elif r.status_code not in (403, 404):
                    failures.append(f"{call}: {role} of hospital Y got {r.status_code} for hospital X's object: "
                                    f"{r.text[:200]}")
    assert failures == [], "\n".join(failures)


async def test_without_a_session_every_private_id_route_answers_401(app, client, world):
    failures = []
    for endpoint in id_endpoints(app):
        if endpoint.kind == "public":
            continue
        for call in calls_for(endpoint, world):
            r = await send(client, call, None)
            if r.status_code != 401 and not is_validation_error(r):
                failures.append(f"{call}: {r.status_code} without a session")
    assert failures == [], "\n".join(failures)


async def test_owners_reach_their_objects(app, client, world):
    """The positive control: with the same ids, account A and the staff of X get through.
    Reads must succeed; writes must reach the handler and find the object (a refusal such as
    409 for a state change is fine). Deletions run last so they do not hide other objects."""
    failures = []
    # deletions of sub-objects (a patient's visit card) before their parent's (the patient)
    ordered = sorted(id_endpoints(app),
                     key=lambda e: (e.method != "GET", e.method == "DELETE",
                                    -e.path.count("/") if e.method == "DELETE" else 0, e.path))
    for endpoint in ordered:
        for call in calls_for(endpoint, world):
            if endpoint.kind == "public":
                tokens = [None]
            elif endpoint.kind == "account":
                tokens = [world["token_a"]]
            else:
                # the operator last: platform-wide routes (dead letters) admit only the operator
                tokens = [world["staff"][("X", role)] for role in HOSPITAL_ROLES]
                tokens.append(world["staff"][("platform", "platform_operator")])
            for token in tokens:  # staff: the first role the route admits
                r = await send(client, call, token)
                if r.status_code != 403:
                    break
            if is_validation_error(r):
                failures.append(needs_table_entry(call, r))
            elif endpoint.method == "GET" and not 200 <= r.status_code < 300 or r.status_code in (401, 403, 404) or r.status_code >= 500:
                failures.append(f"{call}: the owner got {r.status_code}: {r.text[:200]}")
    assert failures == [], "\n".join(failures)


async def test_lists_show_an_account_only_its_own_patients_and_bookings(client, world):
    for path in ("/api/v1/me/patients", "/api/v1/bookings"):
        a = await client.get(path, headers=auth(world["token_a"]))
        b = await client.get(path, headers=auth(world["token_b"]))
        assert a.status_code == b.status_code == 200
        a_ids = {item["id"] for item in a.json()["items"]}
        assert a_ids and not a_ids & {item["id"] for item in b.json()["items"]}, path


# --- roles: a hospital role without the permission is refused --------------------------------

WINDOW_ROLES = {"front_desk", "hospital_admin"}
SCHEDULER_ROLES = {"scheduler", "hospital_admin"}
ADMIN_ONLY = {"hospital_admin"}
# The back office's routes (issue 10) and the hospital roles each admits; every other hospital
# role of the same hospital must get 403.
ROLE_TABLE: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/v1/staff/maintenance"): set(),  # the platform operator only
    ("PUT", "/api/v1/staff/maintenance"): set(),
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/window/search"): WINDOW_ROLES,
    ("POST", "/api/v1/staff/bookings/{booking_id}/reveal"): WINDOW_ROLES,
    ("POST", "/api/v1/staff/bookings/{booking_id}/window-check-in"): WINDOW_ROLES,
    ("POST", "/api/v1/staff/bookings/{booking_id}/void"): WINDOW_ROLES,
    ("POST", "/api/v1/staff/schedules/{schedule_id}/walk-ins"): WINDOW_ROLES,
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/leave/preview"): SCHEDULER_ROLES,
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/leave"): SCHEDULER_ROLES,
    ("POST", "/api/v1/staff/schedules/{schedule_id}/resume"): SCHEDULER_ROLES,
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/clinic-hours"): ADMIN_ONLY,
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/release-modes/departments/{department_id}"): ADMIN_ONLY,
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/release-modes/schedules/{schedule_id}"): SCHEDULER_ROLES,
    ("GET", "/api/v1/staff/hospitals/{hospital_id}/reports/bookings"): ADMIN_ONLY,
    ("GET", "/api/v1/staff/hospitals/{hospital_id}/reports/summary"): ADMIN_ONLY,
    ("GET", "/api/v1/staff/hospitals/{hospital_id}/reports/money.csv"): ADMIN_ONLY,
    ("GET", "/api/v1/staff/hospitals/{hospital_id}/restrictions"): {"hospital_admin", "front_desk"},
    ("POST", "/api/v1/staff/restrictions/{restriction_id}/lift"): ADMIN_ONLY,
    ("PUT", "/api/v1/staff/hospitals/{hospital_id}/waitlist-rules"): ADMIN_ONLY,
    ("POST", "/api/v1/staff/users/{staff_id}/totp/reset"): ADMIN_ONLY,
    ("GET", "/api/v1/staff/bookings/{booking_id}"): WINDOW_ROLES,
    ("POST", "/api/v1/staff/hospitals/{hospital_id}/notices"): ADMIN_ONLY,
    ("GET", "/api/v1/staff/hospitals/{hospital_id}/notices"): ADMIN_ONLY,
    ("PATCH", "/api/v1/staff/notices/{notice_id}"): ADMIN_ONLY,
    ("DELETE", "/api/v1/staff/notices/{notice_id}"): ADMIN_ONLY,
    ("PUT", "/api/v1/staff/doctors/{doctor_id}/photo"): ADMIN_ONLY,
    ("DELETE", "/api/v1/staff/doctors/{doctor_id}/photo"): ADMIN_ONLY,
}


def test_the_role_table_names_existing_staff_routes(app):
    staff_routes = {e.key for e in endpoints(app) if e.kind == "staff"}
    assert set(ROLE_TABLE) <= staff_routes, sorted(set(ROLE_TABLE) - staff_routes)


async def test_a_hospital_role_without_the_permission_gets_403(app, client, world):
    failures = []
    by_key = {e.key: e for e in endpoints(app)}
    for key, allowed in ROLE_TABLE.items():
        for call in calls_for(by_key[key], world):
            for role in sorted(set(HOSPITAL_ROLES) - allowed):
                r = await send(client, call, world["staff"][("X", role)])
                if is_validation_error(r):
                    failures.append(needs_table_entry(call, r))
                elif r.status_code != 403:
                    failures.append(f"{call}: {role} of hospital X got {r.status_code}, not 403: {r.text[:200]}")
    assert failures == [], "\n".join(failures)
