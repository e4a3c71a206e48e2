"""Browsing: the home page, category pages, search with facets, autocomplete, product pages.

Listings are answered from the search index alone (no catalog query per product); a product
page reads the product, its variants' stock and its rating in one batch each.

The listing pages hold no transaction while they search: the search service may read the
synonym list in a transaction of its own, which on SQLite would wait for the request's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mercato.checkout import service as checkout
from mercato.flashsale import service as flashsale
from mercato.identity import service as identity
from mercato.marketplace import service as marketplace
from mercato.problems import Problem, not_found
from mercato.recommendations import service as recommendations
from mercato.reviews import service as reviews
from mercato.runtime import Runtime, RuntimeDep, UowDep
from mercato.search import service as search
from mercato.web.deps import DELIVER_TO_COOKIE, PageDestination, PageUser
from mercato.web.security import CsrfChecked, safe_next
from mercato.web.shop import listing as lst
from mercato.web.shop import sellers as seller_views
from mercato.web.shop.common import BriefUser, cart_owner, form_of, text_field
from mercato.web.templating import decimal_money, flash, redirect, render

router = APIRouter()

BEST_SELLERS = 12
FEATURED = 6
FOR_YOU = 6
PLACEHOLDER = "/static/img/product.svg"


@dataclass(frozen=True, slots=True)
class Card:
    """A search hit as a product card shows it (formatted here, once, not in the template)."""

    id: str
    href: str
    title: str
    brand: str | None
    image: str
    price: str
    price_from: bool
    rating: str | None
    rating_count: int
    in_stock: bool
    available_elsewhere: bool


def card_view(hit: dict[str, Any]) -> Card:
    currency = hit["currency"]
    low, high = hit["min_price"], hit["max_price"]
    ranged = bool(high and high != low)
    price = decimal_money(low, currency)
    if ranged:
        price = f"{price} – {decimal_money(high, currency)}"
    rating = hit.get("rating")
    return Card(
        id=hit["id"],
        href="/p/" + quote(hit["id"], safe=""),
        title=hit["title"],
        brand=hit["brand"]["name"] if hit.get("brand") else None,
        image=hit.get("image") or PLACEHOLDER,
        price=price,
        price_from=ranged,
        rating=f"{rating:.1f}" if rating else None,
        rating_count=int(hit.get("rating_count") or 0),
        in_stock=bool(hit.get("in_stock")),
        available_elsewhere=bool(hit.get("available_elsewhere")),
    )


async def _search(runtime: Runtime, request: search.SearchRequest) -> search.SearchResult | None:
    """The search answer; None when the index is not built yet. A stale or foreign cursor
    starts again at the first page instead of failing."""
    try:
        return await search.search(runtime, request)
    except Problem as exc:
        if exc.code == "search_unavailable":
            return None
        if exc.code == "invalid_cursor" and request.cursor:
            return await _search(runtime, replace(request, cursor=None))
        raise


# --------------------------------------------------------------------------------------------
# Home


@router.get("/", response_class=HTMLResponse)
async def home(
    request: Request, runtime: RuntimeDep, user: BriefUser, destination: PageDestination
) -> Response:
    """The rows show what is in stock where the shopper's goods would go."""
    country = destination.country
    best, rated = await asyncio.gather(
        _search(
            runtime,
            search.SearchRequest(
                sort="best_selling",
                limit=BEST_SELLERS,
                facets=frozenset(),
                snippets=False,
                currency=runtime.settings.currency,
                country=country,
            ),
        ),
        _search(
            runtime,
            search.SearchRequest(
                filters=search.Filters(in_stock=True),
                sort="rating",
                limit=FEATURED,
                facets=frozenset(),
                snippets=False,
                currency=runtime.settings.currency,
                country=country,
            ),
        ),
    )
    async with runtime.db.transaction() as uow:
        tree = await search.category_tree(uow, runtime)
        viewer = recommendations.viewer_of(
            request, runtime.settings.secret_key, user.id if user else None
        )
        suggested = (
            await recommendations.for_you(
                uow,
                runtime,
                user_id=viewer.user_id,
                guest_key=viewer.guest_key,
                country=country,
                limit=FOR_YOU,
                cart_owner=cart_owner(request, user, runtime.settings),
            )
            if viewer.user_id is not None or viewer.cookie_returned
            else None  # a first visit: nothing to go on, the best sellers below say it all
        )
        # A small link when a flash sale is live or coming.
        flash_sales = await flashsale.list_sales(uow, current_only=True, limit=2)
    return render(
        request,
        "shop/home.html",
        {
            "flash_sales": flash_sales,
            "tree": tree,
            # Only when personal: the best sellers are the row below.
            "for_you": suggested.items if suggested is not None and suggested.personal else [],
            "best_sellers": [card_view(h) for h in best.hits] if best else [],
            "top_rated": [card_view(h) for h in rated.hits] if rated else [],
            "index_ready": best is not None,
        },
    )


