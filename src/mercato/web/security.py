"""CSRF protection for every form and htmx request, safe redirect targets, and the security
headers of every answer.

Double-submit with a signature: the browser holds a random value in the HttpOnly cookie
``mercato_csrf``; each page puts that value and a digest of the browser's session cookie, signed
with the shop's secret key, in its forms (``<input name="csrf_token">``) and in the
``X-CSRF-Token`` header htmx sends (see :mod:`mercato.identity.deps`, whose cookie-signed API
calls accept the same header). A POST is accepted only when the token's signature is good and it
signs the cookies the browser sent, and when its ``Origin``, if any, is this shop. Another site
can make the browser send the cookies, but cannot read a page to learn the token; the signature
stops a cookie planted from a sibling domain, and the session digest a token learnt before
logging in (logging in and out also forgets the CSRF cookie). The session cookie is also
``SameSite=Lax``.

The headers (:data:`SECURITY_HEADERS`) hold a Content-Security-Policy the pages satisfy: scripts
and styles only from the shop's own ``/static`` files (no inline script, no ``style``
attribute), no framing, forms posting only to the shop.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from mercato.identity.deps import (
    COOKIE_NAME,
    CSRF_COOKIE,
    CSRF_HEADER,
    csrf_token_valid,
    make_csrf_token,
    request_origin,
)
from mercato.problems import Problem
from mercato.runtime import RuntimeDep

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "CSRF_HEADER", "SECURITY_HEADERS"]

CSRF_FIELD = "csrf_token"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # Product pictures may live on any HTTPS host; the star ratings are a data: SVG mask.
        "img-src 'self' https: data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": with it a browser sends ``Origin: null`` even on same-origin posts.
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


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
    return make_csrf_token(secret_key, browser_secret(request), request.cookies.get(COOKIE_NAME))


def csrf_failed() -> Problem:
    return Problem(
        403,
        "csrf_failed",
        "The form has expired or did not come from this shop; reload the page and try again",
        title="Form expired",
    )


async def check_csrf(request: Request, runtime: RuntimeDep) -> None:
    """Dependency for every state-changing page route."""
    settings = runtime.settings
    if request_origin(request, settings.public_url) == "foreign":
        raise csrf_failed()
    token = request.headers.get(CSRF_HEADER)
    if not token:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
    if not csrf_token_valid(token, request, settings.secret_key):
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
