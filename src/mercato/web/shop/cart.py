"""The cart page and its forms: add from a product page, change a quantity, remove a line,
accept a changed price. Guests keep their cart by the same signed cookie the cart API uses.

Each change runs in a transaction of its own: when the cart service refuses (out of stock, a
quantity limit), that transaction is rolled back whole and the shopper sees why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mercato.cart import service as cart_service
from mercato.cart.service import CartChange, CartInfo, CartLimits, CartOwner, Edit
from mercato.checkout import service as checkout
from mercato.db import UnitOfWork
from mercato.problems import Problem
from mercato.ratelimit import client_ip
from mercato.recommendations import service as recommendations
from mercato.runtime import Runtime, RuntimeDep, UowDep
from mercato.web.deps import PageDestination, PageUser
from mercato.web.security import CsrfChecked, safe_next
from mercato.web.shop.common import (
    BriefUser,
    cart_owner,
    clear_cart_cookie,
    country_name,
    form_of,
    int_field,
    served_countries,
    set_cart_cookie,
    text_field,
)
from mercato.web.templating import field_errors, flash, redirect, render

router = APIRouter()


def friendly(problem: Problem) -> str:
    """What a shopper reads when the cart service refuses a change."""
    extra = problem.extra
    if problem.code == "out_of_stock":
        available = extra.get("available")
        if available == 0:
            return "Sorry, this item is out of stock."
        if isinstance(available, int):
            return f"Sorry, only {available} of this item are available."
    messages = {
        "quantity_limit": "That is more than one order can hold of a single item.",
        "cart_full": "Your cart is full; remove something before adding more.",
        "unknown_variant": "Please choose an option before adding to your cart.",
        "variant_unavailable": "This item is no longer for sale.",
        "currency_mismatch": "This item is priced in another currency than your cart.",
        "not_found": "That item is no longer in your cart.",
    }
    if problem.code == "validation_error" or (
        problem.code == "quantity_limit" and problem.extra.get("max_quantity") is None
    ):
        # A quantity outside the shop's limit names the field ("must be between 1 and 99").
        errors = field_errors(problem, short_names=True, default="invalid")
        if "quantity" in errors:
            return f"The quantity {errors['quantity']}."
    return messages.get(problem.code, problem.detail)


async def owned_cart(
    uow: UnitOfWork, runtime: Runtime, owner: CartOwner
) -> tuple[CartInfo | None, bool]:
    """The shopper's cart, and whether the guest cookie names a cart that is gone (to clear)."""
    if owner.user_id is None and owner.guest_cart_id is None:
        return None, False
    try:
        cart = await cart_service.load_cart(uow, owner, cache=cart_service.cache_for(runtime))
    except Problem as exc:
        if exc.code == "invalid_cart_token":
            return None, True
        raise
    return cart, False


@router.get("/cart", response_class=HTMLResponse)
async def cart_page(
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: PageUser,
    destination: PageDestination,
    country: str | None = None,
) -> Response:
    """The cart: current prices (and changes since adding), stock notices for the shopper's
    destination, totals, and an estimate of shipping and tax for it (or for the country
    asked)."""
    settings = runtime.settings
    owner = cart_owner(request, user, settings)
    cart, stale = await owned_cart(uow, runtime, owner)
    countries = served_countries(request) if cart is not None and cart.lines else []
    chosen = checkout.choose_country(countries, country, destination.country)
    view = await cart_service.view_cart(
        uow,
        cart,
        shop_currency=settings.currency,
        low_stock_threshold=settings.low_stock_threshold,
        country=chosen or destination.country,
    )
    purchasable = any(line.purchasable for line in view.lines)
    clock = checkout.delivery_clock(settings)
    estimate = await checkout.estimate_cart(uow, cart, chosen, clock) if purchasable else None
    complete = await recommendations.complete_the_cart(
        uow,
        runtime,
        in_cart=[line.product_id for line in view.lines if line.product_id is not None],
        country=chosen or destination.country,
    )
    response = render(
        request,
        "shop/cart.html",
        {
            "cart": view,
            "estimate": estimate,
            "countries": sorted(((c, country_name(c)) for c in countries), key=lambda x: x[1]),
            "country": chosen,
            "checkout_ok": any(line.purchasable for line in view.lines),
            "complete": complete,
        },
    )
    if stale:
        clear_cart_cookie(response, settings)
    return response


