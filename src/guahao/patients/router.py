"""HTTP routes of the patients feature."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["patients"])
