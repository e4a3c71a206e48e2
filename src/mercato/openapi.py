"""The OpenAPI document, made to say what the server really answers.

FastAPI documents the success answer and a generic ``application/json`` 422. Every operation
here may also answer problems (RFC 9457, ``application/problem+json``), and which ones follows
from what the route is built of, so the document derives them from the route itself rather
than from a list kept by hand beside it:

* a dependency declares the problems it raises with :func:`raises` (who is calling: 401; a role
  check: 403; a guest cart's token: 400), and every operation that depends on it, however
  deeply, lists them;
* a route with parameters or a body may answer 422 (validation, each failing field named); a
  body may also be malformed JSON (400) or too large (413); a path naming a resource may answer
  404;
* what a route's service refuses (a 409 conflict, a 402 payment failure, a 429 throttle…) is
  declared on the route: ``@router.post(..., responses=problems(409, 429))``.

A dependency marked :func:`guest_allowed` (who is calling, when signing in is optional) makes
the operation's security optional. Each problem answer carries the ``Problem`` schema; a 401
documents ``WWW-Authenticate`` and a 429 ``Retry-After``.

The other half of telling the truth is that request models check what the document states,
no more and no less. The types here keep them in step where Pydantic and JSON Schema read a
rule differently: ``Integer``/``WholeNumber`` (``2.0`` is an integer), ``DateTime`` (a number is
not a date-time), ``Trimmed`` with ``NOT_BLANK`` (lengths apply to what was sent), and pattern
classes (``SPACE``, ``NO_SPACE_OR_CONTROL``) that every regex engine involved reads alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from pydantic import AfterValidator, BeforeValidator, Field

from mercato.problems import PROBLEM_JSON, PROBLEM_SCHEMA

F = TypeVar("F", bound=Callable[..., Any])

# Patterns the document states are read by three regex engines (the server's Python re,
# Pydantic's Rust regex, JSON Schema's ECMAScript), whose \s and \d differ at the edges (NEL,
# BOM, Unicode digits): spell them with explicit classes. Spaces around a value are ASCII ones;
# inside, no space or control character of any kind.
SPACE = r"[ \t\n\r\f\v]"
NO_SPACE_OR_CONTROL = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
ASCII_SPACES = " \t\n\r\f\v"

# Somewhere a character that is not a space (what Python's str.strip() would leave): a
# required text field must have one. Unanchored, as JSON Schema and Pydantic read patterns.
NOT_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _trim(value: str) -> str:
    return value.strip()


# Trims a text after its lengths and pattern were checked on what the client sent, so that the
# document's minLength/maxLength mean what the server applies (Pydantic's strip_whitespace
# strips first, which a JSON Schema cannot say).
Trimmed = AfterValidator(_trim)

_DATE_START = re.compile(r"[0-9]{4}-")
_STATUSES = "__mercato_problem_statuses__"
_GUESTS = "__mercato_guest_allowed__"

_REF = "#/components/schemas/Problem"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_COOKIE: dict[str, list[str]] = {"APIKeyCookie": []}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The authentication scheme to use (RFC 6750)",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}
_HEADERS[503] = _HEADERS[429]
_DESCRIPTIONS = {
    400: "Bad request: malformed JSON, or a token or cursor this server did not issue",
    401: "Not signed in, or the token is invalid, expired or revoked",
    403: "Signed in without the role this needs, or a request authenticated by the session "
    "cookie without the CSRF header (or from another origin)",
    404: "Not found (someone else's resource answers the same)",
    409: "Conflicts with the current state",
    413: "The request body is too large",
    422: "Invalid input: ``errors`` names each failing field (no text may hold a NUL character)",
    429: "Too many requests: wait ``Retry-After`` seconds",
    503: "Unavailable for now (``database_unavailable``: the database cannot be reached): "
    "wait ``Retry-After`` seconds",
}


def _whole_number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer in a request body, as the document (JSON Schema) means it: ``2.0`` is the integer 2.
# Strict models would refuse it; strings and booleans stay refused. ``WholeNumber`` goes after
# any ``Field`` constraints (``Annotated[int, Field(ge=1), WholeNumber]``) so that the document
# keeps stating them.
WholeNumber = BeforeValidator(_whole_number)
Integer = Annotated[int, WholeNumber]


def _iso_date_time(value: Any) -> Any:
    # Pydantic's lax mode reads a number, or a string of one, as a Unix time.
    if not isinstance(value, datetime) and not (
        isinstance(value, str) and _DATE_START.match(value)
    ):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-01T00:00:00Z")
    return value


# A date-time in a request, as the document's ``date-time`` means it: an ISO 8601 string.
DateTime = Annotated[datetime, Field(strict=False), BeforeValidator(_iso_date_time)]


def raises(*statuses: int) -> Callable[[F], F]:
    """Declare the problem statuses a FastAPI dependency may answer: every operation that
    depends on it documents them."""

    def mark(func: F) -> F:
        setattr(func, _STATUSES, (*getattr(func, _STATUSES, ()), *statuses))
        return func

    return mark


def guest_allowed(func: F) -> F:
    """Mark a "who is calling" dependency that lets guests through: its operations' security
    is optional."""
    setattr(func, _GUESTS, True)
    return func


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the problem statuses its service may answer."""
    return {status: {"description": _description(status)} for status in statuses}


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/api/openapi.json``) the refined document."""
    generate = app.openapi
    refined: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = generate()
        if not refined or refined[0] is not schema:
            refine(app, schema)
            refined[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def refine(app: FastAPI, schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    paths = schema.get("paths", {})
    for route in routing.iter_route_contexts(app.routes):
        if not isinstance(route.original_route, routing.APIRoute):
            continue
        api_route: Any = route
        if not api_route.include_in_schema:
            continue
        for method in api_route.methods:
            operation = paths.get(api_route.path_format, {}).get(method.lower())
            if operation is not None:
                _document(operation, method, api_route.dependant, api_route.responses)
    for unused in ("HTTPValidationError", "ValidationError"):
        if not _referenced(schema, f"#/components/schemas/{unused}"):
            components["schemas"].pop(unused, None)


def _document(
    operation: dict[str, Any], method: str, dependant: Dependant, declared: dict[int | str, Any]
) -> None:
    statuses = set(_statuses(dependant))
    statuses.update(s for s in declared if isinstance(s, int) and s >= 400)
    if method not in _SAFE and _COOKIE in operation.get("security", []):
        statuses.add(403)  # a cookie without the CSRF header, or from another origin
    responses = operation.setdefault("responses", {})
    for status in sorted(statuses):
        answer = responses.setdefault(str(status), {})
        answer["description"] = answer.get("description") or _description(status)
        if answer["description"] == "Validation Error":
            answer["description"] = _description(status)
        answer["content"] = {PROBLEM_JSON: {"schema": {"$ref": _REF}}}
        if status in _HEADERS:
            answer["headers"] = _HEADERS[status]
    operation["responses"] = dict(sorted(responses.items()))
    if any(getattr(d.call, _GUESTS, False) for d in _walk(dependant)):
        security = operation.get("security", [])
        if {} not in security:
            operation["security"] = [{}, *security]


def _statuses(dependant: Dependant) -> Iterator[int]:
    has_body = False
    has_params = False
    for each in _walk(dependant):
        yield from getattr(each.call, _STATUSES, ())
        has_body = has_body or bool(each.body_params)
        has_params = has_params or bool(
            each.path_params or each.query_params or each.header_params or each.cookie_params
        )
        if each.path_params:
            yield 404
    if has_body:
        yield from (400, 413)
    if has_body or has_params:
        yield 422


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def _description(status: int) -> str:
    return _DESCRIPTIONS.get(status) or HTTPStatus(status).phrase


def _referenced(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_referenced(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_referenced(v, ref) for v in node)
    return False
