"""structlog setup. Log events carry ids and codes, never personal values; a last-line
processor masks anything that looks like a mainland ID or mobile number anyway, in every
field, nested ones included, and in the lines of stdlib loggers (uvicorn, SQLAlchemy, httpx,
asyncio), which go through the same processors.

One line, one write. Several uvicorn workers share stderr and the log file; a line written in
pieces (text, then newline; or a long line split by a buffer) interleaves with another
worker's. Each rendered line is therefore handed to the kernel in a single os.write, and the
log file is opened with O_APPEND, so concurrent appends land whole, one after another.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

import structlog

# Bounded by non-alphanumerics, so hex request ids that happen to hold 11 digits stay intact.
# People write numbers in groups: "138 0013 8000", "+86 138-0013-8000", "110105 19491231 002X".
_SEP = r"[ \-]?"
_ID_RE = re.compile(rf"(?<![0-9A-Za-z])(\d)\d{{5}}{_SEP}\d{{4}}{_SEP}\d{{4}}{_SEP}\d{{3}}([\dXx])(?![0-9A-Za-z])")
_PHONE_RE = re.compile(rf"(?<![0-9A-Za-z])(?:\+?86{_SEP})?(1\d{{2}}){_SEP}\d{{4}}{_SEP}(\d{{4}})(?![0-9A-Za-z])")
# stdlib loggers whose lines must look like ours (and be scrubbed like ours)
FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "sqlalchemy", "sqlalchemy.engine",
                   "httpx", "httpcore", "asyncio", "alembic")


def scrub(text: str) -> str:
    text = _ID_RE.sub(lambda m: m.group(1) + "*" * 16 + m.group(2), text)
    return _PHONE_RE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def scrub_value(value):
    """Strings anywhere inside dicts, lists, tuples and sets; integers that read as a phone or
    ID number become their masked text."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if -10**10 < value < 10**10:
            return value  # too short for a phone or ID number: the common case, kept cheap
        text = str(value)
        masked = scrub(text)
        return value if masked == text else masked
    if isinstance(value, Mapping):
        return {scrub_value(k) if isinstance(k, str) else k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub_value(v) for v in value]  # rendered as a JSON array either way
    return value


def _scrub_processor(_logger, _name, event_dict):
    for key, value in list(event_dict.items()):
        event_dict[key] = scrub_value(value)
    return event_dict


def _write_all(fd: int, data: bytes) -> None:
    # one call; a pipe or a signal may still take only part, and the rest must follow
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _Sink:
    """stderr plus, optionally, a file opened for appending; one os.write per line each."""

    def __init__(self, log_file: str | None) -> None:
        self.fds = [2]
        if log_file:
            self.fds.append(_append_fd(log_file))

    def write_line(self, text: str) -> None:
        data = (text.rstrip("\n") + "\n").encode("utf-8", "backslashreplace")
        for fd in self.fds:
            try:
                _write_all(fd, data)
            except OSError:
                pass  # a closed stderr must not take the request down with it


_files: dict[str, int] = {}  # one descriptor per path and process, however often we configure


def _append_fd(path: str) -> int:
    if path not in _files:
        _files[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    return _files[path]


class _LineLogger:
    """What structlog hands rendered lines to."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink

    def msg(self, message: str) -> None:
        self._sink.write_line(message)

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = err = msg


class _SinkHandler(logging.Handler):
    def __init__(self, sink: _Sink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write_line(self.format(record))
        except Exception:
            self.handleError(record)


def _common(json: bool):
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    pre = [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)]
    return renderer, pre


def configure_logging(*, json: bool = False, level: int = logging.INFO, log_file: str | None = None) -> None:
    sink = _Sink(log_file)
    renderer, pre = _common(json)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *pre,
            structlog.processors.format_exc_info,
            _scrub_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_args: _LineLogger(sink),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(sink, renderer, pre, level)


def _route_stdlib(sink: _Sink, renderer, pre, level: int) -> None:
    """Every stdlib record goes through the same processors, scrubber last before rendering."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, structlog.stdlib.add_logger_name, *pre,
                           structlog.stdlib.ExtraAdder(), structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _scrub_processor, renderer],
    )
    handler = _SinkHandler(sink)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _SinkHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in FOREIGN_LOGGERS:
        # uvicorn's own logging config gives its loggers their own plain-text handlers
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True
    for chatty in ("sqlalchemy.engine", "httpx", "httpcore"):  # a line per query or request is noise
        logging.getLogger(chatty).setLevel(logging.WARNING)
