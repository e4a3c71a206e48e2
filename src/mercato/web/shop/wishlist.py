"""The customer's wishlist: "Save to wishlist" / "Saved" on the product page, and the account's
wishlist page (each item with its current price and stock where the shopper's goods would go,
"Add to cart" and "Remove").

The product page's button is a form: htmx posts it and swaps the button for its new state;
without scripts it posts and comes back to the page with a message. The rules (what may be
saved, the limit, the back-in-stock mail) are the recommendations service's.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mercato.problems import Problem
from mercato.recommendations import service as recommendations
from mercato.runtime import RuntimeDep
from mercato.web.deps import PageDestination, SignedInUser
from mercato.web.security import CsrfChecked, safe_next
from mercato.web.shop.common import BriefSignedIn, form_of, text_field
from mercato.web.templating import flash, redirect, render

router = APIRouter()

WISHLIST_PAGE = "/account/wishlist"
REFUSED = frozenset({409, 422})


def _button(
    request: Request, product_id: str, saved: bool, *, error: str | None = None
) -> Response:
    return render(
        request,
        "shop/_wishlist_button.html",
        {
            "product_id": product_id,
            "saved": saved,
            "wishlist_error": error,
            "self_url": f"/p/{quote(product_id, safe='')}",
        },
    )


def _back(request: Request, target: str, message: str, kind: str) -> Response:
    response = redirect(target)
    flash(request, response, message, kind)
    return response


@router.post("/wishlist/{product_id}", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def save(
    product_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    """Save the product (the variant picked in the page's picker, when it sent one)."""
    form = await form_of(request)
    variant_id = text_field(form, "variant_id", 40) or None
    target = safe_next(text_field(form, "next", 2000) or f"/p/{quote(product_id, safe='')}")
    htmx = bool(request.headers.get("HX-Request"))
    try:
        async with runtime.db.transaction() as uow:
            await recommendations.save_to_wishlist(uow, user.id, product_id, variant_id)
    except Problem as exc:
        if exc.status not in REFUSED:
            raise
        if htmx:
            return _button(request, product_id, False, error=exc.detail)
        return _back(request, target, exc.detail, "error")
    if htmx:
        return _button(request, product_id, True)
    return _back(request, target, "Saved to your wishlist.", "success")


@router.post(
    "/wishlist/{product_id}/remove", dependencies=[CsrfChecked], response_class=HTMLResponse
)
async def remove(
    product_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    """Take the product off the wishlist (from the product page or the wishlist page)."""
    form = await form_of(request)
    target = safe_next(text_field(form, "next", 2000) or WISHLIST_PAGE)
    async with runtime.db.transaction() as uow:
        await recommendations.remove_from_wishlist(uow, user.id, product_id)
    if request.headers.get("HX-Request"):
        return _button(request, product_id, False)
    return _back(request, target, "Removed from your wishlist.", "info")


@router.get(WISHLIST_PAGE, response_class=HTMLResponse)
async def wishlist_page(
    request: Request, runtime: RuntimeDep, user: SignedInUser, destination: PageDestination
) -> Response:
    async with runtime.db.transaction() as uow:
        items = await recommendations.wishlist_items(uow, user.id, country=destination.country)
    return render(
        request,
        "shop/wishlist.html",
        {
            "items": items,
            "limit": recommendations.WISHLIST_MAX_ENTRIES,
            "country_name": destination.country_name,
        },
    )
