"""FastAPI dependencies that say who is calling and whether they may.

A token arrives either as ``Authorization: Bearer`` (API clients) or as the HttpOnly cookie
``mercato_session`` (the shop's own pages, so that page scripts never see the token); the header
wins when both are sent. Rejections are 401 ``unauthorized`` problems that carry a ``reason``
(missing, invalid, expired, revoked) and the RFC 6750 ``WWW-Authenticate`` header; a rejected
cookie is also cleared, so the browser stops sending it.

:data:`OptionalUser` treats a stale *cookie* as "signed out" rather than an error: a shopper
whose uow expired must still be able to browse and fill a guest cart. A bad *bearer* token
is always an error, because the client explicitly claimed an identity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from mercato.identity import service
from mercato.identity.models import ROLES
from mercato.identity.service import TokenStatus, UserInfo
from mercato.openapi import guest_allowed, raises
from mercato.problems import Problem
from mercato.runtime import RuntimeDep, UowDep

COOKIE_NAME = "mercato_session"

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


async def presented_credential(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Credential | None:
    if bearer is not None and bearer.credentials:
        return Credential(bearer.credentials, "bearer")
    if cookie:
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


def delete_session_cookie(response: Response, *, secure: bool = False) -> None:
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=secure)


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
    inside a request-long one (on SQLite it would hold the write lock the steps wait for)."""
    if credential is None:
        raise unauthorized("missing", None)
    async with runtime.db.transaction() as uow:
        check = await service.check_token(uow, credential.token)
    if check.user is None:
        raise unauthorized(check.status, credential, secure_cookie=runtime.settings.cookie_secure)
    return check.user


@raises(403)
async def workflow_staff(user: Annotated[UserInfo, Depends(workflow_user)]) -> UserInfo:
    return _with_role(user, frozenset({"staff"}))


CurrentUser = Annotated[UserInfo, Depends(current_user)]
WorkflowUser = Annotated[UserInfo, Depends(workflow_user)]
WorkflowStaff = Annotated[UserInfo, Depends(workflow_staff)]
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


StaffUser = Annotated[UserInfo, Depends(require_role("staff"))]
SellerUser = Annotated[UserInfo, Depends(require_role("seller"))]
