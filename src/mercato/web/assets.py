"""Static files (CSS, JavaScript, images) served by the app itself, so one ``pip install`` is the
whole shop. URLs carry a content hash (``/static/css/base.css?v=1a2b3c4d``): such a URL never
changes meaning, so browsers may keep it for a year; without the hash, they revalidate."""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(str(resources.files("mercato.web") / "static"))
LONG_CACHE = "public, max-age=31536000, immutable"
REVALIDATE = "public, max-age=0, must-revalidate"


class CachedStaticFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            versioned = b"v=" in scope.get("query_string", b"")
            response.headers["Cache-Control"] = LONG_CACHE if versioned else REVALIDATE
        return response


def static_app() -> StaticFiles:
    return CachedStaticFiles(directory=STATIC_DIR)


@functools.lru_cache(maxsize=256)
def static_url(path: str) -> str:
    """``/static/<path>?v=<hash of the file>`` (the bare path when the file does not exist)."""
    file = STATIC_DIR / path
    try:
        digest = hashlib.sha256(file.read_bytes()).hexdigest()[:10]
    except OSError:
        return f"/static/{path}"
    return f"/static/{path}?v={digest}"
