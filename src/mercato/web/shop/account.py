"""The shopper's account: register, log in, log out, the account page (verify the e-mail
address, change the password), a forgotten password reset by e-mail, order history, and one
order's page with its timeline, shipments and tracking numbers, cancelling, and asking for a
return.

Each form calls the one identity service function its API twin calls (``log_in``,
``register``, ``change_password``, ``request_password_reset``, ``reset_password``,
``verify_email``): the same limits, the same rules, the same HttpOnly session cookie and login
hooks (the guest cart merges into the customer's). A ``next`` target is only followed when it
stays on this site. The pages a mailed link opens carry its token in their URL, so they ask
browsers to send no ``Referer`` from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mercato.db import UnitOfWork
from mercato.identity import service as identity
from mercato.identity.deps import COOKIE_NAME, delete_session_cookie, set_session_cookie
from mercato.identity.schemas import AddressIn
from mercato.orders import service as orders
from mercato.problems import Problem, not_found
from mercato.ratelimit import client_ip, limiter_for
from mercato.returns import service as returns
from mercato.runtime import Runtime, RuntimeDep, UowDep
from mercato.text import check_plain, plain_errors
from mercato.web.deps import PageUser, SignedInUser
from mercato.web.security import CsrfChecked, safe_next
from mercato.web.shop.common import (
    BriefSignedIn,
    BriefUser,
    country_name,
    form_errors,
    form_of,
    served_countries,
    text_field,
)
from mercato.web.templating import field_errors, flash, redirect, render

router = APIRouter(prefix="/account")

ORDERS_PER_PAGE = 10
ADDRESS_FIELDS = ("name", "line1", "line2", "city", "postal_code", "region", "country")
TOO_MANY = "Too many attempts. Please wait a while and try again."
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


def _password(form: Any, name: str) -> str:
    # Cut just past the longest acceptable password: the service then refuses it as too long
    # rather than hashing a megabyte.
    value = form.get(name)
    return value[: identity.PASSWORD_MAX_LENGTH + 1] if isinstance(value, str) else ""


def _set_cookie(runtime: Runtime, response: Response, signed_in: identity.SignedIn) -> None:
    settings = runtime.settings
    set_session_cookie(
        response,
        signed_in.session.token,
        settings.token_ttl_seconds,
        secure=settings.cookie_secure,
    )


def _form_errors(exc: Problem) -> dict[str, str]:
    return {
        k: f"This {k.replace('_', ' ')} {v}."
        for k, v in field_errors(exc, short_names=True, default="invalid").items()
    }


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
    password = _password(form, "password")
    target = safe_next(text_field(form, "next", 2000))
    errors: dict[str, str] = {}
    if not email:
        errors["email"] = "Enter your e-mail address."
    if not password:
        errors["password"] = "Enter your password."  # noqa: S105  (a message, not a secret)
    context: dict[str, Any] = {"next": target, "email": email, "errors": errors, "message": None}
    if errors:
        return render(request, "shop/login.html", context, status_code=422)
    response = redirect(target)
    try:
        async with runtime.db.transaction() as uow:
            signed_in = await identity.log_in(
                uow,
                limiter_for(runtime),
                runtime.settings,
                request,
                response,
                email=email,
                password=password,
            )
    except Problem as exc:
        if exc.code == "rate_limited":
            context["message"] = TOO_MANY
            return render(request, "shop/login.html", context, status_code=429, headers=exc.headers)
        if exc.code != "invalid_credentials":
            raise
        context["message"] = "The e-mail address or password is incorrect."
        return render(request, "shop/login.html", context, status_code=422)
    _set_cookie(runtime, response, signed_in)
    flash(request, response, f"Welcome back, {signed_in.user.name}.", "success")
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
    target = safe_next(text_field(form, "next", 2000))
    response = redirect(target)
    errors: dict[str, str] = {}
    status = 422
    headers: dict[str, str] = {}
    try:
        check_plain("name", values["name"])
        async with runtime.db.transaction() as uow:
            signed_in = await identity.register(
                uow,
                limiter_for(runtime),
                runtime.settings,
                request,
                response,
                email=values["email"],
                password=_password(form, "password"),
                name=values["name"],
            )
    except Problem as exc:
        if exc.code == "email_taken":
            errors["email"] = "An account with this e-mail address exists already: log in."
        elif exc.code == "rate_limited":
            errors["email"] = TOO_MANY
            status, headers = 429, dict(exc.headers or {})
        else:
            errors = _form_errors(exc) or {"email": exc.detail}
        return render(
            request,
            "shop/register.html",
            {
                "next": target,
                "values": values,
                "errors": errors,
                "min_password": identity.PASSWORD_MIN_LENGTH,
            },
            status_code=status,
            headers=headers,
        )
    _set_cookie(runtime, response, signed_in)
    flash(
        request,
        response,
        f"Welcome, {signed_in.user.name}: your account is ready. "
        f"We sent a link to {signed_in.user.email} to confirm the address.",
        "success",
    )
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
# The account page: the e-mail address (verified?) and the password


@router.get("", response_class=HTMLResponse)
async def account_page(request: Request, user: SignedInUser) -> Response:
    return render(request, "shop/account.html", {"account": user})


@router.post("/verify-email/resend", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def resend_verification(
    request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    response = redirect("/account")
    try:
        async with runtime.db.transaction() as uow:
            await identity.resend_verification(uow, limiter_for(runtime), runtime.settings, user.id)
    except Problem as exc:
        if exc.code == "already_verified":
            flash(request, response, "Your e-mail address is confirmed already.", "info")
            return response
        if exc.code != "rate_limited":
            raise
        flash(request, response, TOO_MANY, "error")
        return response
    flash(request, response, f"We sent a new link to {user.email}.", "success")
    return response


def _password_page(
    request: Request, errors: dict[str, str], *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    context = {"errors": errors, "min_password": identity.PASSWORD_MIN_LENGTH}
    return render(request, "shop/password.html", context, status_code=status_code, **extra)


@router.get("/password", response_class=HTMLResponse)
async def password_page(request: Request, user: SignedInUser) -> Response:
    return _password_page(request, {})


@router.post("/password", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def change_password(request: Request, runtime: RuntimeDep, user: BriefSignedIn) -> Response:
    """Change the password; every other session is signed out, this browser's stays."""
    form = await form_of(request)
    new_password = _password(form, "new_password")
    if new_password != _password(form, "new_password_again"):
        return _password_page(
            request, {"new_password_again": "The two new passwords differ."}, status_code=422
        )
    try:
        async with runtime.db.transaction() as uow:
            await identity.change_password(
                uow,
                limiter_for(runtime),
                runtime.settings,
                user.id,
                current_password=_password(form, "current_password"),
                new_password=new_password,
                keep_token=request.cookies.get(COOKIE_NAME),
            )
    except Problem as exc:
        if exc.code == "rate_limited":
            return _password_page(
                request, {"current_password": TOO_MANY}, status_code=429, headers=exc.headers
            )
        if exc.status != 422:
            raise
        return _password_page(request, _form_errors(exc), status_code=422)
    response = redirect("/account")
    flash(
        request,
        response,
        "Your password is changed. Every other device you were logged in on is logged out.",
        "success",
    )
    return response


