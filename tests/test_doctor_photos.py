"""Doctors' photos over plain HTTP: the admin uploads one on the doctor's back-office page
(multipart, with the CSRF token), replaces and removes it; the file is served at
/media/doctors/{id} with its ETag (304 on revalidation) and a day-long public cache; a
non-image and a file over 2 MB are refused on the page with a clear message; another
hospital's admin is refused; the patient pages show the photo with the doctor's name as alt
text, or a placeholder. The JSON API (PUT/DELETE .../photo) does the same for other clients.
"""
from __future__ import annotations

import hashlib
import io

from PIL import Image
from sqlalchemy import select

from guahao.catalog.photos import MAX_BYTES
from guahao.core.audit import AuditEntry
from tests.builders import auth, make_department, make_doctor, make_hospital, make_staff
from tests.staff_web_support import login, make_staff_user, page_client, text_of, token_of
from tests.web_support import csrf_of


def _image(fmt: str, size=(64, 64), mode="RGB", **save) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 80, 40, 128)[:len(mode)]).save(out, fmt, **save)
    return out.getvalue()


def _with_gps() -> bytes:
    """A phone photo: 1200x900 with EXIF naming where it was taken."""
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (39.0, 54.0, 27.0), 3: "E", 4: (116.0, 23.0, 50.0)}  # GPSInfo
    exif[0x010F] = "PhoneMaker"
    return _image("JPEG", (1200, 900), exif=exif)


PNG = _image("PNG", mode="RGBA")  # transparency: kept as PNG
JPEG = _with_gps()
WEBP = _image("WEBP")


async def _world(app, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now, name="甲医院")
    other = await make_hospital(db, now, name="乙医院")
    dep = await make_department(db, hid, name="心内科")
    doc = await make_doctor(db, hid, dep, name="张伟")
    admin = page_client(app)
    assert (await login(admin, await make_staff_user(db, now, role="hospital_admin", hospital_id=hid))).status_code == 303
    outsider = page_client(app)
    assert (await login(outsider, await make_staff_user(db, now, role="hospital_admin",
                                                        hospital_id=other))).status_code == 303
    return {"hid": hid, "other": other, "dep": dep, "doc": doc, "admin": admin, "outsider": outsider, "now": now}


def _page(w) -> str:
    return f"/staff/hospitals/{w['hid']}/doctors/{w['doc']}"


async def _upload(client, url: str, content: bytes, name: str = "me.png", media_type: str = "image/png"):
    token = await token_of(client)
    return await client.post(url + "/photo", data={"csrf_token": token}, files={"photo": (name, content, media_type)})


