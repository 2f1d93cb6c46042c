"""Shared steps of the back-office page tests: staff users with real (argon2) passwords,
logging in through the /staff/login form, and a browser-like client."""
from __future__ import annotations

import itertools
import re

import httpx

from guahao.staff import service as staff_service
from tests.web_support import csrf_of

PASSWORD = "staff-password-2026"
_seq = itertools.count(1)


async def make_staff_user(db, now, *, role: str, hospital_id: int | None, name: str = "窗口小王") -> str:
    """A staff user who logs in with PASSWORD; returns the username."""
    username = f"web{role.replace('_', '')}{next(_seq)}"
    async with db.begin() as s:
        await staff_service.do_create_staff(s, username=username, password=PASSWORD, role=role,
                                            hospital_id=hospital_id, display_name=name, now=now)
    return username


def page_client(app, locale: str = "zh-CN") -> httpx.AsyncClient:
    """A cookie-keeping client that asks for HTML, like a browser (but runs no script)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver",
                             headers={"Accept": "text/html", "Accept-Language": locale})


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD, otp: str | None = None):
    form = await client.get("/staff/login")
    data = {"csrf_token": csrf_of(form.text), "username": username, "password": password, "next": "/staff/"}
    if otp is not None:
        data["otp"] = otp
    return await client.post("/staff/login", data=data)


async def token_of(client: httpx.AsyncClient, path: str = "/staff/password") -> str:
    """The CSRF token of this browser, read from any staff page with a form."""
    return csrf_of((await client.get(path)).text)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