# --------------------------------------------------------------------------------------------
# Listings


def _category_children(
    facets: dict[str, Any] | None, parent_path: str | None, depth: int
) -> list[dict[str, Any]]:
    nodes = (facets or {}).get("category") or []
    prefix = f"{parent_path}/" if parent_path else ""
    return [
        n
        for n in nodes
        if n["depth"] == depth and (not prefix or str(n["path"]).startswith(prefix))
    ]


def _listing_page(
    request: Request,
    *,
    listing: lst.Listing,
    result: search.SearchResult | None,
    base: str,
    heading: str,
    category_links: list[lst.FacetLink],
    category_label: str | None,
    extra: dict[str, Any],
) -> Response:
    facets = result.facets if result else None
    pairs = listing.pairs()
    next_href = None
    if result is not None and result.next_cursor:
        next_href = lst.href(base, [*pairs, ("cursor", result.next_cursor)])
    sort_labels = dict(lst.SORT_LABELS)
    if not listing.q:
        # Browsing, "best match" is best selling: one option, not two.
        sort_labels["relevance"] = lst.BROWSE_SORT_LABEL
        if listing.sort != "best_selling":
            del sort_labels["best_selling"]
    context = {
        "listing": listing,
        "result": result,
        "cards": [card_view(h) for h in result.hits] if result else [],
        "total": result.total if result else 0,
        "base": base,
        "heading": heading,
        "groups": lst.facet_groups(listing, facets, base, category_links=category_links),
        "chips": lst.chips(listing, facets, base, category_label=category_label),
        "clear_href": lst.href(base, [("q", listing.q)] if listing.q else []),
        "next_href": next_href,
        "first_href": lst.href(base, pairs) if listing.cursor else None,
        "sort_labels": sort_labels,
        "sort_hidden": lst.hidden_inputs(listing, skip=("sort",)),
        "query": listing.q,
        "index_ready": result is not None,
        **extra,
    }
    status = 200 if result is not None else 503
    return render(request, "shop/listing.html", context, status_code=status)


@router.get("/search", response_class=HTMLResponse)
async def search_page(
    request: Request, runtime: RuntimeDep, user: BriefUser, destination: PageDestination
) -> Response:
    settings = runtime.settings
    listing = lst.parse_listing(request.query_params, settings.currency, destination.country)
    result = await _search(runtime, listing.request(user_id=user.id if user else None))
    facets = result.facets if result else None
    base = "/search"
    pairs = listing.pairs()
    selected = next(
        (n for n in (facets or {}).get("category") or [] if n["value"] == listing.category), None
    )
    if selected is not None:
        nodes = _category_children(facets, selected["path"], selected["depth"] + 1)
    else:
        nodes = _category_children(facets, None, 0)
    category_links = [
        lst.FacetLink(
            n["label"],
            int(n["count"]),
            lst.replaced(base, pairs, {"category": n["value"]}),
            False,
        )
        for n in nodes
    ]
    if listing.q:
        heading = f"Results for “{listing.q}”"
    elif selected is not None:
        heading = str(selected["label"])
    else:
        heading = "All products"
    return _listing_page(
        request,
        listing=listing,
        result=result,
        base=base,
        heading=heading,
        category_links=category_links,
        category_label=str(selected["label"]) if selected else listing.category,
        extra={"category": None, "breadcrumb": [], "page_kind": "search"},
    )


