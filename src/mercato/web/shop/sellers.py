"""Marketplace pages of the storefront: a product's buy box ("Sold by ...") and its "Other
sellers" section (also answered alone, ``/p/{id}/sellers``, for the htmx sort), and a seller's
public page ``/sellers/{seller_id}``. Each asks the marketplace service one question and only
words the answer: which offer is featured, which are eligible and in what order is the buy
box's (see ``marketplace/buybox.py``).

Each offer can go in the cart as it is (its ``offer_id``): a cart line names its seller, and
the order is split into one part per seller at checkout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from mercato.marketplace import service as marketplace
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.deps import PageDestination
from mercato.web.templating import render

router = APIRouter()

SELLER_SORTS: tuple[tuple[marketplace.Sort, str], ...] = (
    ("score", "Best offer"),
    ("landed_price", "Lowest total price"),
)
DEFAULT_SORT: marketplace.Sort = "score"


def chosen_sort(value: str | None) -> marketplace.Sort:
    return next((key for key, _ in SELLER_SORTS if key == value), DEFAULT_SORT)


# --------------------------------------------------------------------------------------------
# Words for a seller's figures (the figures themselves are the marketplace's)


def percent(bp: int) -> str:
    """Basis points as a percentage with one decimal, in integers: 125 → "1.2 %"."""
    return f"{bp // 100}.{bp % 100 // 10} %"


def rating_text(p: marketplace.Performance) -> str:
    if p.rating_x100 is None or p.rating_count == 0:
        return "No ratings yet"
    stars = f"{p.rating_x100 // 100}.{p.rating_x100 % 100 // 10}"
    noun = "rating" if p.rating_count == 1 else "ratings"
    return f"{stars} out of 5 ({p.rating_count} {noun})"


def performance_text(p: marketplace.Performance) -> str:
    if p.orders_counted == 0:
        return "No recent orders to judge by yet"
    noun = "order" if p.orders_counted == 1 else "orders"
    return (
        f"Over {p.orders_counted} recent {noun}: {percent(p.defect_rate_bp)} with a problem, "
        f"{percent(p.late_shipment_rate_bp)} shipped late, "
        f"{percent(p.cancel_rate_bp)} cancelled before shipping"
    )


def ships_in(days: int) -> str:
    if days == 0:
        return "ships today"
    return f"ships in {days} day" + ("" if days == 1 else "s")


def seller_href(seller_id: str) -> str:
    return f"/sellers/{quote(seller_id, safe='')}"


# --------------------------------------------------------------------------------------------
# The product page's part


@dataclass(frozen=True, slots=True)
class OfferRow:
    """One offer as the product page words it."""

    offer_id: str
    seller_id: str
    seller: str
    href: str | None  # the seller's page; none for the shop itself
    is_house: bool
    price: int
    shipping: int
    landed: int
    currency: str
    ships_in: str
    rating: str
    performance: str


@dataclass(frozen=True, slots=True)
class VariantSellers:
    variant_id: str
    featured: OfferRow | None
    others: list[OfferRow]


def offer_row(
    offer: marketplace.BuyBoxOffer, sellers: dict[str, marketplace.SellerInfo], shop_name: str
) -> OfferRow:
    seller = sellers.get(offer.seller_id)
    perf = seller.performance if seller else marketplace.Performance()
    return OfferRow(
        offer_id=offer.offer_id,
        seller_id=offer.seller_id,
        seller=shop_name if offer.is_house else offer.seller_name,
        href=None if offer.is_house else seller_href(offer.seller_id),
        is_house=offer.is_house,
        price=offer.price,
        shipping=offer.shipping,
        landed=offer.landed_price,
        currency=offer.currency,
        ships_in=ships_in(offer.handling_days),
        rating=rating_text(perf),
        performance=performance_text(perf),
    )


def sellers_context(
    found: marketplace.ProductSellers,
    *,
    shop_name: str,
    product_id: str,
    chosen_variant: str | None,
    sort: marketplace.Sort,
) -> dict[str, Any]:
    """What ``shop/_sellers.html`` shows: every variant's featured offer and other sellers
    (the chosen variant's shown, the others hidden until the picker chooses them)."""
    variants = [
        VariantSellers(
            variant_id=v.variant.id,
            featured=offer_row(v.featured, found.sellers, shop_name) if v.featured else None,
            others=[offer_row(o, found.sellers, shop_name) for o in v.others],
        )
        for v in found.variants
    ]
    chosen = chosen_variant or (variants[0].variant_id if variants else None)

    def sort_href(key: str, variant_id: str, *, fragment: bool) -> str:
        params = urlencode({"variant": variant_id, "sellers_sort": key})
        path = f"/p/{quote(product_id, safe='')}" + ("/sellers" if fragment else "")
        return f"{path}?{params}" + ("" if fragment else "#other-sellers-" + variant_id)

    return {
        "seller_variants": variants,
        "seller_chosen": chosen,
        "seller_sort": sort,
        "seller_sorts": SELLER_SORTS,
        "seller_sort_href": sort_href,
        "seller_back": f"/p/{quote(product_id, safe='')}",
    }


@router.get("/p/{product_id}/sellers", response_class=HTMLResponse)
async def product_sellers_fragment(
    product_id: str,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    destination: PageDestination,
    variant: Annotated[str | None, Query(max_length=40)] = None,
    sellers_sort: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """The buy box and "Other sellers" alone, in another order (the sort links' htmx swap)."""
    sort = chosen_sort(sellers_sort)
    found = await marketplace.product_sellers(uow, product_id, destination.country, sort=sort)
    context = sellers_context(
        found,
        shop_name=runtime.settings.shop_name,
        product_id=product_id,
        chosen_variant=variant,
        sort=sort,
    )
    return render(request, "shop/_sellers.html", context)


# --------------------------------------------------------------------------------------------
# A seller's public page


@router.get("/sellers/{seller_id}", response_class=HTMLResponse)
async def seller_page(
    seller_id: str,
    request: Request,
    uow: UowDep,
    after: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """An approved seller's profile and its offers for sale, a page at a time (404 for a
    seller unknown, waiting for approval or suspended)."""
    shelf = await marketplace.seller_shelf(uow, seller_id, after=after)
    seller = shelf.seller
    next_href = (
        f"{seller_href(seller.id)}?{urlencode({'after': shelf.next_after})}"
        if shelf.next_after
        else None
    )
    return render(
        request,
        "shop/seller.html",
        {
            "seller": seller,
            "since": seller.approved_at or seller.created_at,
            "rating": rating_text(seller.performance),
            "performance": performance_text(seller.performance),
            "offers": shelf.offers,
            "titles": shelf.product_titles,
            "next_href": next_href,
            "first_href": seller_href(seller.id) if after else None,
        },
    )
