"""Processes and databases the bench (and the HTTP rush test) start and always clean up.

A server is `python -m uvicorn APP --workers W` in its own process group, so that stopping
it stops every worker; its output goes to a log file (a pipe nobody reads would block it).
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

PG_ADMIN_URL = os.environ.get("GUAHAO_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def asyncpg_dsn(url: str) -> str:
    """SQLAlchemy URL -> libpq DSN for asyncpg."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def pg_reachable(admin_url: str = PG_ADMIN_URL) -> str | None:
    """None when PostgreSQL answers, else why not."""
    import asyncpg

    try:
        conn = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=3)
    except Exception as exc:  # any failure means "not here"
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def _pg_admin(sql: str, admin_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class ScratchPostgres:
    """A fresh PostgreSQL database on the admin URL's server, dropped (WITH FORCE) at the end."""

    def __init__(self, prefix: str = "guahao_bench", admin_url: str = PG_ADMIN_URL) -> None:
        self.admin_url = admin_url
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        base, _, _ = admin_url.rpartition("/")
        self.url = f"{base}/{self.name}"

    async def create(self) -> str:
        await _pg_admin(f'CREATE DATABASE "{self.name}"', self.admin_url)
        return self.url

    async def drop(self) -> None:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)', self.admin_url)


class UvicornServer:
    """`python -m uvicorn APP --workers W` on a free port of 127.0.0.1."""

    def __init__(self, app: str, *, workers: int, env: dict[str, str], name: str = "server",
                 log_dir: Path | None = None, port: int | None = None) -> None:
        self.app, self.workers, self.name = app, workers, name
        self.port = port or free_port()
        self.env = {**os.environ, **env}
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="guahao-bench-"))
        self.log_path = self.log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", str(self.workers), "--log-level", "warning", "--no-access-log"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.log_dir, start_new_session=True)
        finally:
            log.close()

    async def wait_ready(self, timeout: float = 30.0, path: str = "/healthz") -> None:
        """Until every worker could have booted: /healthz answers several times in a row."""
        deadline = time.monotonic() + timeout
        ok_in_a_row = 0
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    r = await client.get(path)
                    ok_in_a_row = ok_in_a_row + 1 if r.status_code == 200 else 0
                except httpx.HTTPError:
                    ok_in_a_row = 0
                if ok_in_a_row >= 4 * self.workers:
                    return
                await asyncio.sleep(0.05 if ok_in_a_row else 0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole process group, then SIGKILL to whatever of it is left."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:  # workers orphaned by a dead master are still in the group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait(5)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server's processes: the supervisor and
        its workers, found by their process group. A figure that a busy machine distorts far
        less than wall-clock times: the work per answer, not the wait for a core."""
        if self.proc is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # fields[2] is the process group (pgrp)
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    def _group_pids(self) -> list[int]:
        if self.proc is None:
            return []
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:
                pids.append(int(stat.parent.name))
        return pids

    def peak_rss_mib(self) -> list[float]:
        """Peak resident memory (VmHWM from /proc) of each worker process so far, in MiB; the
        supervisor itself is left out when there are workers (it serves no requests)."""
        out = []
        for pid in self._group_pids():
            if pid == getattr(self.proc, "pid", None) and self.workers > 1:
                continue
            try:  # multiprocessing's resource tracker is in the group too and serves nothing
                if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
            except OSError:
                continue
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        out.append(round(int(line.split()[1]) / 1024, 1))
            except (OSError, ValueError):
                continue
        return sorted(out)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> UvicornServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