@router.get("/c/{path:path}", response_class=HTMLResponse)
async def category_page(
    path: str,
    request: Request,
    runtime: RuntimeDep,
    user: BriefUser,
    destination: PageDestination,
) -> Response:
    """A category by its path (``/c/home-kitchen/cookware``) or its slug (``/c/cookware``)."""
    slug = path.strip("/").rsplit("/", 1)[-1]
    found = None
    if lst.SLUG.fullmatch(slug):
        async with runtime.db.transaction() as uow:
            found = await search.category_subtree(uow, runtime, slug)
    if found is None:
        raise not_found("Category", path)
    node, ancestors = found
    category = node.category
    base = f"/c/{category.path}"
    if path.strip("/") != category.path:
        query = request.url.query
        return redirect(base + (f"?{query}" if query else ""), status_code=308)
    listing = lst.parse_listing(
        request.query_params, runtime.settings.currency, destination.country
    )
    listing.category = None  # the path says which category
    result = await _search(
        runtime, listing.request(category=category.slug, user_id=user.id if user else None)
    )
    facets = result.facets if result else None
    counts = {
        n["path"]: int(n["count"])
        for n in _category_children(facets, category.path, category.depth + 1)
    }
    pairs = listing.pairs()
    category_links = [
        lst.FacetLink(
            child.category.name,
            counts.get(child.category.path, 0),
            lst.href(f"/c/{child.category.path}", pairs),
        )
        for child in node.children
        if counts.get(child.category.path)
    ]
    return _listing_page(
        request,
        listing=listing,
        result=result,
        base=base,
        heading=category.name,
        category_links=category_links,
        category_label=None,
        extra={
            "category": category,
            "children": node.children,
            "breadcrumb": [(a.name, f"/c/{a.path}") for a in ancestors],
            "page_kind": "category",
        },
    )


@router.get("/search/suggest", response_class=HTMLResponse)
async def suggest(request: Request, runtime: RuntimeDep) -> Response:
    """Autocomplete as the shopper types: a small HTML fragment of links (htmx swaps it under
    the header's search box)."""
    text = (request.query_params.get("q") or "").strip()[: search.MAX_QUERY_CHARS]
    found: dict[str, list[dict[str, Any]]] = {"products": [], "brands": [], "categories": []}
    if text:
        try:
            found = await search.suggest(runtime, text)
        except Problem as exc:
            if exc.code != "search_unavailable":
                raise
    response = render(request, "shop/_suggest.html", {"found": found, "text": text})
    response.headers["Cache-Control"] = "no-store"
    return response


# --------------------------------------------------------------------------------------------
# Deliver to


DELIVER_TO_MAX_AGE = 365 * 24 * 3600


