"""FastAPI dependencies that say who is calling and whether they may.

A token arrives either as ``Authorization: Bearer`` (API clients) or as the HttpOnly cookie
``mercato_session`` (the shop's own pages, so that page scripts never see the token); the header
wins when both are sent. Rejections are 401 ``unauthorized`` problems that carry a ``reason``
(missing, invalid, expired, revoked) and the RFC 6750 ``WWW-Authenticate`` header; a rejected
cookie is also cleared, so the browser stops sending it.

:data:`OptionalUser` treats a stale *cookie* as "signed out" rather than an error: a shopper
whose uow expired must still be able to browse and fill a guest cart. A bad *bearer* token
is always an error, because the client explicitly claimed an identity.

A browser sends the cookie with every request to the shop, whoever's page made it, so an unsafe
request (POST, PUT, PATCH, DELETE) signed in by the *cookie* must also show that it came from
the shop's own pages: a same-origin ``Origin`` (or ``Sec-Fetch-Site: same-origin``) or the pages'
CSRF token in ``X-CSRF-Token``; a foreign ``Origin`` is refused whatever else it carries (403
``csrf_failed``). Bearer tokens are never sent by a browser on its own, so they need neither.

The CSRF token is the browser's random ``mercato_csrf`` cookie and a digest of its session
cookie, signed with the shop's secret key: a token learnt in one browser, or before logging in,
is worthless in another session. Setting or clearing the session cookie forgets the CSRF cookie,
so the next page makes a new one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, URLSafeSerializer

from mercato.identity import service
from mercato.identity.destinations import Destination, resolve_destination
from mercato.identity.models import ROLES
from mercato.identity.service import TokenStatus, UserInfo
from mercato.openapi import guest_allowed, raises
from mercato.problems import Problem
from mercato.runtime import Runtime, RuntimeDep, UowDep

COOKIE_NAME = "mercato_session"
CSRF_COOKIE = "mercato_csrf"
CSRF_HEADER = "X-CSRF-Token"
_CSRF_SALT = "mercato.web.csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_bearer = HTTPBearer(auto_error=False, description="A token from /api/auth/login")
_cookie = APIKeyCookie(
    name=COOKIE_NAME, auto_error=False, description="The same token as an HttpOnly cookie"
)

_DETAILS = {
    "missing": "Authentication is required: send a Bearer token or the uow cookie",
    TokenStatus.INVALID: "The token is not valid",
    TokenStatus.EXPIRED: "The token has expired; log in again",
    TokenStatus.REVOKED: "The token has been revoked; log in again",
}


@dataclass(frozen=True, slots=True)
class Credential:
    token: str
    source: Literal["bearer", "cookie"]


# --------------------------------------------------------------------------------------------
# Requests signed in by the cookie: did they come from the shop's own pages?


def _default_port(netloc: str, scheme: str) -> str:
    suffix = {"http": ":80", "https": ":443"}.get(scheme, "")
    return netloc[: -len(suffix)] if suffix and netloc.endswith(suffix) else netloc


def _same_origin(origin: str, request: Request, public_url: str) -> bool:
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (sandboxed frames, some redirects) or garbage
    netloc = _default_port(parts.netloc.lower(), parts.scheme)
    # The host this request was sent to (the scheme may differ behind a TLS-ending proxy) or
    # the shop's configured public address.
    host = _default_port(request.headers.get("host", "").lower(), request.url.scheme)
    public = urlsplit(public_url)
    return (netloc == host) or (
        parts.scheme == public.scheme
        and netloc == _default_port(public.netloc.lower(), public.scheme)
    )


def request_origin(request: Request, public_url: str) -> Literal["same", "foreign", "unknown"]:
    """Where a request says it comes from: ``Origin`` (sent by browsers on every unsafe
    request), else ``Sec-Fetch-Site``; ``unknown`` when it says nothing (a non-browser client)."""
    origin = request.headers.get("origin")
    if origin is not None:
        return "same" if _same_origin(origin, request, public_url) else "foreign"
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return "same" if site == "same-origin" else "foreign"
    return "unknown"


def _csrf_serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=_CSRF_SALT)


def _session_digest(session_token: str | None) -> str:
    if not session_token:
        return ""
    return hashlib.sha256(session_token.encode()).hexdigest()[:32]


def make_csrf_token(secret_key: str, browser_secret: str, session_token: str | None) -> str:
    """The token a page embeds: the browser's CSRF cookie and its session, signed."""
    signed = _csrf_serializer(secret_key).dumps([browser_secret, _session_digest(session_token)])
    return str(signed)


