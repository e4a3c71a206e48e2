"""Checkout: the address, shipping and payment form, the live order summary, placing the order
through the checkout workflow, and the confirmation page.

A guest checks out without an account, giving an e-mail address (the form's guest part), as
``POST /api/checkout`` lets a guest do; the order's page then opens by its access token. The
form carries an idempotency key made when the page is drawn, so a double submit places one
order; a failed attempt draws the form again with a fresh key (the checkout keeps each key's
outcome, and a retry with another card is another request). The POST runs no transaction of its
own around the checkout: its steps take their own short ones."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData, QueryParams

from mercato.cart import service as cart_service
from mercato.cart.service import CartInfo
from mercato.checkout import service as checkout
from mercato.checkout.schemas import CheckoutIn
from mercato.db import UnitOfWork
from mercato.identity import service as identity
from mercato.identity.service import UserInfo
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.problems import Problem, not_found
from mercato.ratelimit import client_ip
from mercato.runtime import Runtime, RuntimeDep, UowDep
from mercato.web.deps import PageDestination, PageUser, SignedInUser, page_destination
from mercato.web.security import CsrfChecked
from mercato.web.shop.common import (
    BriefUser,
    cart_owner,
    country_name,
    form_errors,
    form_of,
    served_countries,
    text_field,
)
from mercato.web.shop.guest_orders import guest_order_url
from mercato.web.templating import field_errors, flash, redirect, render

router = APIRouter()

FIELDS = ("name", "line1", "line2", "city", "postal_code", "region", "country")
# What each sandbox test card does, in the order the form lists them.
CARD_EXPLANATIONS: dict[str, str] = {
    "tok_visa": "approved",
    "tok_mastercard": "approved",
    "tok_amex": "approved",
    "tok_chargeDeclined": "declined by the bank",
    "tok_chargeDeclinedInsufficientFunds": "declined: insufficient funds",
    "tok_processingError": "fails with a processing error",
}
# A code that does not apply, or too many such codes tried (rate_limited, from the promo guard).
PROMO_CODES = frozenset({"invalid_promo_code", "rate_limited"})
ADDRESS_PROBLEMS = frozenset({"unknown_shipping_method", "shipping_method_unavailable"})


@dataclass(frozen=True, slots=True)
class TestCard:
    token: str
    label: str
    outcome: str


def test_cards() -> list[TestCard]:
    cards = []
    for token, outcome in CARD_EXPLANATIONS.items():
        card = payments.TEST_TOKENS.get(token)
        if card is not None:
            label = f"{card.brand.title()} ending {card.last4}"
            cards.append(TestCard(token, label, outcome))
    return cards


@dataclass(frozen=True, slots=True)
class CheckoutForm:
    name: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    postal_code: str = ""
    region: str = ""
    country: str = ""
    shipping_method: str = ""
    promo_code: str = ""
    payment_token: str = "tok_visa"  # noqa: S105  (the sandbox's test card)
    idempotency_key: str = ""
    email: str = ""  # a guest's

    @classmethod
    def read(cls, source: FormData | QueryParams, **defaults: str) -> CheckoutForm:
        values: dict[str, str] = {}
        for name, spec in cls.__dataclass_fields__.items():
            raw = source.get(name)
            text = raw.strip()[:300] if isinstance(raw, str) else ""
            values[name] = text or defaults.get(name, str(spec.default))
        values["country"] = values["country"].upper()
        return cls(**values)

    def body(self) -> dict[str, Any]:
        # Empty optional fields are left out; empty required ones fail as "too short".
        address: dict[str, str | None] = {name: getattr(self, name) for name in FIELDS}
        address["line2"] = self.line2 or None
        address["region"] = self.region or None
        return {
            "shipping_address": address,
            "shipping_method": self.shipping_method or "standard",
            "payment_token": self.payment_token,
            "promo_code": self.promo_code or None,
        }


def with_saved_address(
    form: CheckoutForm, saved: list[identity.AddressInfo], chosen: str | None
) -> CheckoutForm:
    """The form filled from the saved address the shopper picked, else from their default
    one when they have typed no address yet."""
    found = next((a for a in saved if a.id == chosen), None)
    if found is None and not form.line1:
        found = next((a for a in saved if a.is_default), None)
    if found is None:
        return form
    return replace(
        form,
        name=found.name,
        line1=found.line1,
        line2=found.line2 or "",
        city=found.city,
        postal_code=found.postal_code,
        region=found.region or "",
        country=found.country,
    )


def new_key() -> str:
    return secrets.token_urlsafe(18)


# --------------------------------------------------------------------------------------------
# What the form shows


async def form_context(
    uow: UnitOfWork,
    runtime: Runtime,
    cart: CartInfo,
    form: CheckoutForm,
    errors: dict[str, str] | None = None,
    *,
    ip: str,
    default_country: str,
    countries: Sequence[str],
) -> dict[str, Any]:
    """Countries, the shipping methods for the chosen one with their prices for this cart, the
    priced summary (a quote: nothing reserved), and the cart's notices. The promo code counts
    against the guessing allowance of ``ip`` and of the cart, as in the API."""
    errors = dict(errors or {})
    country = checkout.choose_country(countries, form.country, default_country)
    methods = await checkout.shipping_methods_for(uow, country, currency=cart.currency)
    codes = [m.code for m in methods]
    method = form.shipping_method if form.shipping_method in codes else (codes or [""])[0]
    form = replace(form, country=country, shipping_method=method)
    view = await cart_service.view_cart(
        uow,
        cart,
        shop_currency=runtime.settings.currency,
        low_stock_threshold=runtime.settings.low_stock_threshold,
        country=country or None,
    )
    quote: checkout.Quote | None = None
    quote_problem: Problem | None = None
    promo = form.promo_code or None
    for _ in range(2):
        try:
            quote = await checkout.quote_cart(
                uow,
                cart,
                country=country,
                region=form.region or None,
                shipping_method=method,
                promo_code=promo,
                promo_guard=checkout.PromoGuard.for_caller(runtime, ip),
                delivery=checkout.delivery_clock(runtime.settings),
            )
            break
        except Problem as exc:
            fields = field_errors(exc, short_names=True, default="invalid")
            if exc.code in PROMO_CODES and promo is not None:
                errors.setdefault("promo_code", exc.detail)
                promo = None  # show the summary without the code
                continue
            if "region" in fields:
                errors.setdefault("region", "Letters, digits and hyphens only (e.g. CA or BY).")
            quote_problem = exc
            break
    return {
        "form": form,
        "errors": errors,
        "countries": sorted(((c, country_name(c)) for c in countries), key=lambda x: x[1]),
        "shipping_options": checkout.shipping_options(methods, quote),
        "cart": view,
        "quote": quote,
        "quote_problem": quote_problem,
        "sandbox": runtime.settings.payment_provider == "sandbox",
        "test_cards": test_cards(),
    }


def _failure(problem: Problem) -> dict[str, Any]:
    """The message for a refused checkout, and what the shopper can do about it."""
    code = problem.code
    message = problem.detail
    lines: list[str] = []
    cart_link = False
    if code == "payment_declined":
        message = (
            "Your card was declined. Nothing was charged and your cart is unchanged: "
            "try another card."
        )
    elif code == "insufficient_funds":
        message = (
            "Your card has insufficient funds. Nothing was charged and your cart is "
            "unchanged: try another card."
        )
    elif code == "payment_processing_error":
        message = "The payment could not be processed. Nothing was charged; please try again."
    elif code == "payment_timeout":
        message = (
            "The payment provider did not answer in time. We are checking the payment: "
            "look at your orders in a minute before trying again."
        )
    elif code == "out_of_stock":
        message = (
            "Some items are no longer available in the quantity in your cart. Nothing was "
            "charged. Please review your cart."
        )
        cart_link = True
    elif code == "not_deliverable":
        where = country_name(str(problem.extra.get("country") or ""))
        message = (
            f"Some items in your cart are not available for delivery to {where}. Nothing "
            "was charged: remove them, or choose another address."
        )
        cart_link = True
    elif code == "price_changed":
        message = "Prices changed since you added these items. Nothing was charged."
        for line in problem.extra.get("lines") or []:
            lines.append(
                f"{line.get('title')}: was {line.get('unit_price_seen')}, now "
                f"{line.get('unit_price')} {line.get('currency')}"
            )
        cart_link = True
    elif code == "variant_unavailable":
        message = "Some items are no longer for sale; remove them from your cart."
        cart_link = True
    elif code == "checkout_in_progress":
        message = "Your order is still being placed; reload this page in a moment."
    elif code == "currency_mismatch":
        cart_link = True
    elif code == "validation_error":
        message = "Please correct the fields marked below."
    return {"code": code, "message": message, "lines": lines, "cart_link": cart_link}


# --------------------------------------------------------------------------------------------
# Pages


async def shoppers_cart(
    request: Request, uow: UnitOfWork, runtime: Runtime, user: UserInfo | None
) -> CartInfo | None:
    """The signed-in customer's cart, or the guest cart the cookie names."""
    owner = cart_owner(request, user, runtime.settings)
    if owner.user_id is None and owner.guest_cart_id is None:
        return None
    return await cart_service.get_cart_for(uow, owner.user_id, owner.guest_cart_id)