@router.post("/deliver-to", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def deliver_to(request: Request, runtime: RuntimeDep) -> Response:
    """The header's "Deliver to": keep the chosen country (one the shop serves) in a cookie,
    and go back to the page it was chosen on."""
    form = await form_of(request)
    response = redirect(safe_next(text_field(form, "next", 2000)))
    try:
        async with runtime.db.transaction() as uow:
            country = await identity.check_served(uow, text_field(form, "country", 10))
    except Problem as exc:
        if exc.status != 422:
            raise
        flash(request, response, exc.detail, "error")
        return response
    response.set_cookie(
        DELIVER_TO_COOKIE,
        country,
        max_age=DELIVER_TO_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=runtime.settings.cookie_secure,
    )
    return response


# --------------------------------------------------------------------------------------------
# Product page


@router.get("/p/{ident}", response_class=HTMLResponse)
async def product_page(
    ident: str,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: PageUser,
    destination: PageDestination,
    variant: str | None = None,
    rsort: str | None = None,
    rstars: str | None = None,
    rcursor: str | None = None,
    sellers_sort: str | None = None,
) -> Response:
    """A product: images, price, rating, the variant picker and "Add to cart", who sells it
    ("Other sellers" in the ``sellers_sort`` order), then its reviews (``rsort``, ``rstars``
    and ``rcursor`` choose their order, stars and page)."""
    sort = rsort if rsort in reviews.SORTS else "helpful"
    stars = int(rstars) if rstars in ("1", "2", "3", "4", "5") else None
    query = reviews.ReviewQuery(
        sort=sort,  # type: ignore[arg-type]
        stars=stars,
        limit=REVIEWS_PER_PAGE,
        cursor=rcursor[:1000] if rcursor else None,
    )
    try:
        detail = await search.product_detail(
            uow,
            runtime,
            ident,
            variant=variant,
            threshold=runtime.settings.low_stock_threshold,
            review_query=query,
            viewer_id=user.id if user else None,
            destination=destination,
        )
    except Problem as exc:
        if exc.code != "invalid_cursor":
            raise
        # A stale or foreign page link: the first page of the same reviews.
        return redirect(_reviews_href(ident, sort, stars, None), status_code=303)
    if detail is None:
        raise not_found("Product", ident)
    view = detail.product
    section = detail.reviews
    arrivals = await checkout.variant_arrivals(
        uow,
        [c.id for c in detail.choices],
        destination.country,
        checkout.delivery_clock(runtime.settings),
    )
    offers_sort = seller_views.chosen_sort(sellers_sort)
    offers = await marketplace.product_sellers(uow, view.id, destination.country, sort=offers_sort)
    suggested = await recommendations.page_lists(
        uow,
        runtime,
        view.id,
        country=destination.country,
        cart_owner=cart_owner(request, user, runtime.settings),
    )
    # The view is recorded here, on the storefront's page, not on the API's product reads.
    signals = await recommendations.page_signals(
        uow,
        recommendations.viewer_of(request, runtime.settings.secret_key, user.id if user else None),
        view.id,
        secret_key=runtime.settings.secret_key,
        limit=RECENTLY_VIEWED,
    )
    next_href = (
        _reviews_href(view.id, sort, stars, section.page.next_cursor)
        if section.page.next_cursor
        else None
    )
    response = render(
        request,
        "shop/product.html",
        {
            "product": view,
            "choices": detail.choices,
            "chosen": detail.chosen,
            "option_names": detail.option_names,
            "rating": detail.rating,
            "breadcrumb": [(name, f"/c/{path}") for name, path in detail.breadcrumb],
            "in_stock": detail.in_stock,
            "arrivals": arrivals,
            "max_quantity": runtime.settings.cart_max_line_quantity,
            "self_url": f"/p/{quote(view.id)}",
            "reviews": section,
            "review_sorts": REVIEW_SORTS,
            "review_stars": stars,
            "reviews_next": next_href,
            "reviews_first": _reviews_href(view.id, sort, stars, None) if rcursor else None,
            "report_reasons": REPORT_REASONS,
            "login_href": "/account/login?next=" + quote(f"/p/{view.id}#reviews", safe="/"),
            "suggested": suggested,
            "saved": signals.saved,
            "recently_viewed": signals.recently_viewed,
            **seller_views.sellers_context(
                offers,
                shop_name=runtime.settings.shop_name,
                product_id=view.id,
                chosen_variant=detail.chosen.id if detail.chosen else None,
                sort=offers_sort,
            ),
        },
    )
    if signals.cookie is not None:
        recommendations.set_viewer_cookie(response, runtime.settings, signals.cookie)
    return response


RECENTLY_VIEWED = 8
REVIEWS_PER_PAGE = 10
REVIEW_SORTS = (
    ("helpful", "Most helpful"),
    ("newest", "Newest"),
    ("highest", "Highest rating"),
    ("lowest", "Lowest rating"),
)
REPORT_REASONS = (("spam", "Spam"), ("offensive", "Offensive"), ("off_topic", "Off-topic"))


def _reviews_href(product: str, sort: str, stars: int | None, cursor: str | None) -> str:
    params = [("rsort", sort)]
    if stars is not None:
        params.append(("rstars", str(stars)))
    if cursor:
        params.append(("rcursor", cursor))
    return f"/p/{quote(product, safe='')}?{urlencode(params)}#reviews"
