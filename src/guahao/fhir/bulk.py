"""SMART Scheduling Links bulk publication: `$bulk-publish` and its NDJSON files.

Public, no keys (the SMART spec asks for that), and nothing personal: hospitals, released
schedules and their platform bands with the remaining seats (`slot-capacity`) and a deep link
to the band's booking page. Clients poll every 1-5 minutes, so every answer is cacheable:
`Cache-Control: public, max-age=60`, an ETag over the bytes, 304 for a matching
If-None-Match. The manifest's `transactionTime` is the minute, so it is stable for that
minute too. One slot file per visit date keeps files small and lets clients fetch only the
days that changed.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request, Response

from guahao.catalog import service as catalog_service
from guahao.core.errors import NotFound
from guahao.fhir import mapping
from guahao.fhir.outcome import FhirRoute
from guahao.fhir.resources import PLATFORM_ZONE, base_of, released, slots_of
from guahao.scheduling.domain import local_today

router = APIRouter(route_class=FhirRoute)
NDJSON = "application/fhir+ndjson"
MAX_AGE = 60
DAYS = 15  # today and the next 14 days: past any hospital's usual release window


def _cached(request: Request, content: bytes, media_type: str) -> Response:
    etag = f'"{hashlib.sha256(content).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={MAX_AGE}", "Vary": "Accept-Encoding"}
    wanted = [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]
    if etag in wanted or "*" in wanted:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=media_type, headers=headers)


def _ndjson(resources: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in resources).encode()


def _days(now: dt.datetime) -> list[dt.date]:
    today = local_today(now, PLATFORM_ZONE)
    return [today + dt.timedelta(days=i) for i in range(DAYS)]


@router.get("/$bulk-publish")
async def manifest(request: Request):
    """The SMART Scheduling Links manifest: Location, Schedule and one Slot file per date."""
    now = request.app.state.clock.now()
    minute = now.astimezone(PLATFORM_ZONE).replace(second=0, microsecond=0)
    base = base_of(request)
    output = [{"type": "Location", "url": f"{base}/bulk/locations.ndjson"},
              {"type": "Schedule", "url": f"{base}/bulk/schedules.ndjson"}]
    output += [{"type": "Slot", "url": f"{base}/bulk/slots-{day.isoformat()}.ndjson"} for day in _days(now)]
    body = {"transactionTime": mapping.instant(minute), "request": f"{base}/$bulk-publish", "output": output,
            "error": []}
    return _cached(request, json.dumps(body, separators=(",", ":")).encode(), "application/json")


async def _hospitals(session) -> list:
    rows, _total = await catalog_service.list_hospitals(session, limit=100_000)
    return [h for h, _ in rows]


@router.get("/bulk/{name}.ndjson")
async def bulk_file(name: str, request: Request):
    """`locations`, `schedules` or `slots-<date>`: one minified resource per line."""
    now = request.app.state.clock.now()
    days = _days(now)
    if name == "locations":
        async with request.app.state.db.read() as session:
            resources = [mapping.location(h) for h in await _hospitals(session)]
    elif name == "schedules":
        found = await released(request, now, first=days[0], last=days[-1])
        resources = [mapping.schedule(s) for s in found]
    elif name.startswith("slots-"):
        try:
            day = dt.date.fromisoformat(name.removeprefix("slots-"))
        except ValueError:
            raise NotFound("resource") from None
        if day not in days:
            raise NotFound("resource")
        found = await released(request, now, first=day, last=day)
        async with request.app.state.db.read() as session:
            phones = {h.id: h.phone for h in await _hospitals(session)}
        resources = slots_of(found, request.app.state.settings.base_url, phones)
    else:
        raise NotFound("resource")
    return _cached(request, _ndjson(resources), NDJSON)
