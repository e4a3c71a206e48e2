"""The shopper's account: register, log in, log out, order history, and one order's page with
its timeline, shipments and tracking numbers, cancelling, and asking for a return.

Logging in does what ``POST /api/auth/login`` does: the same rate limit per address and per
account, the same HttpOnly session cookie, and the same login hooks (the guest cart merges into
the customer's). A ``next`` target is only followed when it stays on this site."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mercato.db import UnitOfWork
from mercato.identity import service as identity
from mercato.identity.deps import COOKIE_NAME, delete_session_cookie, set_session_cookie
from mercato.identity.service import UserInfo
from mercato.orders import service as orders
from mercato.problems import Problem, not_found
from mercato.ratelimit import limiter_for
from mercato.returns import service as returns
from mercato.runtime import Runtime, RuntimeDep, UowDep
from mercato.text import check_plain, plain_errors
from mercato.web.deps import PageUser, SignedInUser
from mercato.web.security import CsrfChecked, safe_next
from mercato.web.shop.common import (
    BriefSignedIn,
    BriefUser,
    country_name,
    form_of,
    text_field,
)
from mercato.web.templating import field_errors, flash, redirect, render

router = APIRouter(prefix="/account")

ORDERS_PER_PAGE = 10
STATUS_LABELS: dict[str, str] = {
    "paid": "Paid: we are preparing your order",
    "fulfilling": "Being packed",
    "shipped": "On its way",
    "delivered": "Delivered",
    "cancelled": "Cancelled",
    "return_requested": "Return requested",
    "returned": "Returned",
    "refunded": "Refunded",
}
RETURN_STATUS_LABELS: dict[str, str] = {
    "requested": "Requested: waiting for approval",
    "approved": "Approved: send the items back",
    "rejected": "Rejected",
    "received": "Received",
    "refunded": "Refunded",
}
RETURN_REASONS = (
    "Changed my mind",
    "Does not fit",
    "Not as described",
    "Arrived damaged",
    "Wrong item sent",
    "Other",
)


def client_ip(request: Request) -> str:
    # The socket peer, as the login API uses (see mercato.identity.api.client_ip).
    return request.client.host if request.client else "unknown"


async def _sign_in(
    uow: UnitOfWork, runtime: Runtime, request: Request, response: Response, user: UserInfo
) -> None:
    ttl = runtime.settings.token_ttl_seconds
    issued = await identity.start_session(
        uow, user.id, ttl, user_agent=request.headers.get("user-agent"), ip=client_ip(request)
    )
    await identity.run_login_hooks(uow, request, response, user)
    set_session_cookie(response, issued.token, ttl, secure=runtime.settings.cookie_secure)


# --------------------------------------------------------------------------------------------
# Log in, register, log out


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, user: PageUser, next: str | None = None) -> Response:
    target = safe_next(next)
    if user is not None:
        return redirect(target)
    return render(
        request, "shop/login.html", {"next": target, "email": "", "errors": {}, "message": None}
    )


@router.post("/login", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def login(request: Request, runtime: RuntimeDep, user: BriefUser) -> Response:
    form = await form_of(request)
    email = text_field(form, "email", 320)
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    target = safe_next(text_field(form, "next", 2000))
    errors: dict[str, str] = {}
    if not email:
        errors["email"] = "Enter your e-mail address."
    if not password:
        errors["password"] = "Enter your password."  # noqa: S105  (a message, not a secret)
    context: dict[str, Any] = {"next": target, "email": email, "errors": errors, "message": None}
    if errors:
        return render(request, "shop/login.html", context, status_code=422)
    settings = runtime.settings
    response = redirect(target)
    try:
        await identity.enforce_login_rate(
            limiter_for(runtime),
            ip=client_ip(request),
            email=email,
            capacity=settings.login_rate_capacity,
            refill_per_second=settings.login_rate_refill_per_second,
        )
        async with runtime.db.transaction() as uow:
            found = await identity.authenticate_credentials(uow, email, password[:1024])
            if found is None:
                raise identity.invalid_credentials()
            await _sign_in(uow, runtime, request, response, found)
    except Problem as exc:
        if exc.code == "rate_limited":
            context["message"] = "Too many attempts. Please wait a minute and try again."
            return render(request, "shop/login.html", context, status_code=429, headers=exc.headers)
        context["message"] = "The e-mail address or password is incorrect."
        return render(request, "shop/login.html", context, status_code=422)
    flash(request, response, f"Welcome back, {found.name}.", "success")
    return response


@router.get("/register", response_class=HTMLResponse)
async def register_page(request: Request, user: PageUser, next: str | None = None) -> Response:
    target = safe_next(next)
    if user is not None:
        return redirect(target)
    return render(
        request,
        "shop/register.html",
        {"next": target, "values": {}, "errors": {}, "min_password": identity.PASSWORD_MIN_LENGTH},
    )


@router.post("/register", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def register(request: Request, runtime: RuntimeDep, user: BriefUser) -> Response:
    form = await form_of(request)
    values = {"name": text_field(form, "name", 200), "email": text_field(form, "email", 320)}
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    target = safe_next(text_field(form, "next", 2000))
    response = redirect(target)
    errors: dict[str, str] = {}
    try:
        check_plain("name", values["name"])
        async with runtime.db.transaction() as uow:
            created = await identity.create_user(
                uow,
                email=values["email"],
                password=password[: identity.PASSWORD_MAX_LENGTH + 1],
                role="customer",
                name=values["name"],
            )
            await _sign_in(uow, runtime, request, response, created)
    except Problem as exc:
        if exc.code == "email_taken":
            errors["email"] = "An account with this e-mail address exists already: log in."
        else:
            errors = {
                k: f"This {k.replace('_', ' ')} {v}."
                for k, v in field_errors(exc, short_names=True, default="invalid").items()
            }
            if not errors:
                errors["email"] = exc.detail
        return render(
            request,
            "shop/register.html",
            {
                "next": target,
                "values": values,
                "errors": errors,
                "min_password": identity.PASSWORD_MIN_LENGTH,
            },
            status_code=422,
        )
    flash(request, response, f"Welcome, {created.name}: your account is ready.", "success")
    return response


@router.post("/logout", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def logout(request: Request, runtime: RuntimeDep) -> Response:
    token = request.cookies.get(COOKIE_NAME)
    if token:
        async with runtime.db.transaction() as uow:
            await identity.revoke_token(uow, token)
    response = redirect("/")
    delete_session_cookie(response, secure=runtime.settings.cookie_secure)
    flash(request, response, "You have logged out.", "info")
    return response


# --------------------------------------------------------------------------------------------
# Orders


@router.get("/orders", response_class=HTMLResponse)
async def order_history(
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: SignedInUser,
    cursor: str | None = None,
) -> Response:
    """The customer's orders, newest first, a page at a time."""
    secret = runtime.settings.secret_key
    try:
        page = await orders.customer_orders(
            uow, user.id, secret_key=secret, cursor=cursor, limit=ORDERS_PER_PAGE
        )
    except Problem as exc:
        if not cursor or exc.status >= 500:
            raise
        page = await orders.customer_orders(
            uow, user.id, secret_key=secret, cursor=None, limit=ORDERS_PER_PAGE
        )
        cursor = None
    return render(
        request,
        "shop/orders.html",
        {"page": page, "labels": STATUS_LABELS, "paged": cursor is not None},
    )


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(
    order_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, user: SignedInUser
) -> Response:
    """One order: lines at the prices paid, totals, payment, the status timeline, shipments
    with tracking, cancelling, returns. Someone else's order is a 404, like an unknown one."""
    detail = await orders.order_detail(uow, order_id, user_id=user.id)
    if detail is None:
        raise not_found("Order", order_id)
    order = detail.order
    window_days = runtime.settings.return_window_days
    return render(
        request,
        "shop/order.html",
        {
            "order": order,
            "payment": detail.payment,
            "shipments": detail.shipments,
            "returns": await returns.returns_for_order(uow, order.id),
            "returnable": await returns.returnable_lines(uow, order, window_days=window_days),
            "titles": {line.id: line.title for line in order.lines},
            "labels": STATUS_LABELS,
            "return_labels": RETURN_STATUS_LABELS,
            "reasons": RETURN_REASONS,
            "window_days": window_days,
            "country_name": country_name,
        },
    )


