"""The storefront's reads: searching and suggesting from the index, the product listing (from
the index, or the catalog while none is built), products with what shoppers may know of their
stock, the product page with its reviews, and ratings as the index holds them.

These compose the catalog, the stock and the index, which is why they live here rather than in
the catalog (which sits below inventory and search)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from mercato.catalog import service as catalog
from mercato.catalog.service import ProductView, StockNote
from mercato.db import UnitOfWork
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.problems import validation_problem
from mercato.reviews import service as reviews
from mercato.runtime import Runtime
from mercato.search import pagecache, personal
from mercato.search import query as q
from mercato.search.reach import reach
from mercato.search.replica import consumer_name, engine_for, unavailable
from mercato.search.synonyms import current_synonyms

PRODUCT_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,219}")

log = logging.getLogger("mercato.search")


# --------------------------------------------------------------------------------------------
# Answering


async def search(runtime: Runtime, request: q.SearchRequest) -> q.SearchResult:
    """The request's answer; with ``request.country`` (the shopper's destination), "in stock"
    means units in a warehouse shipping there, for the filter, its count, the hits and the
    ranking. With ``request.user_id`` (a signed-in customer), a relevance-ranked answer with
    words has its top re-ordered by the customer's affinities (:mod:`.personal`)."""
    reader = engine_for(runtime).reader()
    if reader is None:
        raise unavailable()
    synonyms = await current_synonyms(runtime)
    affinity = personal.NO_AFFINITY
    if request.sort == "relevance" and q.words_of(request.q):
        affinity = await personal.customer_affinity(runtime, request.user_id)
    if request.country is not None:
        reached = await reach(runtime, request.country)
        request = dataclasses.replace(
            request, filters=dataclasses.replace(request.filters, reach=reached)
        )

    async def answer() -> q.SearchResult:
        try:
            # Off the event loop: Tantivy releases the GIL, so other requests go on meanwhile.
            return await asyncio.to_thread(
                functools.partial(
                    q.search,
                    reader,
                    request,
                    secret_key=runtime.settings.secret_key,
                    synonyms=synonyms,
                    affinity=affinity,
                )
            )
        except (ValueError, OSError) as exc:  # the engine, never the shopper's input
            log.exception("search failed")
            raise unavailable() from exc

    generation = reader.snapshot().generation
    if affinity is not personal.NO_AFFINITY or generation.startswith("unsettled"):
        return await answer()  # one customer's ranking, or a commit landing: not shared
    # The same answer for every shopper asking the same of this generation of the index: a
    # commit (catalog, stock, ratings, sales) names a new generation, so no tag is needed.
    shared = dataclasses.replace(request, user_id=None)  # who asked changes nothing here
    key = pagecache.digest(reader.version, generation, shared, synonyms.groups)
    return await pagecache.read_through_listing(runtime, key, answer)


async def suggest(runtime: Runtime, text: str) -> dict[str, list[dict[str, Any]]]:
    reader = engine_for(runtime).reader()
    if reader is None:
        raise unavailable()
    try:
        return q.suggest(reader, text)
    except (ValueError, OSError) as exc:
        log.exception("suggest failed")
        raise unavailable() from exc


async def _listing_from_index(
    uow: UnitOfWork,
    runtime: Runtime,
    query: catalog.ProductQuery,
    cursor: str | None,
    sort: str,
) -> catalog.ProductPage | None:
    """The public product listing read from the index; None when the catalog query must answer
    (no index built yet, or a cursor the catalog query issued)."""
    reader = engine_for(runtime).reader()
    secret = runtime.settings.secret_key
    if reader is None or (cursor is not None and not q.is_search_cursor(secret, cursor)):
        return None
    slug, brand = query.category_slug, query.brand_slug
    if slug is not None and await catalog.get_category_by_slug(uow, slug) is None:
        raise validation_problem("category", f"no category {slug!r}", code="unknown_category")
    if brand is not None and await catalog.get_brand_by_slug(uow, brand) is None:
        raise validation_problem("brand", f"no brand {brand!r}", code="unknown_brand")
    filters = q.Filters(
        category=query.category_slug,
        brands=(query.brand_slug,) if query.brand_slug else (),
        min_price=query.min_price,
        max_price=query.max_price,
        currency=query.currency,
        attributes={k: list(v) for k, v in query.attributes.items()},
    )
    try:
        ids, next_cursor = await asyncio.to_thread(
            functools.partial(
                q.list_ids, reader, filters, sort, query.limit, cursor, secret_key=secret
            )
        )
    except (ValueError, OSError):
        log.exception("listing from the index failed; answering from the catalog")
        return None
    views = await catalog.get_products(uow, ids, include_inactive=False)
    # A product archived a moment ago may still be in the index: it is left out of the page.
    return catalog.ProductPage([views[i] for i in ids if i in views], next_cursor)


