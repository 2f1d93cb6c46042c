"""HTTP routes of the payments feature."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["payments"])
