"""Form plumbing shared by the back office's catalog and settings pages: reading submitted
fields, and turning schema and service errors into messages shown next to the fields.

The rules stay in the services and the API's schemas; a page only reads the form, validates it
with the same schema the API uses, calls the same service, and puts each error where the field
is. A page never commits: the request's unit of work does. A refused change must leave nothing
behind in it, so that it can still show the form again: the checkout's services refuse before
writing anything; a service that cannot promise that is called in a savepoint
(``uow.begin_nested()``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import FormData

from mercato.problems import Problem

Errors = dict[str, str]
Rename = Callable[[str], str]
"""Maps a field name as the service or schema says it to the name of the form field."""

_ITEM = re.compile(r"^([A-Za-z_]+)(?:\[(\d+)\]|\.(\d+))")
_FRIENDLY = {
    "missing": "is required",
    "string_too_short": "is required",
    "string_pattern_mismatch": "contains characters that are not allowed here",
    "literal_error": "is not one of the choices",
    "too_long": "has too many entries",
}


async def read_form(request: Request) -> FormData:
    """The submitted form (already parsed once by the CSRF check; Starlette keeps it)."""
    return await request.form()


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def texts(form: FormData, name: str) -> list[str]:
    return [v.strip() if isinstance(v, str) else "" for v in form.getlist(name)]


def checked(form: FormData, name: str) -> bool:
    return form.get(name) is not None


def whole_number(
    value: str, field: str, errors: Errors, *, default: int | None = None
) -> int | None:
    """A whole number typed into a form (empty gives ``default``); an error is noted, not raised."""
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        errors[field] = "must be a whole number"
        return default


def when(value: str, field: str, errors: Errors) -> datetime | None:
    """A ``datetime-local`` value, read as UTC (the back office shows times in UTC)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors[field] = "must be a date and time such as 2026-01-31 18:00"
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def local_input(value: datetime | None) -> str:
    """A UTC time as a ``datetime-local`` input value."""
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def _message(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind in _FRIENDLY:
        return _FRIENDLY[kind]
    message = str(error.get("msg", "is not valid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _place(
    errors: Errors, field: str, message: str, rename: Rename | None, lines: Collection[str]
) -> None:
    """Note ``message`` under its form field: items of a one-per-line field (``media.2``) go to
    that field as "line 3: …"."""
    base, index = item_index(field)
    if base in lines and index is not None:
        errors.setdefault(base, f"line {index + 1}: {message}")
        return
    errors.setdefault(rename(field) if rename else field, message)


def schema_errors(
    exc: ValidationError, rename: Rename | None = None, lines: Collection[str] = ()
) -> Errors:
    """A schema's complaints, one message per form field (the first one wins)."""
    errors: Errors = {}
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ())) or "form"
        _place(errors, field, _message(error), rename, lines)
    return errors


def problem_errors(
    problem: Problem, rename: Rename | None = None, lines: Collection[str] = ()
) -> Errors | None:
    """The field errors a service's problem carries (``errors=[{field, message}]``, or one
    ``field`` for conflicts such as a SKU already taken); ``None`` when it names no field, so
    the caller lets it through as an error page."""
    errors: Errors = {}
    listed = problem.extra.get("errors")
    if isinstance(listed, list):
        for item in listed:
            if isinstance(item, Mapping) and "field" in item:
                _place(errors, str(item["field"]), str(item.get("message")), rename, lines)
    elif isinstance(problem.extra.get("field"), str):
        _place(errors, str(problem.extra["field"]), problem.detail, rename, lines)
    return errors or None


def item_index(field: str) -> tuple[str, int | None]:
    """``"weight_bands[2].price"`` / ``"media.2"`` → ``("weight_bands", 2)``; else (field, None)."""
    match = _ITEM.match(field)
    if match is None:
        return field.split(".", 1)[0], None
    index = match.group(2) or match.group(3)
    return match.group(1), int(index)
