"""The cart page and its forms: add from a product page, change a quantity, remove a line,
accept a changed price. Guests keep their cart by the same signed cookie the cart API uses.

Each change runs in a transaction of its own: when the cart service refuses (out of stock, a
quantity limit), that transaction is rolled back whole and the shopper sees why."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from mercato.cart import service as cart_service
from mercato.cart.service import CartInfo, CartLimits, CartOwner
from mercato.catalog import service as catalog
from mercato.checkout import service as checkout
from mercato.problems import Problem
from mercato.runtime import Runtime, RuntimeDep, SessionDep
from mercato.web.deps import PageUser
from mercato.web.security import CsrfChecked, safe_next
from mercato.web.shop.common import (
    DEFAULT_COUNTRY,
    BriefUser,
    cart_owner,
    clear_cart_cookie,
    country_name,
    form_of,
    int_field,
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
    if problem.code == "validation_error":
        errors = field_errors(problem, short_names=True, default="invalid")
        if "quantity" in errors:
            return f"The quantity {errors['quantity']}."
    return messages.get(problem.code, problem.detail)


async def owned_cart(
    session: AsyncSession, runtime: Runtime, owner: CartOwner
) -> tuple[CartInfo | None, bool]:
    """The shopper's cart, and whether the guest cookie names a cart that is gone (to clear)."""
    if owner.user_id is None and owner.guest_cart_id is None:
        return None, False
    try:
        return await cart_service.load_cart(
            session, owner, cache=cart_service.cache_for(runtime)
        ), False
    except Problem as exc:
        if exc.code == "invalid_cart_token":
            return None, True
        raise


async def ship_to_countries(session: AsyncSession) -> list[str]:
    zones = await checkout.list_zones(session)
    return sorted({c for z in zones for c in z.countries}, key=country_name)


@router.get("/cart", response_class=HTMLResponse)
async def cart_page(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: PageUser,
    country: str | None = None,
) -> Response:
    """The cart: current prices (and changes since adding), stock notices, totals, and an
    estimate of shipping and tax for a destination."""
    settings = runtime.settings
    owner = cart_owner(request, user, settings)
    cart, stale = await owned_cart(session, runtime, owner)
    view = await cart_service.view_cart(
        session, cart, low_stock_threshold=settings.low_stock_threshold
    )
    countries = await ship_to_countries(session) if view.lines else []
    chosen = (country or "").upper()
    if chosen not in countries:
        chosen = DEFAULT_COUNTRY if DEFAULT_COUNTRY in countries else (countries or [""])[0]
    estimate: checkout.Quote | None = None
    if cart is not None and chosen and any(line.purchasable for line in view.lines):
        methods = await checkout.shipping_methods_for(session, chosen, currency=cart.currency)
        if methods:
            try:
                estimate = await checkout.quote_cart(
                    session,
                    cart,
                    country=chosen,
                    region=None,
                    shipping_method=methods[0].code,
                    promo_code=None,
                )
            except Problem:
                estimate = None  # the cart page still shows the lines and their notices
    response = render(
        request,
        "shop/cart.html",
        {
            "cart": view,
            "estimate": estimate,
            "countries": [(c, country_name(c)) for c in countries],
            "country": chosen,
            "checkout_ok": any(line.purchasable for line in view.lines),
        },
    )
    if stale:
        clear_cart_cookie(response, settings)
    return response


Change = Callable[[AsyncSession, CartOwner, CartLimits, Any], Awaitable[cart_service.CartChange]]


async def _change(
    request: Request,
    runtime: Runtime,
    user: Any,
    change: Change,
    *,
    back: str,
    success: str | Callable[[], str] | None,
) -> Response:
    """Run one cart change in its own transaction; back to ``back`` with a message."""
    settings = runtime.settings
    owner = cart_owner(request, user, settings)
    limits = CartLimits.from_settings(settings)
    cache = cart_service.cache_for(runtime)
    response = redirect(back)
    try:
        try:
            async with runtime.db.session() as session:
                done = await change(session, owner, limits, cache)
        except Problem as exc:
            if exc.code != "invalid_cart_token":
                raise
            # The cookie names a cart that is gone (merged, expired): start a new one.
            owner = CartOwner()
            clear_cart_cookie(response, settings)
            async with runtime.db.session() as session:
                done = await change(session, owner, limits, cache)
    except Problem as exc:
        flash(request, response, friendly(exc), "error")
        return response
    if user is None:
        set_cart_cookie(response, settings, done.cart_id)
    if success is not None:
        flash(request, response, success if isinstance(success, str) else success(), "success")
    return response