@dataclass(frozen=True, slots=True)
class StockedProducts:
    """Products with what shoppers may know of each variant's stock (by variant id)."""

    items: list[ProductView]
    next_cursor: str | None
    stock: dict[str, StockNote]
    ratings: dict[str, reviews.RatingSummary] = field(default_factory=dict)
    """The figures of their approved reviews (a single product's answer only)."""


async def _stock(
    uow: UnitOfWork, products: Sequence[ProductView], country: str | None = None
) -> dict[str, StockNote]:
    variant_ids = [v.id for p in products for v in p.variants]
    return await inventory.stock_notes(uow, variant_ids, country)


async def list_products(
    uow: UnitOfWork,
    runtime: Runtime,
    query: catalog.ProductQuery,
    cursor: str | None,
    *,
    best_selling: bool = False,
    country: str | None = None,
) -> StockedProducts:
    """The public product listing: from the index (then read by id from the catalog), or from
    the catalog's own query while no index is built and for the pages whose cursor it issued;
    with the variants' stock (for a shopper in ``country``: what warehouses shipping there
    hold), one read for the whole page.

    ``best_selling`` (by sales rank, instead of ``query.sort``) only the index can answer: 503
    ``search_unavailable`` without one."""
    sort = "best_selling" if best_selling else query.sort
    page = await _listing_from_index(uow, runtime, query, cursor, sort)
    if page is None and best_selling:
        secret = runtime.settings.secret_key
        if cursor is not None and not q.is_search_cursor(secret, cursor):
            raise q.invalid_cursor()
        raise unavailable()
    if page is None:
        page = await catalog.list_products(
            uow, query, secret_key=runtime.settings.secret_key, cursor=cursor
        )
    stock = await _stock(uow, page.items, country)
    return StockedProducts(page.items, page.next_cursor, stock)


async def product(
    uow: UnitOfWork,
    product_id: str,
    *,
    include_inactive: bool = False,
    country: str | None = None,
) -> StockedProducts | None:
    """A product with its variants' stock for delivery to ``country`` and its rating; drafts
    and archived products (and inactive variants) only with ``include_inactive`` (staff). None
    when there is none to show."""
    view = await catalog.get_product(uow, product_id, include_inactive=include_inactive)
    if view is None:
        return None
    ratings = await reviews.ratings(uow, [view.id])
    return StockedProducts([view], None, await _stock(uow, [view], country), ratings)


# --------------------------------------------------------------------------------------------
# The shop's product page


@dataclass(frozen=True, slots=True)
class VariantChoice:
    id: str
    sku: str
    label: str
    options: dict[str, str]
    price: int
    compare_at: int | None
    currency: str
    available: int
    stock_text: str
    available_elsewhere: bool = False
    """None can reach the destination, but warehouses shipping elsewhere have some."""

    @property
    def in_stock(self) -> bool:
        return self.available > 0


@dataclass(frozen=True, slots=True)
class ProductDetail:
    """A product as its page shows it: the variants to choose from with their stock, the one
    chosen first, the option names in order, its rating (average, count), the category path
    as (name, path) from the root, and its reviews."""

    product: ProductView
    choices: list[VariantChoice]
    chosen: VariantChoice | None
    option_names: list[str]
    rating: tuple[float, int] | None
    breadcrumb: list[tuple[str, str]]
    reviews: reviews.ReviewSection

    @property
    def in_stock(self) -> bool:
        return any(c.in_stock for c in self.choices)


def stock_text(available: int, threshold: int, *, out_of_reach_of: str | None = None) -> str:
    """What the page says of a variant's stock; ``out_of_reach_of`` names the country its
    units cannot be delivered to, when that is why none is available."""
    if available <= 0:
        if out_of_reach_of is not None:
            return f"Not available for delivery to {out_of_reach_of}"
        return "Out of stock"
    return inventory.low_stock_hint(available, threshold) or "In stock"


async def find_product(uow: UnitOfWork, ident: str) -> ProductView | None:
    """The active product a shop URL names, by id (``prd_...``) or by slug."""
    if ident.startswith("prd_"):
        return await catalog.get_product(uow, ident)
    if PRODUCT_SLUG.fullmatch(ident):
        return await catalog.get_product_by_slug(uow, ident)
    return None


