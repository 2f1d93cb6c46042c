"""The machinery of `guahao bench browse` and `guahao bench scale` (not their figures).

- the staleness arithmetic, on a made-up timeline (no clock involved);
- the parsers and the database's record of changes, against the real app and database (both
  databases): a hold shown to the bench is seen in the answers and in the change record;
- both commands end to end at tiny sizes on SQLite, in a subprocess (they configure keys of
  their own), asserting only the shape of their reports. No wall-clock asserts.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid

from guahao.bench.browse import changes, endpoint_paths, remaining_in
from guahao.bench.browse_stats import Poll, Timeline, browse_figures
from guahao.bench.scale import ScalePoint, plot
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital

DAY = dt.date(2026, 11, 21)
API = "doctor availability (API)"


def test_staleness_sees_a_change_it_was_shown():
    # 5 seats; a hold at t=10 (-> 4), a cancellation at t=20 (-> 5)
    timeline = Timeline(5, [(20.0, +1), (10.0, -1)])
    assert [timeline.value_at(t) for t in (0, 10, 15, 20, 25)] == [5, 4, 4, 5, 5]
    polls = [
        Poll(API, 0, 9.0, 9.1, 200, 5),     # before the hold: fresh
        Poll(API, 0, 10.5, 10.6, 200, 5),   # asked 0.5 s after the hold, shows the old count: stale 0.5 s
        Poll(API, 0, 11.0, 11.1, 200, 4),   # sees the hold
        Poll(API, 1, 9.95, 10.2, 200, 5),   # the hold landed while it was being answered: fresh
        Poll(API, 1, 12.0, 12.1, 200, 4),   # poller 1 sees the hold 2.1 s after it
        Poll(API, 1, 21.0, 21.1, 200, 5),   # and the cancellation
        Poll(API, 0, 22.0, 22.1, 200, 3),   # a count the slot never had
        Poll(API, 0, 23.0, 23.1, 500, None),
    ]
    fig = browse_figures("guahao", polls, pollers=2, window=(0.0, 30.0), timeline=timeline)
    (e,) = fig.endpoints
    assert (e.requests, e.with_count, e.http_5xx, e.never_true, e.changes) == (8, 7, 1, 1, 2)
    assert e.stale_answers == 1 and e.staleness_max_ms == 500.0
    # the hold reached poller 0 at 11.1 and poller 1 at 12.1; poller 0 never saw the cancellation
    assert e.unseen == 1 and e.all_seen_max_ms == 2100.0


def test_a_change_outside_the_window_is_not_counted():
    timeline = Timeline(2, [(100.0, -1)])
    fig = browse_figures("guahao", [Poll(API, 0, 1.0, 1.1, 200, 2)], pollers=1, window=(0.0, 30.0),
                         timeline=timeline)
    assert fig.endpoints[0].changes == 0 and fig.endpoints[0].stale_answers == 0


async def test_answers_and_change_record_show_a_hold(client, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY, capacity=3)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    paths = endpoint_paths(doc, dep, DAY)

    async def counts() -> list[int | None]:
        out = []
        for path in paths.values():
            r = await client.get(path, headers={"Accept-Language": "en"})
            assert r.status_code == 200, r.text
            out.append(remaining_in(r.content, slots[0], html=path.startswith("/doctors/")))
        return out

    assert await counts() == [3, 3, 3]
    assert await changes(db, slots[0]) == []
    r = await client.post("/api/v1/bookings", json={"slot_id": slots[0], "patient_id": patient},
                          headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    assert await counts() == [2, 2, 2]
    record = await changes(db, slots[0])
    assert record == [(now.timestamp(), -1)]
    r = await client.post(f"/api/v1/bookings/{r.json()['id']}/cancel", json={},
                          headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 200, r.text
    assert await counts() == [3, 3, 3]
    record = await changes(db, slots[0])
    assert sorted(d for _, d in record) == [-1, 1]
    assert Timeline(3, record).value_at(now.timestamp() + 1) == 3


def test_html_parser_reads_full_and_not_yet_released():
    full = b'<div class="slot" data-slot="7" data-state="full"><span><span class="badge badge_full">x</span>'
    soon = b'<div class="slot" data-slot="7" data-state="not_yet_released"><span class="badge">y</span>'
    assert remaining_in(full, 7, html=True) == 0
    assert remaining_in(soon, 7, html=True) is None
    assert remaining_in(full, 8, html=True) is None


def test_chart_is_a_png(tmp_path):
    points = [ScalePoint(w, n, 100.0 * w, 1.0, 50.0, 20.0, 0, True, [150.0] * w, None, winners=2, winners_in_db=2)
              for w in (1, 2) for n in (10, 20)]
    plot(points, tmp_path / "scale.png", title="test")
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _guahao(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from guahao.cli import app; app()", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_browse_command_reports_every_endpoint_and_every_change(tmp_path):
    out = tmp_path / "browse.json"
    done = _guahao("bench", "browse", "--database", "sqlite", "--pollers", "3", "--before", "1", "--after", "3",
                   "--interval", "0.25", "--patients", "8", "--slots", "2", "--connections", "4",
                   "--cancellations", "1", "--json-out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    guahao, bare = report["results"]
    assert (guahao["label"], bare["label"]) == ("guahao", "bare endpoint")
    for result in (guahao, bare):
        assert sorted(e["endpoint"] for e in result["endpoints"]) == sorted(endpoint_paths(1, 1, DAY))
        assert all(e["requests"] > 0 and e["http_5xx"] == 0 for e in result["endpoints"])
    for e in guahao["endpoints"]:
        # two holds and one cancellation, all recorded and all inside the window
        assert e["changes"] == 3 and e["with_count"] > 0 and e["never_true"] == 0
    assert [r["winners"] for r in report["rushes"]] == [2, 2]
    assert any(line.startswith("[") and "staleness" in line for line in report["targets"])


def test_scale_command_writes_table_chart_and_memory(tmp_path):
    chart, out = tmp_path / "scale.png", tmp_path / "scale.json"
    done = _guahao("bench", "scale", "--database", "sqlite", "--workers", "1", "--patients", "6,12", "--slots",
                   "2", "--connections", "4", "--plot", str(chart), "--json-out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    points = json.loads(out.read_text())["points"]
    assert [(p["workers"], p["patients"]) for p in points] == [(1, 6), (1, 12)]
    assert all(p["oversell_ok"] and len(p["worker_peak_rss_mib"]) == 1 and p["worker_peak_rss_mib"][0] > 0
               for p in points)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
