"""``GET /api/products/{product_id}/recommendations``: what to show with a product, each item
with its reason (``rule`` with the rule's lift, confidence and support; ``similar`` with its
score; ``popular``). Judged for the shopper's destination (``?country=``, else the customer's
default address, else the shop's country); the caller's cart, when one is presented, is left
out. An unknown or withdrawn product is a 404 problem."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from mercato.cart.schemas import presented_token
from mercato.cart.service import CartOwner, read_cart_token
from mercato.identity.deps import ApiDestination, CurrentUser, OptionalUser
from mercato.openapi import problems
from mercato.problems import Problem
from mercato.recommendations import service
from mercato.recommendations.schemas import (
    ForYouOut,
    RecommendationsOut,
    WishlistEntryOut,
    WishlistIn,
    WishlistOut,
    recommended_json,
    wishlist_entry_json,
    wishlist_item_json,
)
from mercato.runtime import Runtime, RuntimeDep, UowDep

router = APIRouter(tags=["recommendations"])

Limit = Annotated[int, Query(ge=1, le=service.MAX_LIMIT)]


def _cart_owner(request: Request, runtime: Runtime, user_id: str | None) -> CartOwner | None:
    """Whose cart to leave out: the customer's, or the guest's the token names. A token that
    does not verify names no cart here (recommendations are no place to refuse a request)."""
    if user_id is not None:
        return CartOwner(user_id=user_id)
    token, _ = presented_token(request)
    if token is None:
        return None
    try:
        return CartOwner(guest_cart_id=read_cart_token(runtime.settings.secret_key, token))
    except Problem:
        return None


@router.get(
    "/api/products/{product_id}/recommendations",
    response_model=RecommendationsOut,
    responses=problems(404),
)
async def product_recommendations(
    product_id: str,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: OptionalUser,
    destination: ApiDestination,
    kind: service.Kind = "also_bought",
    limit: Limit = 10,
) -> RecommendationsOut:
    """Frequently bought together (``kind=bought_together``) or customers who bought this also
    bought (``also_bought``), filled up from the best sellers when short."""
    found = await service.for_shopper(
        uow,
        runtime,
        product_id,
        kind=kind,
        limit=limit,
        country=destination.country,
        cart_owner=_cart_owner(request, runtime, user.id if user is not None else None),
    )
    return RecommendationsOut(
        product_id=product_id, kind=kind, items=[recommended_json(r) for r in found]
    )


@router.get("/api/me/recommendations", response_model=ForYouOut)
async def my_recommendations(
    uow: UowDep,
    runtime: RuntimeDep,
    user: CurrentUser,
    destination: ApiDestination,
    limit: Limit = 10,
) -> ForYouOut:
    """Recommended for you: from what you bought, saved and looked at lately (reason
    ``similar`` or ``rule``, with ``because``: the product of yours it comes from), never what
    you bought, saved or have in the cart; filled up with the best sellers (``popular``), which
    are all you get (``personal`` false) until there is something to go on."""
    found = await service.for_you(
        uow,
        runtime,
        user_id=user.id,
        country=destination.country,
        limit=limit,
        cart_owner=CartOwner(user_id=user.id),
    )
    return ForYouOut(personal=found.personal, items=[recommended_json(r) for r in found.items])


# --------------------------------------------------------------------------------------------
# The customer's wishlist


@router.get("/api/me/wishlist", response_model=WishlistOut)
async def list_wishlist(uow: UowDep, user: CurrentUser, destination: ApiDestination) -> WishlistOut:
    """The caller's saved products, the most recent first, each with its current price and
    whether it can be delivered to the destination (``?country=``, else the default address,
    else the shop's country); an archived product stays listed with ``on_sale: false``."""
    found = await service.wishlist_items(uow, user.id, country=destination.country)
    return WishlistOut(
        items=[wishlist_item_json(i) for i in found], limit=service.WISHLIST_MAX_ENTRIES
    )


@router.post("/api/me/wishlist", response_model=WishlistEntryOut, responses=problems(404, 409))
async def save_to_wishlist(body: WishlistIn, uow: UowDep, user: CurrentUser) -> WishlistEntryOut:
    """Save a product (or one ``variant_id`` of it); saving it again keeps one entry. 404 for
    an unknown product, 409 ``product_not_on_sale`` for a draft or archived one, 422
    ``unknown_variant`` for a variant of another product, 409 ``wishlist_full`` past the
    limit. The caller is mailed once each time the saved item comes back in stock."""
    saved = await service.save_to_wishlist(uow, user.id, body.product_id, body.variant_id)
    return wishlist_entry_json(saved)


@router.delete("/api/me/wishlist/{product_id}", status_code=204, response_class=Response)
async def remove_from_wishlist(product_id: str, uow: UowDep, user: CurrentUser) -> None:
    """Forget a saved product; 404 when it is not on the caller's wishlist."""
    await service.remove_from_wishlist(uow, user.id, product_id)
