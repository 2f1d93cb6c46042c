"""Child processes that must not outlive the process that started them.

`guahao serve` starts the payment sandbox beside itself. A sandbox that survives its parent
keeps its port, and the next `serve` would talk to that stale one (other key, other ledger).
Three guards, because no single one covers every way a parent ends:

- on Linux the child asks the kernel for a signal when its parent dies (PR_SET_PDEATHSIG);
  this is the only guard that holds when the parent is SIGKILLed;
- `ChildGroup.stop_all` terminates and waits for every child; `serve` calls it from its
  signal handlers and from `finally`;
- before starting, `port_in_use` lets the caller refuse a port someone already listens on.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
# set by `serve` to its pid, so that its uvicorn worker processes know who their supervisor is
SUPERVISOR_ENV = "GUAHAO_SUPERVISOR_PID"


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: runs in the forked child before exec (only async-signal-safe calls here)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # the parent may already have died between fork and prctl: then nobody will signal us
    if os.getppid() != parent_pid:
        os._exit(1)


def follow_supervisor() -> None:
    """In a uvicorn worker process started by `serve --workers N`: end with `serve`, however it
    ends (uvicorn's multiprocessing workers cannot be given a preexec_fn). Does nothing in any
    other process, including `serve` itself when it runs the app in-process."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor or not sys.platform.startswith("linux") or int(supervisor) == os.getpid():
        return
    if int(supervisor) != os.getppid():
        # Either not started by it (a process that inherited the variable), or started by it
        # and orphaned before getting here: `serve` was killed while this worker was still
        # importing the app. An orphan must not go on serving (and running jobs) alone.
        if not process_alive(int(supervisor)):
            os._exit(1)
        return
    _die_with_parent(int(supervisor))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_in_use(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ChildGroup:
    """The children of one process; `stop_all` is idempotent and safe to call from a signal handler."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: Sequence[str], **popen_kwargs) -> subprocess.Popen:
        if sys.platform.startswith("linux"):
            parent = os.getpid()
            popen_kwargs.setdefault("preexec_fn", lambda: _die_with_parent(parent))
        proc = subprocess.Popen(list(argv), **popen_kwargs)
        self.procs.append(proc)
        return proc

    def stop_all(self, timeout: float = 10.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_port(proc: subprocess.Popen, host: str, port: int, timeout: float = 30.0) -> bool:
    """True once `port` accepts connections; False when `proc` exited or the time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if port_in_use(host, port, timeout=0.2):
            return True
        time.sleep(0.05)
    return False
