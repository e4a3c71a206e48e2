"""Log lines an operator can search: one JSON object per line (or plain text on a terminal),
each carrying the request id of the work it belongs to.

The request id comes from the request's ``X-Request-ID`` header (or is made up) and is echoed
back (see :mod:`mercato.observability`). It lives in a context variable, so every line logged
while serving the request carries it, and it travels with the work the request leaves behind:
the outbox events it published and the workflow runs it started keep it, and the worker binds
it again while it delivers that event or drives that run. One id then finds the checkout's
request, its payment retries in the worker and the confirmation mail sent for the order.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["auto", "json", "plain"]

_request_id: ContextVar[str | None] = ContextVar("mercato_request_id", default=None)

# What a client may send as its request id: short, visible ASCII (it is logged and echoed).
_ACCEPTABLE_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")

REQUEST_ID_KEY = "_request_id"
"""Where the request id rides in stored JSON (outbox payloads, workflow state); read and
stripped again by the core before any consumer or step sees the document."""


def current_request_id() -> str | None:
    return _request_id.get()


def acceptable_request_id(value: str | None) -> str | None:
    """``value`` when it is fit to log and echo as a request id, else None (make one up)."""
    return value if value is not None and _ACCEPTABLE_ID.fullmatch(value) else None


def set_request_id(request_id: str | None) -> Token[str | None]:
    return _request_id.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)


@contextmanager
def bound_request_id(request_id: str | None) -> Iterator[None]:
    """Log the lines of this block (and of the tasks it starts) under ``request_id``."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def with_request_id(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` carrying the current request id (unchanged when there is none)."""
    request_id = _request_id.get()
    return {**document, REQUEST_ID_KEY: request_id} if request_id is not None else document


def pop_request_id(document: dict[str, Any]) -> str | None:
    """Take the request id out of a stored ``document`` (in place)."""
    value = document.pop(REQUEST_ID_KEY, None)
    return value if isinstance(value, str) else None


# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_LEFT_OUT = frozenset({"request_id", "color_message"})  # uvicorn's copy with terminal colours


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    the exception's traceback when there is one, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id.get(),
        }
        given = getattr(record, "request_id", None)
        if given not in (None, "-"):
            line["request_id"] = given
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line and key not in _LEFT_OUT:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _RequestIdFilter(logging.Filter):
    """Put the current request id on every record (plain lines print it too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get() or "-"
        return True


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def resolve_format(chosen: LogFormat) -> Literal["json", "plain"]:
    """``auto``: plain text for someone watching a terminal, JSON otherwise (a service
    manager, a container runtime or a log collector reads stderr)."""
    if chosen != "auto":
        return chosen
    return "plain" if sys.stderr.isatty() else "json"


def configure(fmt: Literal["json", "plain"], level: str = "INFO") -> None:
    """Send every logger's lines (ours, uvicorn's, SQLAlchemy's) to stderr in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers would print its lines a second time, in another shape. Its
        # access log stays as `mercato serve` set it (off: the request metrics count requests).
        uv = logging.getLogger(name)
        uv.handlers.clear()
        if name != "uvicorn.access":
            uv.propagate = True
