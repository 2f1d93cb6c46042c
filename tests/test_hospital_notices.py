"""Hospital notices other than 停诊: published by the operator or the hospital's own admin
(audited), shown to patients while active (by the hospital's clock), pinned first, on the
hospital page and, when pinned, on home."""
from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from guahao.core.audit import AuditEntry
from tests.builders import auth, make_hospital, make_staff

pytestmark = pytest.mark.timeout(120)
# the test clock is 2026-11-19 10:00 in Shanghai (02:00 UTC)


@pytest.fixture
async def browser_client(app):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept": "text/html", "Accept-Language": "zh-CN"}) as c:
        yield c


async def _publish(client, token: str, hospital_id: int, **body):
    return await client.post(f"/api/v1/staff/hospitals/{hospital_id}/notices", headers=auth(token),
                             json={"title": "春节门诊安排", "body": "除夕至初三仅开放急诊。", **body})


async def _public(client, hospital_id: int) -> list[dict]:
    r = await client.get(f"/api/v1/hospitals/{hospital_id}/notices")
    assert r.status_code == 200, r.text
    return r.json()


async def test_staff_publish_edit_and_remove_notices_audited(app, db, clock, client):
    hid = await make_hospital(db, clock.now(), name="北京协和医院")
    other = await make_hospital(db, clock.now(), name="别的医院")
    admin, admin_token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hid)
    _, desk_token = await make_staff(db, clock.now(), role="front_desk", hospital_id=hid)
    _, stranger_token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=other)
    _, operator_token = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)

    # local wall-clock times without an offset are the hospital's (Asia/Shanghai)
    r = await _publish(client, admin_token, hid, valid_from="2026-11-19T08:00:00", valid_until="2026-11-30T18:00:00")
    assert r.status_code == 201, r.text
    notice = r.json()
    assert notice["valid_from"] == "2026-11-19T08:00:00+08:00" and notice["valid_until"] == "2026-11-30T18:00:00+08:00"
    assert notice["active"] is True and notice["pinned"] is False
    assert (await _publish(client, desk_token, hid)).status_code == 403
    assert (await _publish(client, stranger_token, hid)).status_code == 404
    assert (await _publish(client, operator_token, hid, title="系统维护")).status_code == 201
    bad = await _publish(client, admin_token, hid, valid_from="2026-11-20T08:00:00", valid_until="2026-11-20T07:00:00")
    assert bad.status_code == 422 and bad.json()["code"] == "notice_window_invalid"

    path = f"/api/v1/staff/notices/{notice['id']}"
    assert (await client.patch(path, headers=auth(stranger_token), json={"pinned": True})).status_code == 404
    r = await client.patch(path, headers=auth(admin_token), json={"pinned": True, "title": "春节期间门诊安排"})
    assert r.status_code == 200 and r.json()["pinned"] is True and r.json()["title"] == "春节期间门诊安排"
    r = await client.patch(path, headers=auth(admin_token), json={"valid_until": None})
    assert r.status_code == 200 and r.json()["valid_until"] is None
    listed = await client.get(f"/api/v1/staff/hospitals/{hid}/notices", headers=auth(admin_token))
    assert [n["title"] for n in listed.json()] == ["春节期间门诊安排", "系统维护"]
    assert (await client.delete(path, headers=auth(stranger_token))).status_code == 404
    assert (await client.delete(path, headers=auth(admin_token))).status_code == 204
    assert (await client.delete(path, headers=auth(admin_token))).status_code == 404
    assert [n["title"] for n in await _public(client, hid)] == ["系统维护"]

    async with db.read() as s:
        actions = [(e.action, e.staff_id) for e in await s.scalars(
            select(AuditEntry).where(AuditEntry.object_type == "hospital_notice").order_by(AuditEntry.id))]
    assert [a for a, _ in actions] == ["notice.publish", "notice.publish", "notice.update", "notice.update",
                                       "notice.remove"]
    assert actions[0][1] == admin


async def test_patients_see_only_active_notices_pinned_first(app, db, clock, client):
    hid = await make_hospital(db, clock.now())
    _, token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hid)
    await _publish(client, token, hid, title="旧公告", valid_from="2026-11-01T08:00:00",
                   valid_until="2026-11-19T10:00:00")  # ended exactly now: the end is exclusive
    await _publish(client, token, hid, title="明日公告", valid_from="2026-11-20T00:00:00")
    await _publish(client, token, hid, title="普通公告")
    await _publish(client, token, hid, title="置顶公告", pinned=True, valid_from="2026-11-18T00:00:00")
    assert [n["title"] for n in await _public(client, hid)] == ["置顶公告", "普通公告"]
    clock.advance(hours=14)  # 2026-11-20 00:00 in Shanghai
    assert [n["title"] for n in await _public(client, hid)] == ["置顶公告", "明日公告", "普通公告"]
    assert (await client.get("/api/v1/hospitals/999999/notices")).status_code == 404


async def test_the_hospital_page_and_home_show_them(app, db, clock, browser_client):
    c = browser_client
    hid = await make_hospital(db, clock.now(), name="北京协和医院")
    _, token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hid)
    before = await c.get(f"/hospitals/{hid}")
    assert 'id="hospital-notices"' not in before.text and 'id="home-notices"' not in (await c.get("/")).text
    await _publish(c, token, hid, title="门诊楼东门临时封闭", body="请从南门进入。\n轮椅通道在南门西侧。",
                   valid_until="2026-11-25T18:00:00")
    await _publish(c, token, hid, title="流感疫苗门诊开放", pinned=True)
    await _publish(c, token, hid, title="未来的公告", valid_from="2026-12-01T08:00:00")
    page = (await c.get(f"/hospitals/{hid}")).text
    board = page.split('id="hospital-notices"')[1].split("</section>")[0]
    assert board.index("流感疫苗门诊开放") < board.index("门诊楼东门临时封闭")
    assert "置顶" in board and "有效期至 2026-11-25 周三 18:00" in board and "未来的公告" not in board
    assert 'id="notices"' not in page  # the 停诊 section is a different one, empty here
    home = (await c.get("/")).text
    pinned = home.split('id="home-notices"')[1].split("</section>")[0]
    assert "流感疫苗门诊开放" in pinned and "门诊楼东门临时封闭" not in pinned
    english = (await c.get(f"/hospitals/{hid}", headers={"Accept-Language": "en"})).text
    assert "Hospital notices" in english and "Valid until 2026-11-25 Wed 18:00" in english
