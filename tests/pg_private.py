"""A private PostgreSQL cluster for fault tests that stop or restart the database.

Never the machine's shared server: `initdb` in a temporary folder, on a free port, with its
own socket folder, run as the `postgres` system user when the tests run as root (PostgreSQL
refuses to run as root). Stopped and removed at the end whatever happened."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from guahao.bench.servers import free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def available() -> str | None:
    """None when a private cluster can be started here, else why not."""
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        return "initdb/pg_ctl not installed (Debian: postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    return None


class PrivateCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="guahao-pg-"))
        self.data, self.sockets = self.dir / "data", self.dir / "sock"
        self.port = free_port()
        self.log = self.dir / "server.log"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, name: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.sockets, "postgres")
        if not self.data.exists():
            self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-sync")
        self._pg_ctl("start", "-l", str(self.log))

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_bin("pg_ctl"), action, "-D", str(self.data), "-w", "-t", "60", "-o", options, *extra)

    def stop(self, mode: str = "fast") -> None:
        self._run(_bin("pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w", check=False)

    def restart(self) -> None:
        # -l here too: without it the server would write to (and hold open) our output pipe
        self._pg_ctl("restart", "-m", "fast", "-l", str(self.log))

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
