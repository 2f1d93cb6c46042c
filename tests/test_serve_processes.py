"""`guahao serve` as a real process: its payment sandbox child ends with it, whatever signal
ends `serve` (SIGKILL included, through PR_SET_PDEATHSIG), a port already taken by an old
sandbox is refused, and base_url follows --port."""
from __future__ import annotations

import contextlib
import os
import signal
import socket

import pytest

from tests.serve_support import Service, children_of, gone, listening, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path)
    started: list[int] = []
    svc.started = started  # sandbox pids to clean up if a test fails half-way
    yield svc
    svc.kill()
    for pid in started:
        if not gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _start_and_find_sandbox(service: Service, *extra: str) -> int:
    proc = service.serve(*extra)
    service.wait_healthy()
    wait_until(lambda: listening(service.paysim_port), timeout=30, what="the sandbox port", proc=proc,
               log=service.log)
    sandboxes = [pid for pid in children_of(proc.pid) if "paysim" in _cmdline(pid)]
    assert len(sandboxes) == 1, service.output()
    service.started.append(sandboxes[0])
    return sandboxes[0]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_sandbox_stops_with_serve(service, sig):
    sandbox = _start_and_find_sandbox(service)
    service.stop(sig)
    wait_until(lambda: gone(sandbox), timeout=20, what="the sandbox to end", log=service.log)
    assert not listening(service.paysim_port)
    assert not listening(service.port)


def test_sandbox_stops_when_serve_is_killed(service):
    """SIGKILL runs no handler in `serve`: only the kernel's parent-death signal can help."""
    sandbox = _start_and_find_sandbox(service)
    service.stop(signal.SIGKILL)
    wait_until(lambda: gone(sandbox), timeout=20, what="the sandbox to end", log=service.log)
    wait_until(lambda: not listening(service.paysim_port), timeout=10, what="the sandbox port to close")


def test_workers_and_sandbox_stop_when_serve_with_workers_is_killed(service):
    proc = service.serve("--workers", "2")
    service.wait_healthy()
    wait_until(lambda: len(children_of(proc.pid)) >= 3, timeout=30, what="two workers and the sandbox")
    kids = children_of(proc.pid)
    service.started.extend(kids)
    service.stop(signal.SIGKILL)
    wait_until(lambda: all(gone(pid) for pid in kids), timeout=20, what="every child to end", log=service.log)
    wait_until(lambda: not listening(service.port), timeout=10, what="the service port to close")


def test_workers_and_sandbox_stop_with_serve_with_workers(service):
    proc = service.serve("--workers", "2")
    service.wait_healthy()
    wait_until(lambda: len(children_of(proc.pid)) >= 3, timeout=30, what="two workers and the sandbox")
    kids = children_of(proc.pid)
    service.started.extend(kids)
    assert service.stop(signal.SIGTERM) == 0
    wait_until(lambda: all(gone(pid) for pid in kids), timeout=20, what="every child to end", log=service.log)
    assert not listening(service.paysim_port) and not listening(service.port)


def test_port_taken_by_a_stale_sandbox_is_refused(service):
    # something (an old sandbox, say) already listens where our sandbox should
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", service.paysim_port))
        squatter.listen()
        proc = service.serve()
        assert proc.wait(timeout=60) != 0
    assert "already taken" in service.output()
    assert not listening(service.port)


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [e.decode().partition("=") for e in f.read().split(b"\0") if e]
    return {k: v for k, _, v in pairs}


def test_base_url_follows_the_port(service):
    """The uvicorn workers (where notify and return URLs are built) see base_url at the port
    `serve` listens on."""
    proc = service.serve("--workers", "2")
    service.wait_healthy()
    wait_until(lambda: len(children_of(proc.pid)) >= 3, timeout=30, what="two workers and the sandbox")
    kids = children_of(proc.pid)
    service.started.extend(kids)
    workers = [pid for pid in kids if "spawn_main" in _cmdline(pid)]
    assert len(workers) == 2
    for pid in workers:
        assert _environ(pid)["GUAHAO_BASE_URL"] == f"http://127.0.0.1:{service.port}"


def test_derived_base_url_reaches_the_payment_urls(monkeypatch):
    from guahao import cli
    from guahao.config import get_settings
    from guahao.payments import provider

    monkeypatch.delenv("GUAHAO_BASE_URL", raising=False)
    monkeypatch.delenv("GUAHAO_PAYMENT_NOTIFY_BASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        cli._derive_base_url("0.0.0.0", 8123)
        settings = get_settings()
        assert provider.notify_url(settings, "paysim") == "http://127.0.0.1:8123/api/v1/payments/notify/paysim"
        assert provider.return_url(settings, 7) == "http://127.0.0.1:8123/bookings/7"
    finally:
        monkeypatch.delenv("GUAHAO_BASE_URL", raising=False)
        get_settings.cache_clear()


def test_explicit_base_url_is_kept(monkeypatch):
    from guahao import cli
    from guahao.config import get_settings

    monkeypatch.setenv("GUAHAO_BASE_URL", "https://guahao.example.cn")
    get_settings.cache_clear()
    try:
        cli._derive_base_url("127.0.0.1", 8123)
        assert get_settings().base_url == "https://guahao.example.cn"
    finally:
        get_settings.cache_clear()