@router.post("/cart/items", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def add_to_cart(request: Request, runtime: RuntimeDep, user: BriefUser) -> Response:
    """ "Add to cart" from a product page (``variant_id``, ``quantity``, ``next``)."""
    form = await form_of(request)
    variant_id = text_field(form, "variant_id", 40)
    quantity = int_field(form, "quantity", 1)
    back = safe_next(text_field(form, "next", 2000), "/cart")
    name = "the item"

    async def add(
        session: AsyncSession, owner: CartOwner, limits: CartLimits, cache: Any
    ) -> cart_service.CartChange:
        nonlocal name
        done = await cart_service.add_item(
            session,
            owner,
            variant_id,
            quantity if quantity is not None else 0,
            limits=limits,
            cache=cache,
        )
        variant = done.variants.get(variant_id)
        if variant is None:
            variant = (await catalog.get_variants(session, [variant_id])).get(variant_id)
        if variant is not None:
            name = variant.product_title + (f" ({variant.title})" if variant.title else "")
        return done

    if not variant_id:
        response = redirect(back)
        flash(request, response, "Please choose an option before adding to your cart.", "error")
        return response
    return await _change(
        request, runtime, user, add, back=back, success=lambda: f"Added {name} to your cart."
    )


@router.post("/cart/items/{line_id}", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def set_quantity(
    line_id: str, request: Request, runtime: RuntimeDep, user: BriefUser
) -> Response:
    form = await form_of(request)
    quantity = int_field(form, "quantity")

    async def change(
        session: AsyncSession, owner: CartOwner, limits: CartLimits, cache: Any
    ) -> cart_service.CartChange:
        if quantity == 0:
            return await cart_service.remove_item(
                session, owner, line_id, limits=limits, cache=cache
            )
        return await cart_service.set_quantity(
            session,
            owner,
            line_id,
            quantity if quantity is not None else -1,
            limits=limits,
            cache=cache,
        )

    message = "Removed from your cart." if quantity == 0 else "Quantity updated."
    return await _change(request, runtime, user, change, back="/cart", success=message)


@router.post(
    "/cart/items/{line_id}/remove", dependencies=[CsrfChecked], response_class=HTMLResponse
)
async def remove(line_id: str, request: Request, runtime: RuntimeDep, user: BriefUser) -> Response:
    async def change(
        session: AsyncSession, owner: CartOwner, limits: CartLimits, cache: Any
    ) -> cart_service.CartChange:
        return await cart_service.remove_item(session, owner, line_id, limits=limits, cache=cache)

    return await _change(
        request, runtime, user, change, back="/cart", success="Removed from your cart."
    )


@router.post(
    "/cart/items/{line_id}/accept-price", dependencies=[CsrfChecked], response_class=HTMLResponse
)
async def accept_price(
    line_id: str, request: Request, runtime: RuntimeDep, user: BriefUser
) -> Response:
    """Take the current price of a line whose price changed: the line is added again at the
    price shown now (the cart service records a re-added line's price as seen)."""

    async def change(
        session: AsyncSession, owner: CartOwner, limits: CartLimits, cache: Any
    ) -> cart_service.CartChange:
        cart = await cart_service.get_cart_for(session, owner.user_id, owner.guest_cart_id)
        line = next((x for x in cart.lines if x.id == line_id), None) if cart else None
        if line is None:
            raise Problem(404, "not_found", "That item is no longer in your cart.")
        await cart_service.remove_item(session, owner, line_id, limits=limits, cache=cache)
        return await cart_service.add_item(
            session, owner, line.variant_id, line.quantity, limits=limits, cache=cache
        )

    return await _change(
        request, runtime, user, change, back="/cart", success="The new price is accepted."
    )
