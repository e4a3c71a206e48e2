"""What the storefront's pages read most, through the page cache (:mod:`mercato.cache`).

Cached: the data behind a page, never a page (pages carry the shopper's cart count, a CSRF
token, personal rows):

* ``product``: a product with its variants' stock spread and its breadcrumb, by product id,
  tagged with the product (and the categories, whose names the breadcrumb shows);
* ``reviews``: a product's review section as an anonymous shopper sees it, by product and
  query, tagged with the product;
* ``categories``: the category tree and each category's subtree, tagged ``categories``;
* ``listing``: search answers (listings, category pages, the home page's rows), keyed by the
  index generation they were computed from, so an index commit makes them stale by itself and
  they need no tag; answers re-ranked for one customer are never cached.

:func:`forget_changed`, an outbox consumer, bumps the tags: catalog changes (products,
variants, categories), every stock change of a variant (its product's page: whether a variant
is in stock depends on the shopper's country, so any change may flip it somewhere) and a
product's rating (a review approved or withdrawn).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from mercato import cache
from mercato.catalog import service as catalog
from mercato.catalog.service import ProductView
from mercato.db import UnitOfWork, utcnow
from mercato.events import Event
from mercato.inventory import service as inventory
from mercato.reviews import service as reviews
from mercato.runtime import Runtime
from mercato.search.query import SearchResult

CATEGORIES = "categories"
CONSUMER = "page-cache"
EVENT_TYPES = (
    "ProductCreated",
    "ProductUpdated",
    "ProductArchived",
    "VariantCreated",
    "VariantUpdated",
    "StockChanged",
    "CategoryCreated",
    "CategoryUpdated",
    reviews.PRODUCT_RATING_CHANGED,
)


def product_tag(product_id: str) -> str:
    return f"p:{product_id}"


def digest(*parts: Any) -> str:
    """A key for structured input, the same in every process (sets sorted, dataclasses by
    field), short enough for Redis."""
    text = json.dumps([_plain(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


# --------------------------------------------------------------------------------------------
# The product page


@dataclass(frozen=True, slots=True)
class ProductData:
    """What a product page shows of the catalog and the stock, for any shopper."""

    view: ProductView
    spreads: dict[str, inventory.StockSpread]
    breadcrumb: list[tuple[str, str]]


def _breadcrumb(view: ProductView, names: Mapping[str, str]) -> list[tuple[str, str]]:
    parts = view.category.path.split("/")
    crumbs = []
    for i in range(1, len(parts) + 1):
        path = "/".join(parts[:i])
        crumbs.append((names.get(path, parts[i - 1]), path))
    return crumbs


async def load_product(uow: UnitOfWork, view: ProductView | None) -> ProductData | None:
    """``view`` with its stock spread and breadcrumb, read afresh."""
    if view is None:
        return None
    spreads = await inventory.stock_spreads(uow, [v.id for v in view.variants])
    names = await catalog.category_names_by_path(uow)
    return ProductData(view, spreads, _breadcrumb(view, names))


async def product_data(uow: UnitOfWork, runtime: Runtime, product_id: str) -> ProductData | None:
    """The active product ``product_id`` with its stock spread and breadcrumb; None when there
    is none to show (remembered too, until the product is created)."""

    async def load() -> ProductData | None:
        return await load_product(uow, await catalog.get_product(uow, product_id))

    return await cache.read_through(
        runtime, "product", product_id, (product_tag(product_id), CATEGORIES), load
    )


async def review_section(
    uow: UnitOfWork,
    runtime: Runtime,
    product_id: str,
    query: reviews.ReviewQuery,
    *,
    viewer_id: str | None,
) -> reviews.ReviewSection:
    """A product's reviews as the page shows them; a signed-in viewer's (with their own review
    and what they may do) is never cached."""

    async def load() -> reviews.ReviewSection:
        return await reviews.review_section(
            uow, product_id, query, viewer_id=viewer_id, secret_key=runtime.settings.secret_key
        )

    if viewer_id is not None:
        return await load()
    key = f"{product_id}:{digest(query)}"
    return await cache.read_through(runtime, "reviews", key, (product_tag(product_id),), load)


# --------------------------------------------------------------------------------------------
# Listings


async def read_through_listing(
    runtime: Runtime, key: str, answer: Callable[[], Awaitable[SearchResult]]
) -> SearchResult:
    return await cache.read_through(runtime, "listing", key, (), answer)


# --------------------------------------------------------------------------------------------
# Categories


async def category_tree(uow: UnitOfWork, runtime: Runtime) -> list[catalog.CategoryNode]:
    async def load() -> list[catalog.CategoryNode]:
        return await catalog.get_category_tree(uow)

    return await cache.read_through(runtime, "categories", "tree", (CATEGORIES,), load)


async def category_subtree(
    uow: UnitOfWork, runtime: Runtime, slug: str
) -> tuple[catalog.CategoryNode, list[catalog.CategoryInfo]] | None:
    """A category with its descendants and its ancestors (:func:`catalog.get_category_subtree`)."""

    async def load() -> tuple[catalog.CategoryNode, list[catalog.CategoryInfo]] | None:
        return await catalog.get_category_subtree(uow, slug)

    return await cache.read_through(runtime, "categories", f"slug:{slug}", (CATEGORIES,), load)


# --------------------------------------------------------------------------------------------
# Forgetting


async def forget_changed(runtime: Runtime, event: Event) -> None:
    """Bump the tags of what ``event`` changed (after its transaction committed: the outbox
    delivers only committed events). A failure is retried with the event."""
    ttl = runtime.settings.page_cache_ttl_seconds
    if not cache.enabled(runtime) or utcnow() - event.occurred_at > timedelta(seconds=ttl):
        return  # every entry stored before it has expired (a new consumer's backlog, say)
    if event.type.startswith("Category"):
        await cache.bump(runtime, CATEGORIES)
        return
    product_id = event.payload.get("product_id")
    if not isinstance(product_id, str):
        if event.type.startswith("Product"):
            product_id = event.aggregate_id
        else:  # a variant's event that does not name its product
            variant_id = str(event.payload.get("variant_id") or event.aggregate_id)
            async with runtime.db.transaction() as uow:
                found = await catalog.get_variants(uow, [variant_id])
            if variant_id not in found:
                return
            product_id = found[variant_id].product_id
    await cache.bump(runtime, product_tag(product_id))
