"""The directory of prometheus-client's multiprocess mode, managed by `guahao serve`.

Kept apart from guahao.core.metrics on purpose: prometheus_client reads
PROMETHEUS_MULTIPROC_DIR once, when it is first imported, so `serve` must prepare and export
the directory without importing it.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(path: str | None) -> tuple[str, bool]:
    """The directory to use and whether we made it (and so remove it at the end). A given
    directory is emptied: files from an earlier run would add stale numbers."""
    if not path:
        return tempfile.mkdtemp(prefix="guahao-metrics-"), True
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)
    return path, False


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