async def _change(
    request: Request,
    runtime: Runtime,
    user: Any,
    edit: Edit | tuple[Edit, ...],
    *,
    back: str,
    success: str | Callable[[CartChange], str] | None,
) -> Response:
    """Make one change to the shopper's cart (or a few, together) in a transaction of its own
    (a guest's counted against its address first); back to ``back`` with a message (what the
    service refused, or ``success``)."""
    settings = runtime.settings
    owner = cart_owner(request, user, settings)
    limits = CartLimits.from_settings(settings)
    cache = cart_service.cache_for(runtime)
    guard = cart_service.GuestThrottle.for_caller(runtime, client_ip(request))
    response = redirect(back)

    edits = edit if isinstance(edit, tuple) else (edit,)

    async def attempt(uow: UnitOfWork) -> CartChange | None:
        done, current = None, owner
        for one in edits:
            done = await cart_service.edit_cart(uow, current, one, limits=limits, cache=cache)
            if done is not None and current.user_id is None:
                current = CartOwner(guest_cart_id=done.cart_id)  # the cart the first one made
        return done

    try:
        await cart_service.throttle_guest(guard, owner, edits[0])
        try:
            done = await runtime.db.run(attempt)
        except Problem as exc:
            if exc.code != "invalid_cart_token":
                raise
            # The cookie names a cart that is gone (merged, expired): start a new one.
            owner = CartOwner()
            clear_cart_cookie(response, settings)
            await cart_service.throttle_guest(guard, owner, edits[0])
            done = await runtime.db.run(attempt)
    except Problem as exc:
        flash(request, response, friendly(exc), "error")
        return response
    if done is None:
        return response
    if user is None:
        set_cart_cookie(response, settings, done.cart_id)
    if success is not None:
        message = success if isinstance(success, str) else success(done)
        flash(request, response, message, "success")
    return response


def _added(variant_id: str) -> Callable[[CartChange], str]:
    def message(done: CartChange) -> str:
        variant = done.variants.get(variant_id)
        name = "the item"
        if variant is not None:
            name = variant.product_title + (f" ({variant.title})" if variant.title else "")
        return f"Added {name} to your cart."

    return message


@router.post("/cart/items", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def add_to_cart(
    request: Request, runtime: RuntimeDep, user: BriefUser, destination: PageDestination
) -> Response:
    """ "Add to cart" from a product page (``variant_id``, ``quantity``, ``next``; a
    marketplace seller's offer: its ``offer_id`` too)."""
    form = await form_of(request)
    variant_id = text_field(form, "variant_id", 40)
    offer_id = text_field(form, "offer_id", 40) or None
    quantity = int_field(form, "quantity", 1)
    back = safe_next(text_field(form, "next", 2000), "/cart")
    if not variant_id:
        response = redirect(back)
        flash(request, response, "Please choose an option before adding to your cart.", "error")
        return response
    edit = Edit.add(
        variant_id,
        quantity if quantity is not None else 0,
        offer_id=offer_id,
        country=destination.country if offer_id else None,
    )
    return await _change(request, runtime, user, edit, back=back, success=_added(variant_id))


@router.post("/cart/items/both", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def add_both_to_cart(request: Request, runtime: RuntimeDep, user: BriefUser) -> Response:
    """ "Add both" from a product's "Frequently bought together": one of each ``variant_id``
    (two), together or not at all."""
    form = await form_of(request)
    variant_ids = [v.strip()[:40] for v in form.getlist("variant_id") if isinstance(v, str)]
    back = safe_next(text_field(form, "next", 2000), "/cart")
    if len(variant_ids) != 2 or not all(variant_ids):
        response = redirect(back)
        flash(request, response, "Please choose the two products to add.", "error")
        return response
    edits = (Edit.add(variant_ids[0], 1), Edit.add(variant_ids[1], 1))
    return await _change(
        request, runtime, user, edits, back=back, success="Added both to your cart."
    )


@router.post("/cart/items/{line_id}", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def set_quantity(
    line_id: str, request: Request, runtime: RuntimeDep, user: BriefUser
) -> Response:
    """The quantity form: 0 removes the line; a value that is not a number is refused."""
    form = await form_of(request)
    quantity = int_field(form, "quantity")
    if quantity == 0:
        edit = Edit.remove(line_id)
        message = "Removed from your cart."
    else:
        edit = Edit.set_quantity(line_id, quantity if quantity is not None else -1)
        message = "Quantity updated."
    return await _change(request, runtime, user, edit, back="/cart", success=message)


@router.post(
    "/cart/items/{line_id}/remove", dependencies=[CsrfChecked], response_class=HTMLResponse
)
async def remove(line_id: str, request: Request, runtime: RuntimeDep, user: BriefUser) -> Response:
    edit = Edit.remove(line_id)
    return await _change(
        request, runtime, user, edit, back="/cart", success="Removed from your cart."
    )


@router.post(
    "/cart/items/{line_id}/accept-price", dependencies=[CsrfChecked], response_class=HTMLResponse
)
async def accept_price(
    line_id: str, request: Request, runtime: RuntimeDep, user: BriefUser
) -> Response:
    """Take the current price of a line whose price changed."""
    edit = Edit.accept_price(line_id)
    return await _change(
        request, runtime, user, edit, back="/cart", success="The new price is accepted."
    )