# --------------------------------------------------------------------------------------------
# A forgotten password, and the pages the mailed links open


@router.get("/forgot-password", response_class=HTMLResponse)
async def forgot_password_page(request: Request) -> Response:
    return render(request, "shop/forgot_password.html", {"email": "", "errors": {}})


@router.post("/forgot-password", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def forgot_password(request: Request, runtime: RuntimeDep) -> Response:
    """Mail a reset link. The answer is the same whether or not an account has the address."""
    form = await form_of(request)
    email = text_field(form, "email", 320)
    context: dict[str, Any] = {"email": email, "errors": {}}
    if identity.email_problem(identity.normalize_email(email)) is not None:
        context["errors"] = {"email": "Enter the e-mail address of your account."}
        return render(request, "shop/forgot_password.html", context, status_code=422)
    try:
        async with runtime.db.transaction() as uow:
            await identity.request_password_reset(
                uow, limiter_for(runtime), runtime.settings, email=email, ip=client_ip(request)
            )
    except Problem as exc:
        if exc.code != "rate_limited":
            raise
        context["errors"] = {"email": TOO_MANY}
        return render(
            request, "shop/forgot_password.html", context, status_code=429, headers=exc.headers
        )
    return render(request, "shop/forgot_password_sent.html", {"email": email})


def _reset_page(
    request: Request, token: str, errors: dict[str, str], *, status_code: int = 200
) -> HTMLResponse:
    return render(
        request,
        "shop/reset_password.html",
        {"token": token, "errors": errors, "min_password": identity.PASSWORD_MIN_LENGTH},
        status_code=status_code,
    )


@router.get("/reset-password", response_class=HTMLResponse)
async def reset_password_page(request: Request, token: str = "") -> Response:
    return _reset_page(request, token[: identity.TOKEN_MAX_LENGTH + 1], {})


@router.post("/reset-password", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def reset_password(request: Request, runtime: RuntimeDep) -> Response:
    """Set the new password; every session of the account (this browser's too) ends."""
    form = await form_of(request)
    token = text_field(form, "token", identity.TOKEN_MAX_LENGTH + 1)
    password = _password(form, "password")
    if password != _password(form, "password_again"):
        return _reset_page(
            request, token, {"password_again": "The two passwords differ."}, status_code=422
        )
    try:
        async with runtime.db.transaction() as uow:
            await identity.reset_password(
                uow,
                limiter_for(runtime),
                runtime.settings,
                token=token,
                new_password=password,
                ip=client_ip(request),
            )
    except Problem as exc:
        if exc.code == "rate_limited":
            return _reset_page(request, token, {"password": TOO_MANY}, status_code=429)
        if exc.code == "invalid_token":
            return render(
                request,
                "shop/link_invalid.html",
                {"what": "password reset"},
                status_code=400,
            )
        if exc.status != 422:
            raise
        return _reset_page(request, token, _form_errors(exc), status_code=422)
    response = redirect("/account/login")
    delete_session_cookie(response, secure=runtime.settings.cookie_secure)
    flash(request, response, "Your new password is set. Log in with it.", "success")
    return response


@router.get("/verify-email", response_class=HTMLResponse)
async def verify_email_page(request: Request, token: str = "") -> Response:
    # A button to press rather than a change made by opening the link: mail scanners open
    # links too, and a GET must not change anything.
    return render(
        request,
        "shop/verify_email.html",
        {"token": token[: identity.TOKEN_MAX_LENGTH + 1], "message": None},
    )


@router.post("/verify-email", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def verify_email(request: Request, runtime: RuntimeDep, user: BriefUser) -> Response:
    form = await form_of(request)
    token = text_field(form, "token", identity.TOKEN_MAX_LENGTH + 1)
    try:
        async with runtime.db.transaction() as uow:
            verified = await identity.verify_email(
                uow, limiter_for(runtime), runtime.settings, token=token, ip=client_ip(request)
            )
    except Problem as exc:
        if exc.code == "rate_limited":
            return render(
                request,
                "shop/verify_email.html",
                {"token": token, "message": TOO_MANY},
                status_code=429,
                headers=exc.headers,
            )
        if exc.code != "invalid_token":
            raise
        return render(
            request,
            "shop/link_invalid.html",
            {"what": "confirmation"},
            status_code=400,
        )
    response = redirect("/account" if user is not None else "/")
    flash(request, response, f"Thank you: {verified.email} is confirmed.", "success")
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
    caller = orders.OrderCaller(user_id=user.id)
    return await show_order(request, uow, runtime, order_id, caller, f"/account/orders/{order_id}")


@dataclass(frozen=True, slots=True)
class PartView:
    """One seller's part of the order as its page groups it: who sells it, its lines and the
    parcels they left in."""

    part_id: str
    seller: str
    lines: list[orders.OrderLineInfo]
    shipments: list[dict[str, Any]]


def part_views(detail: orders.OrderDetail, shop_name: str) -> list[PartView]:
    order = detail.order
    if len(order.parts) <= 1:
        return [PartView("", shop_name, list(order.lines), detail.shipments)]
    views = []
    for part in order.parts:
        mine = set(part.line_ids)
        views.append(
            PartView(
                part_id=part.id,
                seller=shop_name
                if part.seller_id == orders.HOUSE_SELLER
                else detail.seller_names.get(part.seller_id, part.seller_id),
                lines=[line for line in order.lines if line.id in mine],
                shipments=[
                    s
                    for s in detail.shipments
                    if any(x["order_line_id"] in mine for x in s.get("lines", []))
                ],
            )
        )
    return views


async def show_order(
    request: Request,
    uow: UnitOfWork,
    runtime: Runtime,
    order_id: str,
    caller: orders.OrderCaller,
    page_url: str,
) -> Response:
    """The order's page for whoever may see it (its customer, or a guest by its access token:
    the forms then carry the token); 404 for anyone else."""
    secret = runtime.settings.secret_key
    detail = await orders.order_detail_for(uow, order_id, caller, secret_key=secret)
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
            "parts": part_views(detail, runtime.settings.shop_name),
            "returns": await returns.returns_for_order(uow, order.id),
            "returnable": await returns.returnable_lines(uow, order, window_days=window_days),
            "titles": {line.id: line.title for line in order.lines},
            "labels": STATUS_LABELS,
            "return_labels": RETURN_STATUS_LABELS,
            "reasons": RETURN_REASONS,
            "window_days": window_days,
            "country_name": country_name,
            "order_actions": page_url.split("?", 1)[0],
            "order_token": caller.access_token if caller.user_id is None else None,
        },
    )


@router.post("/orders/{order_id}/cancel", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def cancel(
    order_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    caller = orders.OrderCaller(user_id=user.id)
    return await cancel_from_page(request, runtime, order_id, caller, f"/account/orders/{order_id}")


async def cancel_from_page(
    request: Request, runtime: Runtime, order_id: str, caller: orders.OrderCaller, back: str
) -> Response:
    """Cancel the order for whoever may act on it, then back to its page (``back``)."""
    form = await form_of(request)
    reason = text_field(form, "reason", 500) or None
    response = redirect(back)
    try:
        check_plain("reason", reason, multiline=True)
        await orders.cancel_order_for(runtime, order_id, caller, reason=reason)
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
    caller = orders.OrderCaller(user_id=user.id)
    back = f"/account/orders/{order_id}"
    return await return_from_page(request, runtime, order_id, caller, back)


async def return_from_page(
    request: Request, runtime: Runtime, order_id: str, caller: orders.OrderCaller, back: str
) -> Response:
    """Ask for a return of the order for whoever may act on it, then back to its page."""
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
    response = redirect(f"{back}#returns")
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
            user_id=caller.user_id,
            access_token=caller.access_token,
            secret_key=runtime.settings.secret_key,
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


# --------------------------------------------------------------------------------------------
# The address book


def _address_form(form: Any) -> dict[str, str]:
    values = {name: text_field(form, name, 300) for name in ADDRESS_FIELDS}
    values["country"] = values["country"].upper()
    return values


def _address_body(values: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = dict(values)
    body["line2"] = values["line2"] or None
    body["region"] = values["region"] or None
    return body


async def _addresses_page(
    request: Request,
    runtime: Runtime,
    user: identity.UserInfo,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    editing: identity.AddressInfo | None = None,
    status_code: int = 200,
) -> Response:
    async with runtime.db.transaction() as uow:
        saved = await identity.list_addresses(uow, user.id)
    served = served_countries(request)
    countries = sorted(((c, country_name(c)) for c in served), key=lambda c: c[1])
    return render(
        request,
        "shop/addresses.html",
        {
            "addresses": saved,
            "countries": countries,
            "values": values or {"name": user.name},
            "errors": errors or {},
            "editing": editing,
            "max_addresses": identity.MAX_ADDRESSES,
        },
        status_code=status_code,
    )


@router.get("/addresses", response_class=HTMLResponse)
async def addresses_page(request: Request, runtime: RuntimeDep, user: SignedInUser) -> Response:
    return await _addresses_page(request, runtime, user)


@router.get("/addresses/{address_id}/edit", response_class=HTMLResponse)
async def edit_address_page(
    address_id: str, request: Request, runtime: RuntimeDep, user: SignedInUser
) -> Response:
    async with runtime.db.transaction() as uow:
        found = await identity.get_address(uow, user.id, address_id)
    if found is None:
        raise not_found("Address", address_id)
    values = {name: getattr(found, name) or "" for name in ADDRESS_FIELDS}
    return await _addresses_page(request, runtime, user, values=values, editing=found)


@router.post("/addresses", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def save_address(request: Request, runtime: RuntimeDep, user: BriefSignedIn) -> Response:
    """Add an address, or change the one ``address_id`` names."""
    form = await form_of(request)
    values = _address_form(form)
    address_id = text_field(form, "address_id", 60) or None
    editing = None
    try:
        body = AddressIn.model_validate(_address_body(values))
        async with runtime.db.transaction() as uow:
            if address_id is None:
                await identity.add_address(
                    uow, user.id, body.fields(), make_default=bool(form.get("is_default"))
                )
            else:
                editing = await identity.get_address(uow, user.id, address_id)
                await identity.update_address(uow, user.id, address_id, _address_body(values))
    except ValidationError as exc:
        errors = form_errors(exc)
        return await _addresses_page(
            request, runtime, user, values=values, errors=errors, editing=editing, status_code=422
        )
    except Problem as exc:
        if exc.status not in (409, 422):
            raise
        errors = field_errors(exc, short_names=True, default="invalid")
        if exc.code == "country_not_served":
            errors["country"] = exc.detail
        errors = errors or {"form": exc.detail}
        return await _addresses_page(
            request,
            runtime,
            user,
            values=values,
            errors=errors,
            editing=editing,
            status_code=exc.status,
        )
    response = redirect("/account/addresses")
    flash(request, response, "Address saved.", "success")
    return response


@router.post(
    "/addresses/{address_id}/default", dependencies=[CsrfChecked], response_class=HTMLResponse
)
async def make_default_address(
    address_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    async with runtime.db.transaction() as uow:
        await identity.make_default_address(uow, user.id, address_id)
    response = redirect("/account/addresses")
    flash(request, response, "Default address changed.", "success")
    return response


@router.post(
    "/addresses/{address_id}/delete", dependencies=[CsrfChecked], response_class=HTMLResponse
)
async def delete_address(
    address_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    async with runtime.db.transaction() as uow:
        await identity.delete_address(uow, user.id, address_id)
    response = redirect("/account/addresses")
    flash(request, response, "Address deleted.", "info")
    return response
