"""Scheduling: the pure domain, templates, generation, edits and publication by staff."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest
from sqlalchemy import select, update

from guahao.catalog import rules as hospital_rules
from guahao.catalog.models import HospitalRules
from guahao.core.audit import AuditEntry
from guahao.core.clock import SHANGHAI
from guahao.scheduling import domain, service
from guahao.scheduling.errors import InvalidBands
from guahao.scheduling.models import Schedule
from tests.builders import auth, make_department, make_doctor, make_hospital, make_staff

UTC = dt.UTC
T = dt.time


# --- domain -----------------------------------------------------------------------------

def test_capacity_split_is_even_and_gives_the_remainder_to_earlier_bands():
    assert domain.split_capacity(10, 3) == [4, 3, 3]
    assert domain.split_capacity(2, 4) == [1, 1, 0, 0]
    assert domain.split_capacity(0, 2) == [0, 0]
    for total in range(0, 40):
        for parts in range(1, 12):
            split = domain.split_capacity(total, parts)
            assert sum(split) == total and max(split) - min(split) <= 1 and split == sorted(split, reverse=True)


def test_default_time_bands_are_thirty_minutes_across_the_period():
    morning = domain.bands_for("morning", "time_band")
    assert len(morning) == 8
    assert (morning[0].start, morning[0].end, morning[-1].end) == (T(8), T(8, 30), T(12))
    assert len(domain.bands_for("evening", "time_band")) == 6


def test_all_day_time_bands_skip_the_lunch_break():
    bands = domain.bands_for("all_day", "time_band")
    assert len(bands) == 16
    assert not [b for b in bands if T(12) < b.end <= T(13, 30)]
    assert (bands[0].start, bands[-1].end) == (T(8), T(17, 30))


def test_half_day_splits_an_all_day_clinic_into_morning_and_afternoon():
    halves = domain.bands_for("all_day", "half_day")
    assert [b.as_strings() for b in halves] == [["08:00", "12:00"], ["13:30", "17:30"]]
    assert [b.as_strings() for b in domain.bands_for("evening", "half_day")] == [["18:00", "21:00"]]


def test_day_granularity_is_one_slot_for_the_whole_period():
    assert [b.as_strings() for b in domain.bands_for("all_day", "day")] == [["08:00", "17:30"]]
    # explicit bands only matter when the hospital books by time band
    assert len(domain.bands_for("morning", "day", [["08:00", "09:00"]])) == 1


def test_explicit_bands_are_used_when_valid():
    bands = domain.bands_for("morning", "time_band", [["08:00", "09:00"], ["09:00", "10:30"]])
    assert [b.as_strings() for b in bands] == [["08:00", "09:00"], ["09:00", "10:30"]]


@pytest.mark.parametrize("bands", [
    [["8:00", "09:00"]],                       # not HH:MM
    [["08:00", "25:00"]],                      # not a time
    [["07:30", "08:30"]],                      # before the period
    [["11:30", "12:30"]],                      # after the period
    [["09:00", "09:00"]],                      # empty
    [["09:00", "10:00"], ["09:30", "10:30"]],  # overlapping
    [["10:00", "11:00"], ["08:00", "09:00"]],  # not ascending
    [["08:00"]],                               # not a pair
])
def test_invalid_bands_are_refused(bands):
    with pytest.raises(InvalidBands):
        domain.parse_bands("morning", bands)


@pytest.mark.parametrize("platform,onsite,band_count", [(16, 4, 8), (3, 5, 8), (0, 7, 3), (5, 0, 1), (0, 0, 2)])
def test_visit_numbers_are_contiguous_and_unique_per_schedule(platform, onsite, band_count):
    bands = domain.even_bands(T(8), T(8 + band_count))[:band_count]
    plans = domain.plan_slots(bands, platform, onsite)
    numbers = [n for plan in plans for n in plan.visit_numbers]
    assert numbers == list(range(1, platform + onsite + 1))
    assert sum(p.capacity for p in plans if p.pool == "platform") == platform
    # inside each band the platform positions come before the onsite ones
    for platform_plan, onsite_plan in zip(plans[::2], plans[1::2], strict=True):
        assert (platform_plan.pool, onsite_plan.pool) == ("platform", "onsite")
        assert platform_plan.start == onsite_plan.start
        assert onsite_plan.first_visit_no == platform_plan.first_visit_no + platform_plan.capacity


def test_release_instant_is_computed_in_the_hospital_zone():
    rules = hospital_rules.default_rules()
    assert domain.release_instant(dt.date(2026, 11, 26), rules) == dt.datetime(2026, 11, 19, 0, 0, tzinfo=UTC)
    midnight = dataclasses.replace(rules, release_time=T(0, 0))
    assert domain.release_instant(dt.date(2026, 11, 26), midnight) == dt.datetime(2026, 11, 18, 16, tzinfo=UTC)
    starts, _ = domain.period_bounds(dt.date(2026, 11, 26), "afternoon", SHANGHAI)
    assert domain.closing_instant(starts, 30) == dt.datetime(2026, 11, 26, 5, 0, tzinfo=UTC)


def test_slot_state_precedence():
    release, closes = dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 8, tzinfo=UTC)
    before, during, after = release - dt.timedelta(seconds=1), release, closes

    def state(now, status="published", remaining=1):
        return domain.slot_state(now, status, release, closes, remaining)

    assert state(before, "suspended", 0) == "suspended"
    assert state(before, remaining=0) == "not_yet_released"
    assert state(after, remaining=0) == "closed"
    assert state(during, remaining=0) == "full"
    assert state(during) == "bookable"
    with pytest.raises(ValueError):
        state(during, "draft")
    assert domain.schedule_state(["full", "bookable"]) == "bookable"
    assert domain.schedule_state(["full", "closed"]) == "closed"


# --- staff API --------------------------------------------------------------------------

NEXT_THURSDAY = dt.date(2026, 11, 26)  # the clock fixture stands on Thursday 2026-11-19, 10:00 local


@pytest.fixture
async def world(db, clock):
    now = clock.now()
    hospital_id = await make_hospital(db, now)
    department_id = await make_department(db, hospital_id)
    doctor_id = await make_doctor(db, hospital_id, department_id)  # chief, expert
    _, token = await make_staff(db, now, role="scheduler", hospital_id=hospital_id)
    return {"hospital": hospital_id, "department": department_id, "doctor": doctor_id, "headers": auth(token)}


async def create_template(client, world, **fields):
    body = {"doctor_id": world["doctor"], "weekday": 3, "period": "morning", "platform_capacity": 16,
            "onsite_capacity": 4} | fields
    response = await client.post(f"/api/v1/staff/hospitals/{world['hospital']}/schedule-templates",
                                 json=body, headers=world["headers"])
    assert response.status_code == 201, response.text
    return response.json()


async def generate(client, world, start=dt.date(2026, 11, 19), end=dt.date(2026, 12, 2), publish=True):
    return await client.post(f"/api/v1/staff/hospitals/{world['hospital']}/schedules/generate",
                             json={"from_date": start.isoformat(), "to_date": end.isoformat(), "publish": publish},
                             headers=world["headers"])


def visit_numbers(slots: list[dict]) -> list[int]:
    return sorted(n for s in slots for n in range(s["first_visit_no"], s["first_visit_no"] + s["capacity"]))


async def schedules_of(db, hospital_id):
    async with db.read() as s:
        return list((await s.scalars(select(Schedule).where(Schedule.hospital_id == hospital_id)
                                     .order_by(Schedule.date))).all())


async def test_generation_creates_schedules_with_fees_and_numbered_slots(client, db, world):
    template = await create_template(client, world)
    assert template["registration_level"] == "expert" and template["department_id"] == world["department"]
    response = await generate(client, world)
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 2  # two Thursdays in the range
    first = (await schedules_of(db, world["hospital"]))[0]
    assert (first.registration_fee, first.consultation_fee, first.status) == (500, 5000, "published")
    detail = (await client.get(f"/api/v1/staff/schedules/{first.id}", headers=world["headers"])).json()
    assert detail["starts_at"] == "2026-11-19T08:00:00+08:00"
    assert (detail["platform_capacity"], detail["onsite_capacity"], detail["total_fee"]) == (16, 4, 5500)
    assert len(detail["slots"]) == 16  # 8 bands x 2 pools
    assert visit_numbers(detail["slots"]) == list(range(1, 21))


async def test_generation_twice_creates_nothing_the_second_time(client, world):
    await create_template(client, world)
    await create_template(client, world, doctor_id=None, department_id=world["department"], period="afternoon",
                          registration_level="general")
    first = (await generate(client, world)).json()
    second = (await generate(client, world)).json()
    assert (first["created"], first["skipped"]) == (4, 0)
    assert (second["created"], second["skipped"]) == (0, 4)


async def test_concurrent_generations_create_each_schedule_once(client, db, world):
    await create_template(client, world)
    answers = await asyncio.gather(*(generate(client, world) for _ in range(4)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert sum(a.json()["created"] for a in answers) == 2
    assert len(await schedules_of(db, world["hospital"])) == 2


async def test_general_clinic_uses_the_no_title_fee(client, db, world):
    await create_template(client, world, doctor_id=None, department_id=world["department"],
                          registration_level="general")
    await generate(client, world)
    schedule = (await schedules_of(db, world["hospital"]))[0]
    assert (schedule.doctor_id, schedule.registration_fee, schedule.consultation_fee) == (None, 500, 0)


async def test_missing_fee_rule_is_refused_with_a_typed_error(client, db, world):
    attending = await make_doctor(db, world["hospital"], world["department"], name="李娜", title="resident",
                                  registration_level="general")
    await create_template(client, world, doctor_id=attending)
    response = await generate(client, world)
    assert response.status_code == 409
    assert response.json()["code"] == "fee_not_configured"
    assert await schedules_of(db, world["hospital"]) == []


async def test_generation_range_is_limited(client, world):
    await create_template(client, world)
    too_long = await generate(client, world, dt.date(2026, 11, 19), dt.date(2027, 1, 18))
    backwards = await generate(client, world, dt.date(2026, 11, 25), dt.date(2026, 11, 20))
    past = await generate(client, world, dt.date(2026, 11, 18), dt.date(2026, 11, 20))
    assert {r.json()["code"] for r in (too_long, backwards, past)} == {"schedule_range_invalid"}
    assert (await generate(client, world, dt.date(2026, 11, 19), dt.date(2027, 1, 17))).status_code == 200


async def test_template_bands_are_validated(client, world):
    response = await client.post(f"/api/v1/staff/hospitals/{world['hospital']}/schedule-templates",
                                 json={"doctor_id": world["doctor"], "weekday": 3, "period": "morning",
                                       "platform_capacity": 4, "bands": [["11:00", "12:30"]]},
                                 headers=world["headers"])
    assert response.status_code == 422 and response.json()["code"] == "invalid_bands"
    template = await create_template(client, world, bands=[["08:00", "09:00"], ["09:00", "10:00"]])
    moved = await client.patch(f"/api/v1/staff/schedule-templates/{template['id']}", json={"period": "afternoon"},
                               headers=world["headers"])
    assert moved.status_code == 422 and moved.json()["code"] == "invalid_bands"


async def test_overlapping_templates_for_one_doctor_are_refused(client, world):
    await create_template(client, world, period="all_day")
    response = await client.post(f"/api/v1/staff/hospitals/{world['hospital']}/schedule-templates",
                                 json={"doctor_id": world["doctor"], "weekday": 3, "period": "morning",
                                       "platform_capacity": 4}, headers=world["headers"])
    assert response.status_code == 409 and response.json()["code"] == "template_conflict"
    await create_template(client, world, period="evening")  # no overlap with all day


async def test_front_desk_cannot_create_templates(client, db, clock, world):
    _, token = await make_staff(db, clock.now(), role="front_desk", hospital_id=world["hospital"])
    response = await client.post(f"/api/v1/staff/hospitals/{world['hospital']}/schedule-templates",
                                 json={"doctor_id": world["doctor"], "weekday": 3, "period": "morning",
                                       "platform_capacity": 4}, headers=auth(token))
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    listing = await client.get(f"/api/v1/staff/hospitals/{world['hospital']}/schedule-templates", headers=auth(token))
    assert listing.status_code == 200


async def test_staff_of_another_hospital_get_404(client, db, clock, world):
    template = await create_template(client, world)
    await generate(client, world)
    schedule = (await schedules_of(db, world["hospital"]))[0]
    other_hospital = await make_hospital(db, clock.now(), name="另一家医院")
    _, token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=other_hospital)
    h, hid = auth(token), world["hospital"]
    calls = [
        ("get", f"/api/v1/staff/schedule-templates/{template['id']}", None, "template"),
        ("patch", f"/api/v1/staff/schedule-templates/{template['id']}", {"platform_capacity": 1}, "template"),
        ("delete", f"/api/v1/staff/schedule-templates/{template['id']}", None, "template"),
        ("get", f"/api/v1/staff/schedules/{schedule.id}", None, "schedule"),
        ("patch", f"/api/v1/staff/schedules/{schedule.id}", {"platform_capacity": 1}, "schedule"),
        ("post", f"/api/v1/staff/schedules/{schedule.id}/publish", None, "schedule"),
        ("get", f"/api/v1/staff/hospitals/{hid}/schedule-templates", None, "hospital"),
        ("post", f"/api/v1/staff/hospitals/{hid}/schedule-templates",
         {"doctor_id": world["doctor"], "weekday": 1, "period": "morning", "platform_capacity": 1}, "hospital"),
        ("post", f"/api/v1/staff/hospitals/{hid}/schedules/generate",
         {"from_date": "2026-11-19", "to_date": "2026-11-20"}, "hospital"),
        ("get", f"/api/v1/staff/hospitals/{hid}/schedules?from=2026-11-19&to=2026-11-30", None, "hospital"),
    ]
    for method, url, body, _what in calls:
        kwargs = {"json": body} if body is not None else {}
        response = await client.request(method.upper(), url, headers=h, **kwargs)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["code"] == "not_found"
    # and nothing changed
    assert (await client.get(f"/api/v1/staff/schedule-templates/{template['id']}",
                             headers=world["headers"])).json()["platform_capacity"] == 16


async def test_patching_capacity_regenerates_the_slots(client, db, world):
    await create_template(client, world)
    await generate(client, world)
    schedule = (await schedules_of(db, world["hospital"]))[0]
    url = f"/api/v1/staff/schedules/{schedule.id}"
    before = (await client.get(url, headers=world["headers"])).json()
    response = await client.patch(url, json={"platform_capacity": 10}, headers=world["headers"])
    assert response.status_code == 200, response.text
    after = response.json()
    assert (after["platform_capacity"], after["onsite_capacity"]) == (10, 4)
    platform = [s["capacity"] for s in after["slots"] if s["pool"] == "platform"]
    assert platform == [2, 2, 1, 1, 1, 1, 1, 1]
    assert not {s["id"] for s in before["slots"]} & {s["id"] for s in after["slots"]}
    assert visit_numbers(after["slots"]) == list(range(1, 15))

    rebanded = await client.patch(url, json={"bands": [["08:00", "10:00"], ["10:00", "12:00"]], "onsite_capacity": 0},
                                  headers=world["headers"])
    assert rebanded.status_code == 200, rebanded.text
    slots = rebanded.json()["slots"]
    assert [(s["starts_at"][11:16], s["pool"], s["capacity"], s["first_visit_no"]) for s in slots] == [
        ("08:00", "platform", 5, 1), ("08:00", "onsite", 0, 6), ("10:00", "platform", 5, 6), ("10:00", "onsite", 0, 11)]


async def test_bands_cannot_be_set_when_the_hospital_books_by_day(client, db, clock):
    hospital_id = await make_hospital(db, clock.now(), slot_granularity="day")
    department_id = await make_department(db, hospital_id)
    doctor_id = await make_doctor(db, hospital_id, department_id)
    _, token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hospital_id)
    world = {"hospital": hospital_id, "department": department_id, "doctor": doctor_id, "headers": auth(token)}
    await create_template(client, world, bands=[["08:00", "09:00"]])
    await generate(client, world)
    schedule = (await schedules_of(db, hospital_id))[0]
    detail = (await client.get(f"/api/v1/staff/schedules/{schedule.id}", headers=world["headers"])).json()
    assert [(s["pool"], s["capacity"], s["starts_at"][11:16], s["ends_at"][11:16]) for s in detail["slots"]] == [
        ("platform", 16, "08:00", "12:00"), ("onsite", 4, "08:00", "12:00")]
    response = await client.patch(f"/api/v1/staff/schedules/{schedule.id}", json={"bands": []},
                                  headers={**world["headers"], "Accept-Language": "en"})
    assert response.status_code == 422 and response.json()["code"] == "bands_not_used"
    assert "whole day" in response.json()["detail"]


async def test_publish_fixes_the_release_instant_from_the_current_rules(client, db, world):
    await create_template(client, world)
    await generate(client, world, publish=False)
    schedule = (await schedules_of(db, world["hospital"]))[-1]  # Thursday 2026-11-26
    async with db.begin() as s:
        await s.execute(update(HospitalRules).where(HospitalRules.hospital_id == world["hospital"])
                        .values(release_days_ahead=3, release_time=dt.time(15, 0)))
    response = await client.post(f"/api/v1/staff/schedules/{schedule.id}/publish", headers=world["headers"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "published"
    local_release = dt.datetime.combine(schedule.date - dt.timedelta(days=3), dt.time(15, 0), tzinfo=SHANGHAI)
    assert dt.datetime.fromisoformat(body["release_at"]) == local_release
    again = await client.post(f"/api/v1/staff/schedules/{schedule.id}/publish", headers=world["headers"])
    assert again.status_code == 409 and again.json()["code"] == "schedule_not_draft"
    async with db.read() as s:
        actions = set((await s.scalars(select(AuditEntry.action).where(AuditEntry.object_id == str(schedule.id),
                                                                       AuditEntry.object_type == "schedule"))).all())
    assert actions == {"schedule.publish"}


async def test_list_schedules_filters_by_status_and_doctor(client, db, world):
    await create_template(client, world)
    await create_template(client, world, doctor_id=None, department_id=world["department"],
                          registration_level="general", weekday=4)
    await generate(client, world, publish=False)
    base = f"/api/v1/staff/hospitals/{world['hospital']}/schedules?from=2026-11-19&to=2026-12-02"
    everything = (await client.get(base, headers=world["headers"])).json()
    assert len(everything) == 4 and {s["status"] for s in everything} == {"draft"}
    mine = (await client.get(f"{base}&doctor_id={world['doctor']}", headers=world["headers"])).json()
    assert [s["date"] for s in mine] == ["2026-11-19", "2026-11-26"]
    await client.post(f"/api/v1/staff/schedules/{mine[0]['id']}/publish", headers=world["headers"])
    published = (await client.get(f"{base}&status=published", headers=world["headers"])).json()
    assert [s["id"] for s in published] == [mine[0]["id"]]


async def test_services_expose_slots_and_rules_to_other_features(db, clock, client, world):
    await create_template(client, world)
    await generate(client, world)
    schedule = (await schedules_of(db, world["hospital"]))[0]
    async with db.read() as s:
        slots = await service.list_slots(s, schedule.id, pool="platform")
        slot = await service.get_slot_or_raise(s, slots[0].id, hospital_id=world["hospital"])
        rules = await hospital_rules.get_rules(s, world["hospital"])
        assert service.closes_at(schedule, rules) == schedule.starts_at
        assert (await service.live_counts(s, [slot.id], clock.now())) == {slot.id: 0}
        with pytest.raises(Exception) as missing:
            await service.get_slot_or_raise(s, slot.id, hospital_id=world["hospital"] + 1000)
        assert missing.value.params["what"] == "slot"


async def test_a_template_needs_a_doctor_or_a_department(client, world):
    response = await client.post(f"/api/v1/staff/hospitals/{world['hospital']}/schedule-templates",
                                 json={"weekday": 3, "period": "morning", "platform_capacity": 4},
                                 headers=world["headers"])
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
