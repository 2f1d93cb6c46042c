"""`guahao serve` / `guahao worker` as real processes on free ports, in a temporary directory
with its own SQLite database (and the sandbox's ledger file)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (it holds no port and runs no code)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(x) for x in text]
    return found


def wait_until(predicate, *, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) waiting for {what}:\n{_tail(log)}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n{_tail(log)}")


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-4000:] if log and log.exists() else ""


class Service:
    """One `guahao ...` command in `directory`, its output in directory/out.log."""

    def __init__(self, directory: Path, **env: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.paysim_port = free_port()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("GUAHAO_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        self.env.update({"GUAHAO_ENV": "development", "GUAHAO_DATABASE_URL": f"sqlite+aiosqlite:///{directory}/g.db",
                         "GUAHAO_PAYSIM_URL": f"http://127.0.0.1:{self.paysim_port}",
                         "GUAHAO_EXPOSE_METRICS": "true",
                         "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])})
        self.env.update(env)
        self.log = directory / "out.log"
        self.proc: subprocess.Popen | None = None

    def start(self, *args: str) -> subprocess.Popen:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "guahao.cli", *args], cwd=self.directory,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self.proc

    def serve(self, *extra: str) -> subprocess.Popen:
        return self.start("serve", "--port", str(self.port), *extra)

    def wait_healthy(self, port: int | None = None, path: str = "/healthz", timeout: float = 120) -> None:
        url = f"http://127.0.0.1:{port or self.port}{path}"

        def ok() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ok, timeout=timeout, what=url, proc=self.proc, log=self.log)

    def output(self) -> str:
        return _tail(self.log)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"did not stop within {timeout}s:\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
