"""HTTP routes of the staff feature."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["staff"])
