"""HTTP routes of the scheduling feature."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["scheduling"])