def _choice(
    v: catalog.VariantView,
    spread: inventory.StockSpread,
    threshold: int,
    destination: identity.Destination | None,
) -> VariantChoice:
    country = destination.country if destination is not None else None
    units = spread.for_country(country)
    elsewhere = spread.only_elsewhere(country)
    return VariantChoice(
        id=v.id,
        sku=v.sku,
        label=v.title or " / ".join(v.options.values()) or "Standard",
        options=dict(v.options),
        price=v.price,
        # A compare-at price is only a saving when it is above the price.
        compare_at=v.compare_at if v.compare_at and v.compare_at > v.price else None,
        currency=v.currency,
        available=max(units, 0),
        stock_text=stock_text(
            units,
            threshold,
            out_of_reach_of=destination.country_name if elsewhere and destination else None,
        ),
        available_elsewhere=elsewhere,
    )


async def product_detail(
    uow: UnitOfWork,
    runtime: Runtime,
    ident: str,
    *,
    variant: str | None = None,
    threshold: int,
    review_query: reviews.ReviewQuery | None = None,
    viewer_id: str | None = None,
    destination: identity.Destination | None = None,
) -> ProductDetail | None:
    """The product page's content; ``variant`` is the one asked for, else the first in stock,
    else the first; the reviews as ``review_query`` asks, with what ``viewer_id`` (signed in)
    may do; stock as can be delivered to ``destination`` (anywhere when ``None``). None when
    the URL names no product a shopper may see.

    The rating is the reviews' own figures (current as soon as the change is delivered to the
    page cache); in demo mode a product no
    approved review rates yet shows the demo figure the index holds for it."""
    if ident.startswith("prd_"):
        data = await pagecache.product_data(uow, runtime, ident)
    else:  # a slug (links carry ids): read afresh
        data = await pagecache.load_product(uow, await find_product(uow, ident))
    if data is None:
        return None
    view, spreads = data.view, data.spreads
    section = await pagecache.review_section(
        uow,
        runtime,
        view.id,
        review_query or reviews.ReviewQuery(),
        viewer_id=viewer_id,
    )
    figures = section.summary
    rating: tuple[float, int] | None = None
    if figures.rounded is not None:
        rating = (figures.rounded, figures.count)
    elif runtime.settings.demo_mode:
        rating = (await product_ratings(runtime, [view.id])).get(view.id)
    choices = [
        _choice(v, spreads.get(v.id, inventory.StockSpread()), threshold, destination)
        for v in view.variants
    ]
    chosen = next((c for c in choices if c.id == variant), None)
    chosen = chosen or next((c for c in choices if c.in_stock), None)
    chosen = chosen or (choices[0] if choices else None)
    option_names: list[str] = []
    for c in choices:
        option_names += [n for n in c.options if n not in option_names]
    return ProductDetail(
        product=view,
        choices=choices,
        chosen=chosen,
        option_names=option_names,
        rating=rating,
        breadcrumb=data.breadcrumb,
        reviews=section,
    )


# --------------------------------------------------------------------------------------------
# Status


async def status(runtime: Runtime) -> dict[str, Any]:
    engine = engine_for(runtime)
    reader = engine.reader(fresh=True)
    if reader is None:
        return {"built": False, "version": engine.store.current()}
    meta = engine.store.read_meta(reader.version) or reader.meta
    searcher = reader.searcher()
    return {
        "built": True,
        "version": reader.version,
        "schema": meta.schema,
        "built_at": meta.built_at.isoformat(),
        "committed_at": meta.committed_at.isoformat(),
        "documents": searcher.num_docs,
        "segments": searcher.num_segments,
        "size_bytes": engine.store.size_bytes(reader.version),
        "consumer": consumer_name(),
    }


# --------------------------------------------------------------------------------------------
# For the storefront's product page


async def product_ratings(
    runtime: Runtime, product_ids: Collection[str]
) -> dict[str, tuple[float, int]]:
    """(average rating, number of ratings) per product, as the index holds them. Products
    without a rating, not in the index, or with no index built yet are absent."""
    from tantivy import Occur, Query

    from mercato.search.engine import SCHEMA

    wanted = sorted(set(product_ids))[: q.MAX_LIMIT]
    reader = engine_for(runtime).reader()
    if reader is None or not wanted:
        return {}
    searcher = reader.searcher()
    terms = [(Occur.Should, Query.term_query(SCHEMA, "id", pid)) for pid in wanted]
    found: dict[str, tuple[float, int]] = {}
    for _, address in searcher.search(Query.boolean_query(terms), len(wanted)).hits:
        doc = searcher.doc(address)
        pid, rating, count = (doc.get_first(n) for n in ("id", "rating", "rating_count"))
        if pid is not None and rating and count:
            found[str(pid)] = (float(rating), int(count))
    return found
