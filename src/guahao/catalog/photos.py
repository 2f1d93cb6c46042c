"""Doctors' photos: checking an upload, storing it in `doctor_photos`, reading it back.

An upload is accepted when its first bytes are those of a JPEG, PNG or WebP file, it is at
most 2 MB, and Pillow decodes it (at most 40 megapixels: a small file that inflates to a huge
bitmap is refused). It is then re-encoded (turned upright by its EXIF orientation, at most
480 px on a side, JPEG, or PNG when it has transparency): the stored photo carries no
metadata, since a phone's EXIF can hold where the picture was taken, and the doctor's home is
nobody's business. It is served with `nosniff` (the security headers middleware) under the
media type of what we encoded, never the one the browser claimed.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from io import BytesIO

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog.errors import PhotoInvalid, PhotoTooLarge
from guahao.catalog.models import DoctorPhoto

MAX_BYTES = 2 * 1024 * 1024
MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_SIDE = 480
MAX_PIXELS = 40_000_000


def sniff(content: bytes) -> str | None:
    """The media type the file's magic bytes say, or None for anything else."""
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(content) >= 12 and content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None


def prepare(content: bytes) -> tuple[bytes, str]:
    """The photo as stored (re-encoded, no metadata) and its media type; refuses an empty, too
    large, undecodable or non-image file."""
    if len(content) > MAX_BYTES:
        raise PhotoTooLarge(limit_mb=MAX_BYTES // (1024 * 1024))
    if sniff(content) is None:
        raise PhotoInvalid()
    try:
        with Image.open(BytesIO(content)) as probe:
            if probe.width * probe.height > MAX_PIXELS:
                raise PhotoInvalid()
            image = ImageOps.exif_transpose(probe)  # a new image: the file's metadata stays behind
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise PhotoInvalid() from None
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    out = BytesIO()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image.save(out, "PNG", optimize=True)
        return out.getvalue(), "image/png"
    image.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue(), "image/jpeg"


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
