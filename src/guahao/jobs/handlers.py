"""The one place that imports every feature's job module, so that its `@handler` and
`periodic` registrations exist before a worker starts.

Features that are still being built are imported only if their module exists. Extra modules
(test-only handlers, site plugins) are named in GUAHAO_JOB_PLUGINS, comma-separated.
"""
from __future__ import annotations

import importlib
import os

import guahao.booking.jobs
import guahao.ops.retention
import guahao.waitlist.jobs  # noqa: F401  (the 候补 promoter and its sweep)

OPTIONAL_MODULES = ("guahao.payments.jobs", "guahao.notifications.jobs", "guahao.his.jobs", "guahao.his.realtime_jobs",
                    "guahao.keys.jobs", "guahao.draw.jobs")


def _import_optional(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # only "this module does not exist yet" is skipped; a broken import inside it is not
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return False
        raise
    return True


def plugin_modules(settings: object | None = None) -> list[str]:
    raw = getattr(settings, "job_plugins", None) or os.environ.get("GUAHAO_JOB_PLUGINS", "")
    return [name.strip() for name in raw.split(",") if name.strip()]


def load(settings: object | None = None) -> list[str]:
    """Import the optional feature modules and the plugins; returns the modules loaded."""
    loaded = ["guahao.booking.jobs", "guahao.ops.retention", "guahao.waitlist.jobs"]
    loaded += [name for name in OPTIONAL_MODULES if _import_optional(name)]
    for name in plugin_modules(settings):
        importlib.import_module(name)  # a named plugin that fails to import is an error
        loaded.append(name)
    return loaded
