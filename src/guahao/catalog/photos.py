"""Doctors' photos: checking an upload, storing it in `doctor_photos`, reading it back.

Pillow is not a dependency, so an upload is not decoded or re-encoded here: it is accepted
only when its first bytes are those of a JPEG, PNG or WebP file and it is at most 2 MB. That
means metadata (a JPEG's EXIF, which can hold where the picture was taken) is kept as sent;
the back-office page asks the admin to upload a plain portrait. The file is served with
`nosniff` (the security headers middleware) under the media type found here, never the one
the browser claimed, so a file passed off as an image cannot be run as HTML or script.
"""
from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog.errors import PhotoInvalid, PhotoTooLarge
from guahao.catalog.models import DoctorPhoto

MAX_BYTES = 2 * 1024 * 1024
MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp")


def sniff(content: bytes) -> str | None:
    """The media type the file's magic bytes say, or None for anything else."""
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(content) >= 12 and content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None


def check(content: bytes) -> str:
    """The upload's media type; refuses an empty, too large or non-image file."""
    if len(content) > MAX_BYTES:
        raise PhotoTooLarge(limit_mb=MAX_BYTES // (1024 * 1024))
    media_type = sniff(content)
    if media_type is None:
        raise PhotoInvalid()
    return media_type


async def read_limited(upload) -> bytes:
    """Reads at most one byte past the limit from an UploadFile, so a huge file is refused
    without holding all of it in memory."""
    return await upload.read(MAX_BYTES + 1)


async def get_photo(session: AsyncSession, doctor_id: int) -> DoctorPhoto | None:
    return (await session.execute(select(DoctorPhoto).where(DoctorPhoto.doctor_id == doctor_id))).scalar_one_or_none()


async def photo_tags(session: AsyncSession, doctor_ids) -> dict[int, str]:
    """doctor id -> etag for the doctors that have a photo (the pages put it in the URL, so a
    replaced photo is fetched anew despite the day-long cache)."""
    ids = list(doctor_ids)
    if not ids:
        return {}
    stmt = select(DoctorPhoto.doctor_id, DoctorPhoto.etag).where(DoctorPhoto.doctor_id.in_(ids))
    return {doctor_id: etag for doctor_id, etag in (await session.execute(stmt)).all()}


async def do_store(session: AsyncSession, doctor_id: int, content: bytes, media_type: str, *,
                   now: dt.datetime) -> DoctorPhoto:
    etag = hashlib.sha256(content).hexdigest()
    photo = await get_photo(session, doctor_id)
    if photo is None:
        photo = DoctorPhoto(doctor_id=doctor_id, content=content, media_type=media_type, etag=etag, updated_at=now)
        session.add(photo)
    else:
        photo.content, photo.media_type, photo.etag, photo.updated_at = content, media_type, etag, now
    await session.flush()
    return photo


async def do_remove(session: AsyncSession, doctor_id: int) -> bool:
    result = await session.execute(delete(DoctorPhoto).where(DoctorPhoto.doctor_id == doctor_id))
    return bool(result.rowcount)
