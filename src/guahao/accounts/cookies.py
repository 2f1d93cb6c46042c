"""The session cookie for pages (the API also takes the same token as a bearer header)."""
from __future__ import annotations

import datetime as dt

from fastapi import Response

from guahao.config import Settings
from guahao.core.deps import SESSION_COOKIE


def set_session_cookie(response: Response, token: str, *, settings: Settings, ttl: dt.timedelta) -> None:
    # HttpOnly: scripts never see the token; Lax: not sent on cross-site POSTs (CSRF)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(ttl.total_seconds()), path="/", httponly=True,
                        samesite="lax", secure=settings.env == "production")


def clear_session_cookie(response: Response, *, settings: Settings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=settings.env == "production")
