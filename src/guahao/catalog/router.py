"""HTTP routes of the catalog feature."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["catalog"])
