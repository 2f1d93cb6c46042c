"""structlog setup. Log events carry ids and codes, never personal values; a last-line
processor masks anything that looks like a mainland ID or mobile number anyway."""
from __future__ import annotations

import logging
import re
import sys

import structlog

# bounded by non-alphanumerics, so hex request ids that happen to hold 11 digits stay intact
_ID_RE = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[\dXx])(?![0-9A-Za-z])")
_PHONE_RE = re.compile(r"(?<![0-9A-Za-z])(\+?86)?(1\d{2})(\d{4})(\d{4})(?![0-9A-Za-z])")


def scrub(text: str) -> str:
    text = _ID_RE.sub(lambda m: m.group(1)[0] + "*" * 16 + m.group(3)[-1], text)
    return _PHONE_RE.sub(lambda m: f"{m.group(2)}****{m.group(4)}", text)


def _scrub_processor(_logger, _name, event_dict):
    for key, value in list(event_dict.items()):
        if isinstance(value, str):
            event_dict[key] = scrub(value)
    return event_dict


class _Tee:
    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    def write(self, text: str) -> None:
        sys.stderr.write(text)
        self._file.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
        self._file.flush()


_tee: _Tee | None = None


def configure_logging(*, json: bool = False, level: int = logging.INFO, log_file: str | None = None) -> None:
    global _tee
    if log_file and _tee is None:
        _tee = _Tee(log_file)
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_tee or sys.stderr),
        cache_logger_on_first_use=False,
    )
