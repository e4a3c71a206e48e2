"""CSRF protection for every form and htmx request, and safe redirect targets.

Double-submit with a signature: the browser holds a random value in the HttpOnly cookie
``mercato_csrf``; each page puts that value, signed with the shop's secret key, in its forms
(``<input name="csrf_token">``) and in the ``X-CSRF-Token`` header htmx sends. A POST is accepted
only when the token's signature is good and it signs the cookie the browser sent. Another site
can make the browser send the cookie, but cannot read a page to learn the token; the signature
stops a cookie planted from a sibling domain. The session cookie is also ``SameSite=Lax``.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeSerializer

from mercato.problems import Problem
from mercato.runtime import RuntimeDep

CSRF_COOKIE = "mercato_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SALT = "mercato.web.csrf"


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=_SALT)


def browser_secret(request: Request) -> str:
    """The browser's CSRF cookie value, made up (and remembered for this request) when it has
    none yet; :func:`mercato.web.templating.render` sets the cookie on the response."""
    existing: str | None = getattr(request.state, "csrf_secret", None)
    if existing:
        return existing
    value = request.cookies.get(CSRF_COOKIE) or ""
    if len(value) < 20 or len(value) > 100:
        value = secrets.token_urlsafe(24)
        request.state.csrf_new = True
    request.state.csrf_secret = value
    return value


def csrf_token(request: Request, secret_key: str) -> str:
    return str(_serializer(secret_key).dumps(browser_secret(request)))


def csrf_failed() -> Problem:
    return Problem(
        403,
        "csrf_failed",
        "The form has expired or did not come from this shop; reload the page and try again",
        title="Form expired",
    )


async def check_csrf(request: Request, runtime: RuntimeDep) -> None:
    """Dependency for every state-changing page route."""
    token = request.headers.get(CSRF_HEADER)
    if not token:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
    cookie = request.cookies.get(CSRF_COOKIE)
    if not token or not cookie:
        raise csrf_failed()
    try:
        signed = _serializer(runtime.settings.secret_key).loads(token)
    except BadSignature:
        raise csrf_failed() from None
    if not isinstance(signed, str) or not hmac.compare_digest(signed, cookie):
        raise csrf_failed()


CsrfChecked = Depends(check_csrf)
"""Use as ``dependencies=[CsrfChecked]`` on a POST page route."""

CsrfDep = Annotated[None, CsrfChecked]


def safe_next(target: str | None, default: str = "/") -> str:
    """A redirect target from a ``next`` parameter, kept on this site: a path starting with one
    ``/``, no scheme, no host, no backslash tricks (no open redirects after login)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