@router.get("/checkout", response_class=HTMLResponse)
async def checkout_page(
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: PageUser,
    destination: PageDestination,
) -> Response:
    cart = await shoppers_cart(request, uow, runtime, user)
    if cart is None or not cart.lines:
        response = redirect("/cart")
        flash(request, response, "Your cart is empty: add something before checking out.")
        return response
    form = CheckoutForm.read(request.query_params, name=user.name if user is not None else "")
    saved = await identity.list_addresses(uow, user.id) if user is not None else []
    form = replace(
        with_saved_address(form, saved, request.query_params.get("address")),
        idempotency_key=new_key(),
    )
    context = await form_context(
        uow,
        runtime,
        cart,
        form,
        ip=client_ip(request),
        default_country=destination.country,
        countries=served_countries(request),
    )
    return render(
        request,
        "shop/checkout.html",
        {**context, "failure": None, "guest": user is None, "saved_addresses": saved},
    )


@router.get("/checkout/summary", response_class=HTMLResponse)
async def checkout_summary(
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: PageUser,
    destination: PageDestination,
) -> Response:
    """The shipping choices and the order summary for a destination and promo code (htmx
    swaps it into the checkout form as the shopper changes them)."""
    cart = await shoppers_cart(request, uow, runtime, user)
    if cart is None or not cart.lines:
        return render(request, "shop/_checkout_empty.html")
    form = CheckoutForm.read(request.query_params)
    context = await form_context(
        uow,
        runtime,
        cart,
        form,
        ip=client_ip(request),
        default_country=destination.country,
        countries=served_countries(request),
    )
    return render(request, "shop/_checkout_dynamic.html", context)


