"""Two ASGI middlewares every answer passes through: a cap on request bodies and a set of
response headers. Plain ASGI (not ``BaseHTTPMiddleware``), so bodies stream through untouched."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercato.problems import Problem, problem_response


def _too_large(limit: int) -> str:
    return f"The request body is larger than this server accepts ({limit} bytes at most)"


class BodySizeLimit:
    """Refuse a request body over ``max_bytes`` with a 413 ``payload_too_large`` problem.

    A declared ``Content-Length`` over the cap is answered at once, before any route runs or a
    byte of the body is read. A body without one (chunked) is counted as it streams in: the
    chunk that passes the cap raises a 413 in whatever was reading it, so nothing ever holds
    more than the cap in memory.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            problem = Problem(413, "payload_too_large", _too_large(self.max_bytes))
            await problem_response(problem, Request(scope))(scope, receive, send)
            return

        received = 0
        limit = self.max_bytes

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException, so FastAPI's body reading passes it on as it is and
                    # the app's handler answers it as a problem (or an error page).
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counted, send)


class ResponseHeaders:
    """Add ``headers`` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                raw.extend(item for item in self.headers if item[0] not in present)
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, with_headers)