def csrf_token_valid(token: str | None, request: Request, secret_key: str) -> bool:
    """True when ``token`` signs this request's CSRF cookie and session cookie."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not token or not cookie:
        return False
    try:
        signed = _csrf_serializer(secret_key).loads(token)
    except BadSignature:
        return False
    if not (isinstance(signed, list) and len(signed) == 2):
        return False
    browser, session = signed
    if not isinstance(browser, str) or not isinstance(session, str):
        return False
    expected = _session_digest(request.cookies.get(COOKIE_NAME))
    return hmac.compare_digest(browser, cookie) and hmac.compare_digest(session, expected)


def cross_site_refused() -> Problem:
    return Problem(
        403,
        "csrf_failed",
        "A change signed in by the session cookie must come from this shop's pages: send the "
        f"{CSRF_HEADER} header of a page, or authenticate with a bearer token",
        title="Cross-site request refused",
    )


def check_cookie_request(request: Request, secret_key: str, public_url: str) -> None:
    """Refuse an unsafe request signed in by the cookie unless it came from the shop's pages."""
    if request.method in SAFE_METHODS:
        return
    where = request_origin(request, public_url)
    if where == "foreign":
        raise cross_site_refused()
    if where == "same" or csrf_token_valid(request.headers.get(CSRF_HEADER), request, secret_key):
        return
    raise cross_site_refused()


async def presented_credential(
    request: Request,
    runtime: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Credential | None:
    if bearer is not None and bearer.credentials:
        return Credential(bearer.credentials, "bearer")
    if cookie:
        settings = runtime.settings
        check_cookie_request(request, settings.secret_key, settings.public_url)
        return Credential(cookie, "cookie")
    return None


PresentedCredential = Annotated[Credential | None, Depends(presented_credential)]


def clear_cookie_header(secure: bool = False) -> str:
    """A ``Set-Cookie`` value that deletes the uow cookie (for problem responses)."""
    response = Response()
    delete_session_cookie(response, secure=secure)
    return response.headers["set-cookie"]


def set_session_cookie(response: Response, token: str, max_age: int, *, secure: bool) -> None:
    # SameSite=Lax keeps the cookie off cross-site POSTs (the CSRF vector) while normal links
    # into the shop still arrive signed in.
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )
    forget_csrf_cookie(response, secure=secure)


def delete_session_cookie(response: Response, *, secure: bool = False) -> None:
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=secure)
    forget_csrf_cookie(response, secure=secure)


def forget_csrf_cookie(response: Response, *, secure: bool = False) -> None:
    """A new session gets a new CSRF secret: one planted or seen before it is worth nothing."""
    response.delete_cookie(CSRF_COOKIE, path="/", httponly=True, samesite="lax", secure=secure)


def unauthorized(
    reason: TokenStatus | Literal["missing"],
    credential: Credential | None,
    *,
    secure_cookie: bool = False,
) -> Problem:
    challenge = "Bearer" if reason == "missing" else 'Bearer error="invalid_token"'
    headers = {"WWW-Authenticate": challenge}
    if credential is not None and credential.source == "cookie":
        headers["Set-Cookie"] = clear_cookie_header(secure_cookie)
    return Problem(
        401,
        "unauthorized",
        _DETAILS[reason],
        title="Unauthorized",
        headers=headers,
        reason=str(reason),
    )


@raises(401)
async def current_user(
    uow: UowDep, runtime: RuntimeDep, credential: PresentedCredential
) -> UserInfo:
    if credential is None:
        raise unauthorized("missing", None)
    check = await service.check_token(uow, credential.token)
    if check.user is None:
        raise unauthorized(check.status, credential, secure_cookie=runtime.settings.cookie_secure)
    return check.user


@guest_allowed
@raises(401)  # a bad bearer token: the client claimed an identity
async def optional_user(
    uow: UowDep, runtime: RuntimeDep, credential: PresentedCredential, response: Response
) -> UserInfo | None:
    if credential is None:
        return None
    check = await service.check_token(uow, credential.token)
    if check.user is not None:
        return check.user
    secure = runtime.settings.cookie_secure
    if credential.source == "cookie":
        delete_session_cookie(response, secure=secure)
        return None
    raise unauthorized(check.status, credential, secure_cookie=secure)


@raises(401)
async def workflow_user(runtime: RuntimeDep, credential: PresentedCredential) -> UserInfo:
    """The signed-in caller, checked in a short transaction of its own, for endpoints that
    start a workflow: those run their steps in transactions of their own and must not sit
    inside a request-long one (on SQLite it would hold the write lock the steps wait for).
    A token this process checked lately is not checked again for ``auth_cache_seconds`` (see
    ``service.SignInCache``): a crowd polling a flash sale would otherwise queue for the pool."""
    if credential is None:
        raise unauthorized("missing", None)
    check = await service.sign_in_cache_for(runtime).check(runtime.db, credential.token)
    if check.user is None:
        raise unauthorized(check.status, credential, secure_cookie=runtime.settings.cookie_secure)
    return check.user


