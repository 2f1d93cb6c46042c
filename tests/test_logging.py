"""Log lines: one JSON object per line even when several processes write at once; stdlib and
uvicorn loggers go through the same scrubber; nested values and grouped numbers are masked."""
from __future__ import annotations

import json
import logging
import logging.config
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from guahao.core.logging import configure_logging, scrub
from tests.conftest import LOG_FILE

REPO = Path(__file__).resolve().parents[1]

WRITER = """
import sys, structlog
from guahao.core.logging import configure_logging
configure_logging(json=True, log_file=sys.argv[1])
log = structlog.get_logger("writer")
me = int(sys.argv[2])
for i in range(int(sys.argv[3])):
    # long lines, of many sizes: a buffered writer splits these into several writes
    log.info("line", writer=me, i=i, pad="x" * (500 + (i * 997 + me * 131) % 60000))
"""


@pytest.fixture
def log_path(tmp_path):
    path = tmp_path / "app.log"
    yield path
    configure_logging(log_file=str(LOG_FILE))  # back to the test run's log


def _lines(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # fails on any torn or merged line


def test_concurrent_processes_write_whole_lines(tmp_path):
    path = tmp_path / "shared.log"
    writers, per_writer = 6, 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), str(per_writer)],
                              cwd=REPO, stderr=subprocess.DEVNULL) for n in range(writers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    records = _lines(path)
    assert len(records) == writers * per_writer
    seen = {(r["writer"], r["i"]) for r in records}
    assert seen == {(w, i) for w in range(writers) for i in range(per_writer)}


@pytest.mark.parametrize("text, masked", [
    ("13800138000", "138****8000"),
    ("138 0013 8000", "138****8000"),
    ("138-0013-8000", "138****8000"),
    ("+86 138-0013-8000", "138****8000"),
    ("+86-138 0013 8000", "138****8000"),
    ("+8613800138000", "138****8000"),
    ("11010519491231002X", "1****************X"),
    ("110105 19491231 002X", "1****************X"),
    ("110105-1949-1231-0021", "1****************1"),
])
def test_grouped_numbers_are_masked(text, masked):
    assert scrub(f"call {text}, thanks") == f"call {masked}, thanks"


def test_ids_and_timestamps_stay_readable():
    for text in ("request 4f13800138000abc", "2026-11-19T02:00:00+08:00", "slot 1380013"):
        assert scrub(text) == text


def test_nested_values_are_masked(log_path):
    configure_logging(json=True, log_file=str(log_path))
    structlog.get_logger("t").info("nested", patient={"phones": ["+86 138-0013-8000", ("138 0013 8001",)],
                                                      "ids": {"110105 19491231 002X"}, "raw": 13800138002},
                                   items=[{"deep": [{"deeper": "13800138003"}]}])
    text = log_path.read_text()
    for digits in ("0013", "19491231", "13800138002", "0013800"):
        assert digits not in text
    (record,) = _lines(log_path)
    assert record["patient"]["phones"] == ["138****8000", ["138****8001"]]
    assert record["items"] == [{"deep": [{"deeper": "138****8003"}]}]


def test_stdlib_and_uvicorn_logs_go_through_the_scrubber(log_path):
    from uvicorn.config import LOGGING_CONFIG

    logging.config.dictConfig(LOGGING_CONFIG)  # uvicorn configures its loggers before our app starts
    configure_logging(json=True, log_file=str(log_path))
    logging.getLogger("uvicorn.error").warning("bad request from %s", "138 0013 8000")
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "10.0.0.1", "GET",
                                             "/api/v1/x?phone=13800138000", "1.1", 200)
    logging.getLogger("sqlalchemy.pool").warning("connection of 110105 19491231 002X dropped")
    logging.getLogger("httpx").warning("POST to +86 138-0013-8000 failed")
    try:
        raise ValueError("no such phone 13800138000")
    except ValueError:
        logging.getLogger("asyncio").exception("task failed")
    text = log_path.read_text()
    assert "0013" not in text and "19491231" not in text
    records = _lines(log_path)
    assert [r["logger"] for r in records] == ["uvicorn.error", "uvicorn.access", "sqlalchemy.pool", "httpx", "asyncio"]
    assert records[0]["event"] == "bad request from 138****8000"
    assert records[0]["level"] == "warning" and "timestamp" in records[0]
    assert "ValueError" in records[4]["exception"]
