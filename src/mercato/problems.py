"""RFC 9457 problem+json answers with stable ``code`` values."""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable
from functools import lru_cache
from re import Pattern
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import FastAPI, Request, Response, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercato.db import is_unavailable

log = logging.getLogger("mercato.problems")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://mercato.dev/problems/"

# What every problem answer carries, as the OpenAPI document describes it (mercato.openapi).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": (
        "An error, as RFC 9457 problem details. `code` is stable and is what a client should "
        "act on; other members (`reason`, `retry_after`, `required_roles`…) are extensions "
        "that some codes add."
    ),
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri", "description": "Identifies the code"},
        "title": {"type": "string", "description": "A short summary of the kind of problem"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong this time, for people"},
        "instance": {
            "type": "string",
            "format": "uri-reference",
            "description": "The path the request was made to",
        },
        "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "examples": ["not_found"]},
        "errors": {
            "type": "array",
            "description": "On validation problems: each failing field, and why",
            "items": {
                "type": "object",
                "required": ["field", "message", "type"],
                "properties": {
                    "field": {"type": "string", "examples": ["lines.0.quantity"]},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}


class Problem(Exception):
    """An error a client should see: HTTP status, stable ``code``, human ``detail``, extras."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code.replace("_", " ").capitalize()
        self.headers = headers
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.code.replace("_", "-"),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


def not_found(what: str, ident: str | None = None) -> Problem:
    detail = f"{what} {ident!r} was not found" if ident else f"{what} was not found"
    return Problem(404, "not_found", detail, title="Not found")


def database_unavailable(retry_after: int = 5) -> Problem:
    return Problem(
        503,
        "database_unavailable",
        "The shop's database cannot be reached right now; please try again shortly",
        title="Service unavailable",
        headers={"Retry-After": str(retry_after)},
    )


def validation_problem(field: str, message: str, code: str = "validation_error") -> Problem:
    """A 422 naming one field, shaped like FastAPI's own validation errors after translation."""
    return Problem(
        422,
        code,
        f"{field}: {message}",
        title="Invalid request",
        errors=[{"field": field, "message": message, "type": code}],
    )


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    # A URI reference, as RFC 9457 wants it: the path as sent, percent-encoded.
    instance = quote(request.url.path, safe="/:@!$&'()*+,;=~") if request is not None else None
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def _translate_validation(exc: RequestValidationError) -> Problem:
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return Problem(
                400, "malformed_json", "The request body is not valid JSON", title="Malformed JSON"
            )
        errors.append(
            {
                "field": _field_name(err.get("loc", ())),
                "message": str(err.get("msg", "invalid")),
                "type": str(err.get("type", "invalid")),
            }
        )
    names = ", ".join(e["field"] for e in errors) or "request"
    return Problem(
        422, "validation_error", f"Invalid fields: {names}", title="Invalid request", errors=errors
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


PageRenderer = Callable[[Request, Problem], Response | Awaitable[Response]]
_page_renderer: PageRenderer | None = None


def set_page_renderer(renderer: PageRenderer | None) -> None:
    """Let the web pages answer their own errors as HTML (everything under ``/api`` stays
    problem+json): the web module registers one when it is loaded."""
    global _page_renderer
    _page_renderer = renderer


async def _respond(problem: Problem, request: Request) -> Response:
    if _page_renderer is not None and not request.url.path.startswith("/api"):
        answer = _page_renderer(request, problem)
        return await answer if inspect.isawaitable(answer) else answer
    return problem_response(problem, request)


@lru_cache(maxsize=1024)
def _path_regex(path: str) -> Pattern[str]:
    return compile_path(path)[0]


def _allowed_methods(request: Request) -> str:
    """The methods of the resource at this path. Starlette's 405 names only the first route
    whose path matched, while each of our routes handles one method. Where a literal path also
    fits a template (``/api/checkout/quote`` and ``/api/checkout/{checkout_id}``), the literal
    resource is the one meant."""
    by_params: dict[int, set[str]] = {}
    for route in routing.iter_route_contexts(request.app.routes):
        methods = getattr(route, "methods", None)
        if methods and route.path and _path_regex(route.path).match(request.url.path):
            by_params.setdefault(route.path.count("{"), set()).update(methods)
    return ", ".join(sorted(by_params[min(by_params)])) if by_params else ""


# A NUL escaped in JSON text: "\u0000" after an even number of backslashes.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def _nul_in(value: Any, path: str) -> str | None:
    """Where the first NUL is in a JSON value (``lines.0.sku``), or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if not isinstance(value, dict | list):
        return None
    items: Any = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        here = f"{path}.{key}" if path else str(key)
        if "\x00" in str(key):
            return here
        if (found := _nul_in(item, here)) is not None:
            return found
    return None


def _nul_in_json(body: bytes) -> str | None:
    if not _JSON_NUL.search(body):
        return None
    try:
        return _nul_in(json.loads(body), "") or "body"
    except ValueError:
        return "body"


def _nul_in_form(body: bytes) -> str | None:
    for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "") or "body"
    return None


class RefuseNul:
    """Refuse text with NUL characters anywhere in a request (path, query, JSON body) with a
    422 ``nul_character`` naming where: no text field holds one, and PostgreSQL cannot even
    compare one, so a lookup by such an id would otherwise fail with a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        field = "path" if "\x00" in scope["path"] else None
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True) if field is None else ():
            if "\x00" in name or "\x00" in value:
                field = name.replace("\x00", "") or "query"
                break
        messages: list[Message] = []
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        form = content_type.startswith(b"application/x-www-form-urlencoded")
        if field is None and (b"json" in content_type or form):
            body, more = b"", True
            try:
                while more:
                    message = await receive()
                    messages.append(message)
                    body += message.get("body", b"")
                    more = message["type"] == "http.request" and message.get("more_body", False)
            except StarletteHTTPException as exc:
                # The body cap (an outer middleware) stopped the body while it streamed in:
                # this runs before the app's handlers, so answer its problem here.
                code = _HTTP_CODES.get(exc.status_code, "http_error")
                detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
                response = await _respond(Problem(exc.status_code, code, detail), Request(scope))
                await response(scope, receive, send)
                return
            field = _nul_in_form(body) if form else _nul_in_json(body)
        if field is not None:
            why = "must not contain NUL characters"
            problem = Problem(
                422,
                "nul_character",
                f"{field}: {why}",
                title="Invalid request",
                errors=[{"field": field, "message": why, "type": "nul_character"}],
            )
            response = await _respond(problem, Request(scope))
            await response(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def install(app: FastAPI) -> None:
    """Route every error the app can raise into problem+json (or an HTML page, for pages)."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return await _respond(exc, request)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return await _respond(_translate_validation(exc), request)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No resource at {request.url.path}"
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return await _respond(Problem(exc.status_code, code, detail, headers=headers), request)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        problem = Problem(
            500, "internal_error", "An unexpected error occurred; it has been logged."
        )
        try:
            return await _respond(problem, request)
        except Exception:  # the error page itself failed: fall back to plain problem+json
            log.exception("the error page for %s failed", request.url.path)
            return problem_response(problem, request)

    async def on_maybe_unavailable(request: Request, exc: Exception) -> Response:
        if not is_unavailable(exc):
            raise exc  # a real bug: the 500 handler logs it
        runtime = getattr(request.app.state, "runtime", None)
        retry_after = getattr(getattr(runtime, "settings", None), "db_retry_after_seconds", 5)
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        problem = database_unavailable(retry_after)
        try:
            return await _respond(problem, request)
        except Exception:  # the error page needs the database too
            return problem_response(problem, request)

    async def on_redis_unreachable(request: Request, exc: Exception) -> Response:
        # A safety net: callers fall back to the database where they can; what reaches here
        # had no fallback, and is still an outage rather than a bug.
        log.warning("redis unavailable on %s %s: %s", request.method, request.url.path, exc)
        problem = Problem(
            503,
            "redis_unavailable",
            "A backing service cannot be reached right now; please try again shortly",
            title="Service unavailable",
            headers={"Retry-After": "5"},
        )
        return await _respond(problem, request)

    app.add_middleware(RefuseNul)
    app.add_exception_handler(RedisConnectionError, on_redis_unreachable)
    app.add_exception_handler(RedisTimeout, on_redis_unreachable)
    # Driver and pool errors that mean "the database cannot be reached" answer 503 with
    # Retry-After; the pool recycles its connections by itself once the server is back.
    for kind in (DBAPIError, PoolTimeout, OSError, TimeoutError):
        app.add_exception_handler(kind, on_maybe_unavailable)
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
