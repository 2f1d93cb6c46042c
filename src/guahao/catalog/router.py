"""HTTP routes of the catalog feature: the public catalog and search (no login needed).

The staff's catalog management is `staff_router`, mounted by the app like every feature's.
"""
from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from guahao.catalog import photos, service, views
from guahao.catalog import rules as hospital_rules
from guahao.catalog import search as catalog_search
from guahao.catalog.schemas import (
    DepartmentNode,
    DepartmentRead,
    DoctorDetail,
    DoctorRead,
    HospitalDetail,
    HospitalPage,
    SearchResult,
)
from guahao.core.deps import Db, Locale
from guahao.core.errors import InvalidRequest, NotFound

router = APIRouter(tags=["catalog"])


@router.get("/api/v1/search", response_model=SearchResult)
async def search(db: Db, locale: Locale, q: str = "", city: str | None = Query(None, max_length=50),
                 hospital_id: int | None = None, limit: int = Query(10, ge=1, le=50)) -> SearchResult:
    """Hospitals, departments and doctors by Chinese text, full pinyin or initials."""
    q = q.strip()
    if not q or len(q) > catalog_search.MAX_QUERY_LENGTH:
        raise InvalidRequest(field="q")
    async with db.read() as session:
        found = await catalog_search.search(session, q, locale=locale, city=city, hospital_id=hospital_id,
                                            limit=limit)
    return SearchResult(query=q, **found)


def _point(near: str | None, lat: float | None, lng: float | None) -> tuple[float, float] | None:
    """`near=lat,lng` or `lat` and `lng`; both halves or neither."""
    if near is not None:
        try:
            lat, lng = (float(part) for part in near.split(","))
        except ValueError:
            raise InvalidRequest(field="near") from None
    if lat is None and lng is None:
        return None
    if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise InvalidRequest(field="near")
    return lat, lng


@router.get("/api/v1/hospitals", response_model=HospitalPage)
async def list_hospitals(
    db: Db, locale: Locale,
    city: str | None = Query(None, max_length=50), district: str | None = Query(None, max_length=50),
    level: str | None = Query(None, max_length=20), keyword: str | None = Query(None, max_length=50),
    near: str | None = Query(None, max_length=60, description="lat,lng: order by distance from this point"),
    lat: float | None = None, lng: float | None = None,
    radius_km: float | None = Query(None, gt=0, le=20000, description="only hospitals this close to the point"),
    limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0),
) -> HospitalPage:
    """Active hospitals, filtered by city, district or level, or nearest first around a point."""
    point = _point(near, lat, lng)
    if radius_km is not None and point is None:
        raise InvalidRequest(field="radius_km")
    async with db.read() as session:
        rows, total = await service.list_hospitals(session, city=city, district=district, level=level,
                                                   keyword=keyword, near=point, radius_km=radius_km,
                                                   limit=limit, offset=offset)
    return HospitalPage(items=[views.hospital_read(h, locale, d) for h, d in rows], total=total,
                        limit=limit, offset=offset)


@router.get("/api/v1/hospitals/{hospital_id}", response_model=HospitalDetail)
async def get_hospital(hospital_id: int, db: Db, locale: Locale) -> HospitalDetail:
    """A hospital: level, address, booking rules in plain words, entrance mode and 建档 requirement."""
    async with db.read() as session:
        hospital = await service.get_hospital_or_raise(session, hospital_id)
        rules = await hospital_rules.get_rules(session, hospital_id)  # the defaults when never edited
    return views.hospital_detail(hospital, rules, locale)


@router.get("/api/v1/hospitals/{hospital_id}/departments", response_model=list[DepartmentNode])
async def department_tree(hospital_id: int, db: Db) -> list[DepartmentNode]:
    """The hospital's departments as a tree, with age and sex restrictions and locations."""
    async with db.read() as session:
        await service.get_hospital_or_raise(session, hospital_id)
        departments = await service.list_departments(session, hospital_id)
    return [views.department_node(d, children) for d, children in service.department_tree(departments)]


@router.get("/api/v1/departments/{department_id}", response_model=DepartmentRead)
async def get_department(department_id: int, db: Db, locale: Locale) -> DepartmentRead:
    """One department: its place in the tree, location and restrictions."""
    async with db.read() as session:
        department = await service.get_department_or_raise(session, department_id)
        hospital = await service.get_hospital_or_raise(session, department.hospital_id)
        siblings = await service.list_departments(session, department.hospital_id)
    by_id = {d.id: d for d in siblings}
    children = [d for d in siblings if d.parent_id == department.id]
    return views.department_read(department, hospital, by_id.get(department.parent_id), children, locale)


@router.get("/api/v1/departments/{department_id}/doctors", response_model=list[DoctorRead])
async def department_doctors(department_id: int, db: Db, locale: Locale) -> list[DoctorRead]:
    """The doctors of a department with title, specialty and registration level."""
    async with db.read() as session:
        department = await service.get_department_or_raise(session, department_id)
        hospital = await service.get_hospital_or_raise(session, department.hospital_id)
        doctors = await service.list_doctors(session, department)
        names = {d.id: d.name for d in await service.list_departments(session, hospital.id)}
        fees = await service.fee_table(session, hospital.id)
    return [views.doctor_read(d, names[d.department_id], hospital.name,
                              fees.get((d.registration_level, d.title)), locale) for d in doctors]


@router.get("/api/v1/doctors/{doctor_id}", response_model=DoctorDetail)
async def get_doctor(doctor_id: int, db: Db, locale: Locale) -> DoctorDetail:
    """A doctor: title, specialty, introduction and fees (挂号费 and 诊查费)."""
    async with db.read() as session:
        doctor = await service.get_doctor_or_raise(session, doctor_id)
        hospital = await service.get_hospital_or_raise(session, doctor.hospital_id)
        department = await service.get_department_or_raise(session, doctor.department_id)
        fees = await service.fee_table(session, hospital.id)
    return views.doctor_detail(doctor, department.name, hospital.name,
                               fees.get((doctor.registration_level, doctor.title)), locale)


@router.get("/media/doctors/{doctor_id}", include_in_schema=False)
async def doctor_photo(doctor_id: int, request: Request, db: Db) -> Response:
    """A doctor's photo (public, like the rest of the catalog); 404 when there is none. The
    ETag is the content's sha256, so a browser revalidating gets 304 without the bytes."""
    async with db.read() as session:
        photo = await photos.get_photo(session, doctor_id)
    if photo is None:
        raise NotFound("resource")
    etag = f'"{photo.etag}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
    wanted = [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]
    if etag in wanted or "*" in wanted:
        return Response(status_code=304, headers=headers)
    return Response(photo.content, media_type=photo.media_type, headers=headers)
