"""Identity endpoints: register, log in, log out, and who am I.

Login and registration answer with the token in the body (for API clients) and set the same
token as an HttpOnly cookie (for the shop's pages); either form works on every endpoint.
Accounts made here are always customers: staff and sellers are created by an operator.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from mercato.db import UnitOfWork
from mercato.identity import service
from mercato.identity.deps import (
    CurrentUser,
    PresentedCredential,
    delete_session_cookie,
    set_session_cookie,
)
from mercato.identity.schemas import AuthOut, LoginIn, RegisterIn, UserOut
from mercato.identity.service import UserInfo
from mercato.openapi import problems
from mercato.ratelimit import limiter_for
from mercato.runtime import Runtime, RuntimeDep, UowDep

router = APIRouter(tags=["identity"])


def client_ip(request: Request) -> str:
    # The socket peer: behind a proxy, run uvicorn with --proxy-headers and a trusted
    # --forwarded-allow-ips so this is the real client. Reading X-Forwarded-For here instead
    # would let any client choose its own rate-limit bucket.
    return request.client.host if request.client else "unknown"


async def _sign_in(
    uow: UnitOfWork,
    runtime: Runtime,
    request: Request,
    response: Response,
    user: UserInfo,
) -> AuthOut:
    ttl = runtime.settings.token_ttl_seconds
    issued = await service.start_session(
        uow,
        user.id,
        ttl,
        user_agent=request.headers.get("user-agent"),
        ip=client_ip(request),
    )
    await service.run_login_hooks(uow, request, response, user)
    set_session_cookie(response, issued.token, ttl, secure=runtime.settings.cookie_secure)
    return AuthOut(user=UserOut.of(user), token=issued.token, expires_at=issued.expires_at)


@router.post(
    "/api/auth/register", status_code=201, response_model=AuthOut, responses=problems(409, 429)
)
async def register(
    body: RegisterIn,
    request: Request,
    response: Response,
    uow: UowDep,
    runtime: RuntimeDep,
) -> AuthOut:
    """Create a customer account and sign it in."""
    user = await service.create_user(
        uow, email=body.email, password=body.password, role="customer", name=body.name
    )
    return await _sign_in(uow, runtime, request, response, user)


@router.post("/api/auth/login", response_model=AuthOut, responses=problems(401, 429))
async def login(
    body: LoginIn,
    request: Request,
    response: Response,
    uow: UowDep,
    runtime: RuntimeDep,
) -> AuthOut:
    """Exchange e-mail and password for a token (rate-limited per IP and per account)."""
    settings = runtime.settings
    await service.enforce_login_rate(
        limiter_for(runtime),
        ip=client_ip(request),
        email=body.email,
        capacity=settings.login_rate_capacity,
        refill_per_second=settings.login_rate_refill_per_second,
    )
    user = await service.authenticate_credentials(uow, body.email, body.password)
    if user is None:
        raise service.invalid_credentials()
    return await _sign_in(uow, runtime, request, response, user)


@router.post("/api/auth/logout", status_code=204, response_class=Response)
async def logout(
    user: CurrentUser,
    credential: PresentedCredential,
    uow: UowDep,
    runtime: RuntimeDep,
    response: Response,
) -> None:
    """Revoke the token this request was made with and clear the cookie."""
    assert credential is not None  # CurrentUser has already insisted on one
    await service.revoke_token(uow, credential.token)
    delete_session_cookie(response, secure=runtime.settings.cookie_secure)


@router.post("/api/auth/logout-all", status_code=204, response_class=Response)
async def logout_all(
    user: CurrentUser, uow: UowDep, runtime: RuntimeDep, response: Response
) -> None:
    """Revoke every token of the current user (sign out on all devices)."""
    await service.revoke_user_tokens(uow, user.id)
    delete_session_cookie(response, secure=runtime.settings.cookie_secure)


@router.get("/api/me", response_model=UserOut)
async def me(user: CurrentUser) -> UserOut:
    return UserOut.of(user)