async def _audit(db, action: str) -> list[AuditEntry]:
    async with db.read() as s:
        return list(await s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


async def test_upload_replace_serve_and_remove(app, client, db, clock):
    w = await _world(app, db, clock)
    assert (await client.get(f"/media/doctors/{w['doc']}")).status_code == 404
    r = await w["admin"].get(_page(w))
    assert 'enctype="multipart/form-data"' in r.text and 'id="no-photo"' in r.text

    r = await _upload(w["admin"], _page(w), PNG)
    assert r.status_code == 303, r.text
    r = await client.get(f"/media/doctors/{w['doc']}")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (64, 64)
    assert r.headers["content-type"] == "image/png"
    first_etag = f'"{hashlib.sha256(r.content).hexdigest()}"'
    assert r.headers["etag"] == first_etag
    assert r.headers["cache-control"] == "public, max-age=86400"
    again = await client.get(f"/media/doctors/{w['doc']}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""

    # replaced with a JPEG: the media type is the one the bytes say, not the one the browser claimed
    r = await _upload(w["admin"], _page(w), JPEG, name="x.png", media_type="image/png")
    assert r.status_code == 303
    r = await client.get(f"/media/doctors/{w['doc']}")
    assert r.headers["content-type"] == "image/jpeg"
    served = Image.open(io.BytesIO(r.content))
    assert served.size == (480, 360)  # scaled down to 480 px on the long side
    assert not served.getexif() and b"PhoneMaker" not in r.content  # no EXIF, no location
    assert b"PhoneMaker" in JPEG  # (the upload had it)
    stale = await client.get(f"/media/doctors/{w['doc']}", headers={"If-None-Match": first_etag})
    assert stale.status_code == 200 and stale.content == r.content
    assert len(await _audit(db, "doctor.photo_set")) == 2

    page = await w["admin"].get(_page(w))
    assert f'src="/media/doctors/{w["doc"]}?v=' in page.text
    r = await w["admin"].post(_page(w) + "/photo", data={"csrf_token": csrf_of(page.text), "remove": "1"})
    assert r.status_code == 303
    assert (await client.get(f"/media/doctors/{w['doc']}")).status_code == 404
    assert len(await _audit(db, "doctor.photo_delete")) == 1


async def test_a_non_image_and_a_too_big_file_are_refused_on_the_page(app, client, db, clock):
    w = await _world(app, db, clock)
    r = await _upload(w["admin"], _page(w), b"<script>alert(1)</script>", name="evil.png")
    assert r.status_code == 422
    assert "照片须为 JPEG、PNG 或 WebP 图片" in text_of(r.text) and 'id="form-error"' in r.text
    r = await _upload(w["admin"], _page(w), PNG + b"\x00" * MAX_BYTES)
    assert r.status_code == 413 and "不能超过 2 MB" in text_of(r.text)
    r = await _upload(w["admin"], _page(w), WEBP, name="ok.webp", media_type="image/webp")
    assert r.status_code == 303  # WebP passes, after the two refusals stored nothing
    served = await client.get(f"/media/doctors/{w['doc']}")
    assert served.headers["content-type"] == "image/jpeg"  # re-encoded
    assert Image.open(io.BytesIO(served.content)).size == (64, 64)
    assert len(await _audit(db, "doctor.photo_set")) == 1


async def test_another_hospitals_admin_is_refused(app, client, db, clock):
    w = await _world(app, db, clock)
    r = await _upload(w["outsider"], _page(w), PNG)  # X's page, Y's admin: the role check names the hospital
    assert r.status_code in (403, 404)
    r = await _upload(w["outsider"], f"/staff/hospitals/{w['other']}/doctors/{w['doc']}", PNG)  # X's doctor
    assert r.status_code == 404
    assert (await client.get(f"/media/doctors/{w['doc']}")).status_code == 404


async def test_the_patient_pages_show_the_photo_or_a_placeholder(app, client, db, clock):
    w = await _world(app, db, clock)
    other_doc = await make_doctor(db, w["hid"], w["dep"], name="李娜")
    patient = page_client(app)
    r = await patient.get(f"/doctors/{w['doc']}")
    assert r.status_code == 200 and "doctor-photo_none" in r.text and 'src="/media/doctors/' not in r.text
    assert (await _upload(w["admin"], _page(w), PNG)).status_code == 303
    r = await patient.get(f"/doctors/{w['doc']}")
    assert f'src="/media/doctors/{w["doc"]}?v=' in r.text and 'alt="张伟"' in r.text
    r = await patient.get(f"/departments/{w['dep']}")
    assert f'src="/media/doctors/{w["doc"]}?v=' in r.text and 'alt="张伟"' in r.text
    assert f'src="/media/doctors/{other_doc}' not in r.text and "doctor-photo_none" in r.text
    assert "style=" not in r.text.split('id="doctors"')[1].split("</div></a>")[0]  # the CSP: no inline styles


async def test_the_api_sets_and_deletes_a_photo(app, client, db, clock):
    w = await _world(app, db, clock)
    _, admin = await make_staff(db, w["now"], role="hospital_admin", hospital_id=w["hid"])
    _, outsider = await make_staff(db, w["now"], role="hospital_admin", hospital_id=w["other"])
    _, operator = await make_staff(db, w["now"], role="platform_operator", hospital_id=None)
    url = f"/api/v1/staff/doctors/{w['doc']}/photo"
    r = await client.put(url, files={"photo": ("a.png", PNG, "image/png")}, headers=auth(outsider))
    assert r.status_code == 404
    r = await client.put(url, files={"photo": ("a.txt", b"hello", "text/plain")}, headers=auth(admin))
    assert r.status_code == 422 and r.json()["code"] == "photo_invalid"
    r = await client.put(url, files={"photo": ("a.png", PNG, "image/png")}, headers=auth(admin))
    assert r.status_code == 200
    served = (await client.get(r.json()["url"])).content
    assert r.json()["etag"] == hashlib.sha256(served).hexdigest()  # the tag names the stored bytes
    assert Image.open(io.BytesIO(served)).format == "PNG"
    r = await client.put(url, files={"photo": ("b.jpg", JPEG, "image/jpeg")}, headers=auth(operator))
    assert r.status_code == 200
    served = (await client.get(f"/media/doctors/{w['doc']}")).content
    assert Image.open(io.BytesIO(served)).format == "JPEG" and served != JPEG  # re-encoded, EXIF gone
    assert (await client.delete(url, headers=auth(outsider))).status_code == 404
    assert (await client.delete(url, headers=auth(admin))).status_code == 204
    assert (await client.get(f"/media/doctors/{w['doc']}")).status_code == 404
