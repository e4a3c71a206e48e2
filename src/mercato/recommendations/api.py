"""``GET /api/products/{product_id}/recommendations``: what to show with a product, each item
with its reason (``rule`` with the rule's lift, confidence and support; ``similar`` with its
score; ``popular``). Judged for the shopper's destination (``?country=``, else the customer's
default address, else the shop's country); the caller's cart, when one is presented, is left
out. An unknown or withdrawn product is a 404 problem."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from mercato.cart.schemas import presented_token
from mercato.cart.service import CartOwner, read_cart_token
from mercato.identity.deps import ApiDestination, CurrentUser, OptionalUser
from mercato.openapi import problems
from mercato.problems import Problem
from mercato.recommendations import service
from mercato.recommendations.schemas import ForYouOut, RecommendationsOut, recommended_json
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