@raises(403)
async def workflow_staff(user: Annotated[UserInfo, Depends(workflow_user)]) -> UserInfo:
    return _with_role(user, frozenset({"staff"}))


@raises(403)
async def workflow_seller_or_staff(
    user: Annotated[UserInfo, Depends(workflow_user)],
) -> UserInfo:
    return _with_role(user, frozenset({"seller", "staff"}))


CurrentUser = Annotated[UserInfo, Depends(current_user)]
WorkflowUser = Annotated[UserInfo, Depends(workflow_user)]
WorkflowStaff = Annotated[UserInfo, Depends(workflow_staff)]
WorkflowSellerOrStaff = Annotated[UserInfo, Depends(workflow_seller_or_staff)]
OptionalUser = Annotated[UserInfo | None, Depends(optional_user)]


def require_role(*roles: str) -> Callable[[UserInfo], Awaitable[UserInfo]]:
    """A dependency admitting only signed-in users with one of ``roles`` (403 otherwise).

    Use as ``Annotated[UserInfo, Depends(require_role("staff", "seller"))]`` or in a router's
    ``dependencies=[...]``.
    """
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"require_role needs roles among {ROLES}; got {roles!r}")
    allowed = frozenset(roles)

    @raises(403)
    async def role_checked_user(user: CurrentUser) -> UserInfo:
        return _with_role(user, allowed)

    return role_checked_user


def _with_role(user: UserInfo, allowed: frozenset[str]) -> UserInfo:
    if user.role not in allowed:
        needed = " or ".join(sorted(allowed))
        raise Problem(
            403,
            "forbidden",
            f"This needs the {needed} role",
            title="Forbidden",
            required_roles=sorted(allowed),
        )
    return user


# --------------------------------------------------------------------------------------------
# Where the caller's goods would go


CountryParam = Annotated[
    str | None,
    Query(
        pattern="^[A-Za-z]{2}$",
        description="Deliver to this ISO 3166-1 alpha-2 country; by default the signed-in "
        "customer's default address, else the shop's default country",
    ),
]


@guest_allowed
async def api_destination(
    uow: UowDep, runtime: RuntimeDep, user: OptionalUser, country: CountryParam = None
) -> Destination:
    return await resolve_destination(
        uow,
        chosen=country,
        user_id=user.id if user is not None else None,
        shop_default=runtime.settings.default_country,
    )


ApiDestination = Annotated[Destination, Depends(api_destination)]


@guest_allowed
@raises(401)  # a bad bearer token: the client claimed an identity
async def brief_api_destination(
    runtime: RuntimeDep,
    credential: PresentedCredential,
    response: Response,
    country: CountryParam = None,
) -> Destination:
    """:data:`ApiDestination` resolved in a short transaction of its own, for endpoints that
    hold none while they work (a search reads its synonyms and warehouses in short reads of
    its own, which on SQLite would wait for a request-long transaction's write lock)."""
    return (await _brief_shopper(runtime, credential, response, country)).destination


BriefApiDestination = Annotated[Destination, Depends(brief_api_destination)]


@dataclass(frozen=True, slots=True)
class Shopper:
    """Who is asking (None: a guest) and where their goods would go."""

    user: UserInfo | None
    destination: Destination


@guest_allowed
@raises(401)  # a bad bearer token: the client claimed an identity
async def brief_api_shopper(
    runtime: RuntimeDep,
    credential: PresentedCredential,
    response: Response,
    country: CountryParam = None,
) -> Shopper:
    """:data:`BriefApiDestination` with the signed-in user it was resolved for, in the same
    short transaction, for endpoints that hold none and answer a customer in their own way."""
    return await _brief_shopper(runtime, credential, response, country)


async def _brief_shopper(
    runtime: Runtime, credential: Credential | None, response: Response, country: str | None
) -> Shopper:
    async with runtime.db.transaction() as uow:
        user = await optional_user(uow, runtime, credential, response)
        destination = await resolve_destination(
            uow,
            chosen=country,
            user_id=user.id if user is not None else None,
            shop_default=runtime.settings.default_country,
        )
    return Shopper(user, destination)


BriefApiShopper = Annotated[Shopper, Depends(brief_api_shopper)]

StaffUser = Annotated[UserInfo, Depends(require_role("staff"))]
SellerUser = Annotated[UserInfo, Depends(require_role("seller"))]
