"""Identity endpoints: register, log in, log out, who am I, and the account basics (change the
password, reset a forgotten one by e-mail, verify the e-mail address).

Login and registration answer with the token in the body (for API clients) and set the same
token as an HttpOnly cookie (for the shop's pages); either form works on every endpoint.
Accounts made here are always customers: staff and sellers are created by an operator.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from mercato.identity import service
from mercato.identity.deps import (
    CurrentUser,
    PresentedCredential,
    delete_session_cookie,
    set_session_cookie,
)
from mercato.identity.schemas import (
    AcceptedOut,
    AddressIn,
    AddressList,
    AddressOut,
    AddressPatch,
    AuthOut,
    LoginIn,
    PasswordChangeIn,
    PasswordResetIn,
    PasswordResetRequestIn,
    RegisterIn,
    UserOut,
    VerifyEmailIn,
)
from mercato.openapi import problems
from mercato.ratelimit import client_ip, limiter_for
from mercato.runtime import Runtime, RuntimeDep, UowDep

router = APIRouter(tags=["identity"])

RESET_ACCEPTED = "If an account has this address, a link to set a new password is on its way to it"


def _answer(runtime: Runtime, response: Response, signed_in: service.SignedIn) -> AuthOut:
    settings = runtime.settings
    session = signed_in.session
    set_session_cookie(
        response, session.token, settings.token_ttl_seconds, secure=settings.cookie_secure
    )
    return AuthOut(
        user=UserOut.of(signed_in.user), token=session.token, expires_at=session.expires_at
    )


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
    """Create a customer account, mail a link to verify its address, and sign it in
    (rate-limited per client IP)."""
    signed_in = await service.register(
        uow,
        limiter_for(runtime),
        runtime.settings,
        request,
        response,
        email=body.email,
        password=body.password,
        name=body.name,
    )
    return _answer(runtime, response, signed_in)


@router.post("/api/auth/login", response_model=AuthOut, responses=problems(401, 429))
async def login(
    body: LoginIn,
    request: Request,
    response: Response,
    uow: UowDep,
    runtime: RuntimeDep,
) -> AuthOut:
    """Exchange e-mail and password for a token. Failed attempts are limited per client IP,
    per account and IP, and per account (see the operations guide)."""
    signed_in = await service.log_in(
        uow,
        limiter_for(runtime),
        runtime.settings,
        request,
        response,
        email=body.email,
        password=body.password,
    )
    return _answer(runtime, response, signed_in)


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


@router.post(
    "/api/auth/password", status_code=204, response_class=Response, responses=problems(429)
)
async def change_password(
    body: PasswordChangeIn,
    user: CurrentUser,
    credential: PresentedCredential,
    uow: UowDep,
    runtime: RuntimeDep,
) -> None:
    """Set a new password, proving the current one. Every other session of the user is
    signed out; this one stays (rate-limited per user)."""
    assert credential is not None  # CurrentUser has already insisted on one
    await service.change_password(
        uow,
        limiter_for(runtime),
        runtime.settings,
        user.id,
        current_password=body.current_password,
        new_password=body.new_password,
        keep_token=credential.token,
    )


@router.post(
    "/api/auth/password-reset",
    status_code=202,
    response_model=AcceptedOut,
    responses=problems(429),
)
async def request_password_reset(
    body: PasswordResetRequestIn, request: Request, uow: UowDep, runtime: RuntimeDep
) -> AcceptedOut:
    """Mail a single-use link to set a new password. The answer is the same whether or not
    an account has the address (rate-limited per client IP and per address)."""
    await service.request_password_reset(
        uow, limiter_for(runtime), runtime.settings, email=body.email, ip=client_ip(request)
    )
    return AcceptedOut(message=RESET_ACCEPTED)


@router.post(
    "/api/auth/password-reset/confirm",
    status_code=204,
    response_class=Response,
    responses=problems(400, 429),
)
async def reset_password(
    body: PasswordResetIn,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    response: Response,
) -> None:
    """Set a new password with the token of a reset link; every session of the user is
    signed out (rate-limited per client IP)."""
    await service.reset_password(
        uow,
        limiter_for(runtime),
        runtime.settings,
        token=body.token,
        new_password=body.password,
        ip=client_ip(request),
    )
    delete_session_cookie(response, secure=runtime.settings.cookie_secure)


@router.post(
    "/api/auth/verify-email",
    status_code=204,
    response_class=Response,
    responses=problems(400, 429),
)
async def verify_email(
    body: VerifyEmailIn, request: Request, uow: UowDep, runtime: RuntimeDep
) -> None:
    """Mark the address as verified with the token of a verification link (rate-limited per
    client IP)."""
    await service.verify_email(
        uow, limiter_for(runtime), runtime.settings, token=body.token, ip=client_ip(request)
    )


@router.post(
    "/api/auth/verify-email/resend",
    status_code=202,
    response_model=AcceptedOut,
    responses=problems(409, 429),
)
async def resend_verification(user: CurrentUser, uow: UowDep, runtime: RuntimeDep) -> AcceptedOut:
    """Mail a new verification link to the user's address (409 when it is verified already;
    rate-limited per user)."""
    await service.resend_verification(uow, limiter_for(runtime), runtime.settings, user.id)
    return AcceptedOut(message=f"A verification link is on its way to {user.email}")


# --------------------------------------------------------------------------------------------
# The address book


@router.get("/api/me/addresses", response_model=AddressList)
async def list_addresses(user: CurrentUser, uow: UowDep) -> AddressList:
    """The caller's saved addresses, the default first."""
    found = await service.list_addresses(uow, user.id)
    return AddressList(items=[AddressOut.of(a) for a in found])


@router.post(
    "/api/me/addresses", status_code=201, response_model=AddressOut, responses=problems(409)
)
async def add_address(body: AddressIn, user: CurrentUser, uow: UowDep) -> AddressOut:
    """Save an address (its country must be one the shop delivers to: 422
    ``country_not_served`` naming them). The first one, or one sent with ``is_default``,
    becomes the default; 409 ``address_limit`` when the book is full."""
    found = await service.add_address(uow, user.id, body.fields(), make_default=body.is_default)
    return AddressOut.of(found)


@router.patch("/api/me/addresses/{address_id}", response_model=AddressOut)
async def update_address(
    address_id: str, body: AddressPatch, user: CurrentUser, uow: UowDep
) -> AddressOut:
    """Change an address, or make it the default (``{"is_default": true}``)."""
    found = await service.update_address(
        uow, user.id, address_id, body.changes(), make_default=body.is_default
    )
    return AddressOut.of(found)


@router.delete("/api/me/addresses/{address_id}", status_code=204, response_class=Response)
async def delete_address(address_id: str, user: CurrentUser, uow: UowDep) -> None:
    """Forget an address; when it was the default, the newest left becomes the default."""
    await service.delete_address(uow, user.id, address_id)