@router.post("/orders/{order_id}/cancel", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def cancel(
    order_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    form = await form_of(request)
    reason = text_field(form, "reason", 500) or None
    response = redirect(f"/account/orders/{order_id}")
    try:
        check_plain("reason", reason, multiline=True)
        await orders.cancel_order(
            runtime, order_id, actor=f"customer:{user.id}", user_id=user.id, reason=reason
        )
    except Problem as exc:
        if exc.status == 404:
            raise
        message = (
            "This order can no longer be cancelled."
            if exc.code == "invalid_transition"
            else exc.detail
        )
        flash(request, response, message, "error")
        return response
    flash(
        request,
        response,
        "Your order is cancelled. The payment is released and nothing will be charged.",
        "success",
    )
    return response


@router.post("/orders/{order_id}/returns", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def request_return(
    order_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    """Ask to return units of delivered lines (``qty-<order line id>`` fields) with a reason."""
    form = await form_of(request)
    lines: list[tuple[str, int]] = []
    for key, value in form.multi_items():
        if not key.startswith("qty-") or not isinstance(value, str):
            continue
        try:
            quantity = int(value.strip() or "0")
        except ValueError:
            quantity = -1
        if quantity != 0:
            lines.append((key[4:][:40], quantity))
    reason = text_field(form, "reason", 100)
    details = text_field(form, "details", 380)
    full_reason = f"{reason}: {details}" if reason and details else (reason or details)
    response = redirect(f"/account/orders/{order_id}#returns")
    if not lines:
        flash(request, response, "Choose how many of which items to return.", "error")
        return response
    if any(quantity < 0 for _, quantity in lines):
        flash(request, response, "Quantities must be whole numbers, 0 or more.", "error")
        return response
    if not full_reason:
        flash(request, response, "Tell us why you are returning the items.", "error")
        return response
    if problem := plain_errors({"reason": reason, "details": details}, multiline={"details"}):
        field, message = next(iter(problem.items()))
        flash(request, response, f"The {field} {message}.", "error")
        return response

    async def ask(uow: UnitOfWork) -> returns.ReturnInfo:
        return await returns.request_return(
            uow,
            order_id,
            user_id=user.id,
            lines=lines,
            reason=full_reason,
            window_days=runtime.settings.return_window_days,
        )

    try:
        await runtime.db.run(ask)
    except Problem as exc:
        if exc.status == 404:
            raise
        flash(request, response, exc.detail, "error")
        return response
    flash(
        request,
        response,
        "Your return is requested. We will let you know when it is approved.",
        "success",
    )
    return response
