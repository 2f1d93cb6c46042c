"""/metrics of real processes: `serve --workers 2` answers with the counts of both workers in
one scrape; `guahao worker --metrics-port` answers too."""
from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.serve_support import Service, children_of, free_port, gone, wait_until

pytestmark = pytest.mark.slow


def _root_count(families) -> float:
    for family in families:
        for sample in family.samples:
            if (sample.name == "guahao_http_requests_total" and sample.labels.get("route") == "/"
                    and sample.labels.get("method") == "GET"):
                return sample.value
    return 0.0


def _served_by(metrics_dir: Path, pid: int) -> float:
    """What one worker alone counted (its own file, read on its own)."""
    files = list(metrics_dir.glob(f"counter_{pid}.db"))
    if not files:
        return 0.0
    with tempfile.TemporaryDirectory() as alone:
        shutil.copy(files[0], alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=alone)
        return _root_count(registry.collect())


async def _burst(port: int, n: int) -> None:
    # a new connection per request, so that the kernel spreads them over both workers
    async def one() -> None:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200

    await asyncio.gather(*(one() for _ in range(n)))


async def test_two_workers_are_counted_in_one_scrape(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale file of an earlier run")  # serve must clear it
    service = Service(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), GUAHAO_PAYSIM_EMBEDDED="false")
    proc = service.serve("--workers", "2")
    kids: list[int] = []
    try:
        service.wait_healthy()
        wait_until(lambda: len([p for p in children_of(proc.pid) if _is_worker(p)]) == 2, timeout=30,
                   what="two workers")
        kids = [p for p in children_of(proc.pid) if _is_worker(p)]
        sent = 0
        for _ in range(40):
            await _burst(service.port, 20)
            sent += 20
            if all(_served_by(metrics_dir, pid) > 0 for pid in kids):
                break
        per_worker = [_served_by(metrics_dir, pid) for pid in kids]
        assert all(n > 0 for n in per_worker), f"one worker served everything: {per_worker}"
        async with httpx.AsyncClient() as client:
            scrape = (await client.get(f"http://127.0.0.1:{service.port}/metrics")).text
        assert _root_count(text_string_to_metric_families(scrape)) == sent == sum(per_worker)
        assert not (metrics_dir / "counter_1.db").exists()
    finally:
        service.stop()
    for pid in kids:
        assert gone(pid)


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def test_worker_serves_metrics_on_its_port(tmp_path):
    service = Service(tmp_path)
    subprocess.run([sys.executable, "-m", "guahao.cli", "db", "upgrade"], cwd=tmp_path, env=service.env, check=True,
                   capture_output=True)
    port = free_port()
    service.start("worker", "--metrics-port", str(port))
    try:
        service.wait_healthy(port=port, path="/metrics")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {"guahao_jobs_running", "guahao_jobs_processed", "guahao_holds", "guahao_sms"} <= names
        # stopping is graceful once the worker has its signal handlers (it logs its modules then)
        wait_until(lambda: "worker_modules" in service.output(), timeout=30, what="the worker to run")
    finally:
        assert service.stop(signal.SIGTERM) == 0, service.output()