async def _form_again(
    request: Request,
    runtime: Runtime,
    user: UserInfo | None,
    form: CheckoutForm,
    *,
    errors: dict[str, str] | None = None,
    failure: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    destination = await page_destination(request, runtime, user)
    async with runtime.db.transaction() as uow:
        cart = await shoppers_cart(request, uow, runtime, user)
        if cart is None or not cart.lines:
            response = redirect("/cart")
            flash(request, response, "Your cart is empty.")
            return response
        context = await form_context(
            uow,
            runtime,
            cart,
            form,
            errors,
            ip=client_ip(request),
            default_country=destination.country,
            countries=served_countries(request),
        )
    context["failure"] = failure
    context["guest"] = user is None
    return render(request, "shop/checkout.html", context, status_code=status_code)


@router.post("/checkout", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def place_order(request: Request, runtime: RuntimeDep, user: BriefUser) -> Response:
    posted = await form_of(request)
    form = CheckoutForm.read(posted)
    if text_field(posted, "action", 20) == "update":
        return await _form_again(request, runtime, user, form)
    try:
        body = CheckoutIn.model_validate(form.body())
    except ValidationError as exc:
        errors = form_errors(exc)
        failure = {
            "code": "validation_error",
            "message": "Please correct the fields marked below.",
            "lines": [],
            "cart_link": False,
        }
        return await _form_again(
            request, runtime, user, form, errors=errors, failure=failure, status_code=422
        )
    order_request = checkout.CheckoutRequest(
        shipping_address=body.shipping_address.model_dump(),
        shipping_method=body.shipping_method,
        payment_token=body.payment_token,
        promo_code=body.promo_code,
    )
    try:
        if user is None:
            return await _place_guest_order(request, runtime, form, order_request)
        answer = await checkout.checkout(
            runtime, user, form.idempotency_key, order_request, ip=client_ip(request)
        )
    except Problem as exc:
        # A new key for the next attempt: this one's outcome is kept with the checkout.
        again = replace(form, idempotency_key=new_key())
        errors = field_errors(exc, short_names=True, default="invalid")
        if "email" in errors:
            errors["email"] = "Enter your e-mail address, such as name@example.com."
        if exc.code in PROMO_CODES:
            errors.setdefault("promo_code", exc.detail)
        return await _form_again(
            request,
            runtime,
            user,
            again,
            errors=errors,
            failure=_failure(exc),
            status_code=exc.status,
        )
    return redirect(f"/checkout/confirmation/{answer['order_id']}")


async def _place_guest_order(
    request: Request, runtime: Runtime, form: CheckoutForm, order_request: checkout.CheckoutRequest
) -> Response:
    """A guest's order, through the same calls as the API's guest checkout; then its page,
    opened by its access token (the confirmation mail links there too)."""
    ip = client_ip(request)
    guard = cart_service.GuestThrottle.for_caller(runtime, ip)
    await cart_service.throttle_guest(guard, cart_service.CartOwner())
    cart_id = cart_owner(request, None, runtime.settings).guest_cart_id
    wanted = replace(order_request, email=form.email)
    answer = await checkout.checkout_guest(runtime, cart_id, form.idempotency_key, wanted, ip=ip)
    order_id = str(answer["order_id"])
    email = checkout.guest_email(form.email)
    token = orders.order_access_token(runtime.settings.secret_key, order_id, email)
    response = redirect(guest_order_url(order_id, token))
    flash(
        request,
        response,
        f"Thank you! Your order is placed; a confirmation is on its way to {email}.",
        "success",
    )
    return response


@router.get("/checkout/confirmation/{order_id}", response_class=HTMLResponse)
async def confirmation(
    order_id: str, request: Request, uow: UowDep, user: SignedInUser
) -> Response:
    order = await orders.get_customer_order(uow, order_id, user.id)
    if order is None:
        raise not_found("Order", order_id)
    payment = await orders.payment_summary(uow, order)
    return render(
        request,
        "shop/confirmation.html",
        {"order": order, "payment": payment, "country_name": country_name},
    )
