"""Keeping the index a faithful projection of the catalog.

The index is derived data. ``reindex`` rebuilds it from the database into a new version and
switches to it; the outbox consumer keeps it fresh in between (a product change is searchable
within a second); deleting the index and running ``reindex`` loses nothing.

Feeding: the consumer only notes which products changed (the dispatcher hands it events one at
a time); the ``search.sync`` job then reads those products in batches, rewrites their documents
and commits. A crash between a delivery and the commit would lose the change, so a writer that
opens an index first replays the events delivered since that index's last commit.

``reindex`` and ``sync_index`` are the worker's and the command line's drivers: they read the
database in a short unit of work per batch (never one transaction across a whole rebuild) and
write the index in between, so they take the process's runtime rather than a unit of work.

Stock comes from the inventory as units per (variant, warehouse): a product's document names
the active warehouses holding units of one of its variants, and a search counts only those
shipping to the shopper's country (``StockChanged`` re-projects the variant's product).

Ratings come from the reviews module (its figures of approved reviews; a ``ProductRatingChanged``
event re-projects the product). Sales (net units sold over the window, and the decayed sales
rank) come from the orders module, which sits above this one: ``modules.wire`` registers its
reader in :data:`sales_readers`, and its ``SalesRanksChanged`` events re-project the products
whose figures changed. A product nobody bought in the window has 0 units sold and rank 0.

Demo mode: while the shop has no approved review of a product, or no sales figures at all (a
demo without order history), the rating and units sold are derived from the product id
(``engine.demo_signals``) so that sorts have something to show. Once any real order counts,
the placeholder sales are dropped for every product (real figures and placeholders are not
on one scale): the first figures (and the last ones leaving the window) re-project the whole
catalog.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from mercato.catalog import service as catalog
from mercato.db import Database, UnitOfWork, utcnow
from mercato.events import OutboxDelivery, OutboxEvent
from mercato.inventory import service as inventory
from mercato.reviews import service as reviews
from mercato.runtime import Runtime
from mercato.search.engine import (
    IndexBusy,
    ProductSource,
    SearchEngine,
    VersionBuilder,
    demo_signals,
    to_document,
)
from mercato.search.replica import consumer_name, engine_for

log = logging.getLogger("mercato.search")

SALES_RANKS_CHANGED = "SalesRanksChanged"
"""The orders module's event: ``{"product_ids": [...], "all": bool}`` (``all``: whether the
shop went from no sales figures to some, or back)."""
EVENT_TYPES = (
    "ProductCreated",
    "ProductUpdated",
    "ProductArchived",
    "VariantCreated",
    "VariantUpdated",
    "StockChanged",
    "CategoryUpdated",
    reviews.PRODUCT_RATING_CHANGED,
    SALES_RANKS_CHANGED,
    # A marketplace offer or a seller's standing changed: the product's featured price may.
    "ProductOffersChanged",
)
REPLAY_MARGIN = timedelta(seconds=60)
BATCH = 1000
BUILD_MEMORY = 512_000_000
"""Indexing buffers of a full rebuild: fewer, larger segments answer faster (a million
products end up in about four segments rather than ten, about 10 % off each query)."""
BUILD_THREADS = 2


# --------------------------------------------------------------------------------------------
# Projecting products


class Sales(Protocol):
    @property
    def units(self) -> int: ...
    @property
    def score(self) -> float: ...


SalesReader = Callable[[UnitOfWork, Collection[str]], Awaitable[tuple[bool, Mapping[str, Sales]]]]
"""``(uow, product_ids) -> (whether the shop has any sales figures, the products' figures)``."""
sales_readers: list[SalesReader] = []
"""Registered by ``modules.wire``: the orders module's sales ranks."""

FeaturedPriceReader = Callable[[UnitOfWork, Collection[str]], Awaitable[Mapping[str, int]]]
"""``(uow, product_ids) -> {product id: the price listings show}`` for the products whose price
is not simply their catalog price (a marketplace seller's offer wins their buy box)."""
featured_price_readers: list[FeaturedPriceReader] = []
"""Registered by ``modules.wire``: the marketplace's featured prices."""


async def _featured_prices(uow: UnitOfWork, product_ids: Collection[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for reader in featured_price_readers:
        found.update(await reader(uow, product_ids))
    return found


async def _sales(uow: UnitOfWork, product_ids: Collection[str]) -> tuple[bool, dict[str, Sales]]:
    known, found = False, dict[str, Sales]()
    for reader in sales_readers:
        some, figures = await reader(uow, product_ids)
        known = known or some
        found.update(figures)
    return known, found


def _max_price(catalog_max: int, featured: int | None) -> int:
    return catalog_max if featured is None else max(catalog_max, featured)


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def load_sources(
    uow: UnitOfWork,
    product_ids: Collection[str],
    category_names: Mapping[str, str],
    *,
    demo: bool,
) -> dict[str, ProductSource]:
    """What the index should hold for these products; listed ones only (the others must go)."""
    products = await catalog.listed_products(uow, product_ids)
    variant_ids = [v.id for p in products.values() for v in p.variants]
    stock = await inventory.available_by_warehouse(uow, variant_ids) if variant_ids else {}
    rated = await reviews.ratings(uow, products.keys())
    sales_known, sold = await _sales(uow, products.keys())
    featured = await _featured_prices(uow, products.keys()) if products else {}
    found: dict[str, ProductSource] = {}
    for p in products.values():
        slugs = p.category_path.split("/")
        categories = [
            (slug, category_names.get("/".join(slugs[: i + 1]), slug))
            for i, slug in enumerate(slugs)
        ]
        categories[-1] = (slugs[-1], p.category_name)
        rating, rating_count, units = demo_signals(p.id) if demo else (0.0, 0, 0)
        figures = rated.get(p.id)
        if figures is not None and figures.average is not None:
            rating, rating_count = figures.average, figures.count
        score = float(units)
        if sales_known:
            sales = sold.get(p.id)
            units, score = (sales.units, sales.score) if sales is not None else (0, 0.0)
        options = dict.fromkeys(
            (name, value) for v in p.variants for name, value in v.options.items()
        )
        stocked_in = tuple(sorted({w for v in p.variants for w in stock.get(v.id, {})}))
        found[p.id] = ProductSource(
            id=p.id,
            title=p.title,
            description=p.description,
            brand_slug=p.brand.slug if p.brand else None,
            brand_name=p.brand.name if p.brand else None,
            categories=tuple(categories),
            attributes={k: _attribute_text(v) for k, v in p.attributes.items()},
            options=tuple(options),
            skus=tuple(v.sku for v in p.variants),
            currency=p.currency,
            min_price=featured.get(p.id, p.min_price),
            max_price=_max_price(p.max_price, featured.get(p.id)),
            in_stock=bool(stocked_in),
            image=p.image,
            created_at=p.created_at,
            rating=rating,
            rating_count=rating_count,
            sales=units,
            sales_score=score,
            stocked_in=stocked_in,
        )
    return found


# --------------------------------------------------------------------------------------------
# Rebuilding


@dataclass(frozen=True, slots=True)
class ReindexStats:
    version: str
    documents: int
    seconds: float
    size_bytes: int
    path: Path


Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each batch of products."""


async def reindex(runtime: Runtime, progress: Progress | None = None) -> ReindexStats:
    """Rebuild the index from the database into a new version, then switch to it atomically.

    Searches keep using the previous version until the switch. Changes made while the build
    runs reach the new version too: the writer replays what was delivered since the build began.
    """
    engine = engine_for(runtime)
    started, clock = utcnow(), time.perf_counter()
    builder = VersionBuilder(engine.store, BUILD_MEMORY, BUILD_THREADS)
    try:
        async with runtime.db.transaction() as uow:
            total = await catalog.count_listed_products(uow)
            names = await catalog.category_names_by_path(uow)
        after: str | None = None
        done = 0
        while True:
            async with runtime.db.transaction() as uow:
                ids = await catalog.listed_product_ids(uow, after=after, limit=BATCH)
                if not ids:
                    break
                sources = await load_sources(uow, ids, names, demo=runtime.settings.demo_mode)
            for product_id in ids:
                source = sources.get(product_id)
                if source is not None:
                    builder.add(source)
            after, done = ids[-1], done + len(ids)
            if progress is not None:
                progress(done, max(total, done))
        builder.finish(started)
    except BaseException:
        builder.abort()
        raise
    engine.reader(fresh=True)
    seconds = time.perf_counter() - clock
    version, documents = builder.version, builder.documents
    log.info("search index %s built: %d products in %.1fs", version, documents, seconds)
    size = engine.store.size_bytes(version)
    return ReindexStats(version, documents, seconds, size, builder.path)


# --------------------------------------------------------------------------------------------
# Following the outbox


@dataclass
class PendingChanges:
    """What changed since the last commit: products, variants (stock) and categories."""

    products: set[str] = field(default_factory=set)
    variants: set[str] = field(default_factory=set)
    categories: set[str] = field(default_factory=set)
    everything: bool = False
    """Every listed product (the shop's sales figures appeared or went)."""
    floor: datetime | None = None
    """Events older than this are in the index already (it was built from the database after
    them): a new replica, which is handed the whole outbox history, skips them."""

    def __bool__(self) -> bool:
        return bool(self.products or self.variants or self.categories or self.everything)

    def note(
        self,
        event_type: str,
        aggregate_id: str,
        payload: Mapping[str, Any],
        occurred_at: datetime | None = None,
    ) -> None:
        if self.floor is not None and occurred_at is not None and occurred_at < self.floor:
            return
        if event_type.startswith("Product"):
            self.products.add(str(payload.get("product_id") or aggregate_id))
        elif event_type.startswith("Variant"):
            product_id = payload.get("product_id")
            if isinstance(product_id, str):
                self.products.add(product_id)
            else:
                self.variants.add(str(payload.get("variant_id") or aggregate_id))
        elif event_type == "StockChanged":
            self.variants.add(str(payload.get("variant_id") or aggregate_id))
        elif event_type == "CategoryUpdated":
            self.categories.add(str(payload.get("category_id") or aggregate_id))
        elif event_type == SALES_RANKS_CHANGED:
            self.products.update(str(p) for p in payload.get("product_ids") or ())
            self.everything = self.everything or bool(payload.get("all"))

    def take(self) -> PendingChanges:
        taken = PendingChanges(
            self.products, self.variants, self.categories, self.everything, self.floor
        )
        self.products, self.variants, self.categories = set(), set(), set()
        self.everything = False
        return taken

    def merge(self, other: PendingChanges) -> None:
        self.products |= other.products
        self.variants |= other.variants
        self.categories |= other.categories
        self.everything = self.everything or other.everything


PENDING = PendingChanges()
"""Noted by the consumer (which gets no runtime), applied by the sync job."""


async def replay(
    db: Database, consumer: str, since: datetime, floor: datetime | None = None
) -> PendingChanges:
    """The changes delivered to ``consumer`` since ``since``: what a crash may have lost
    (events older than ``floor`` are left out: the index was built after them)."""
    found = PendingChanges(floor=floor)
    query = (
        select(
            OutboxEvent.type, OutboxEvent.aggregate_id, OutboxEvent.payload, OutboxEvent.occurred_at
        )
        .join(OutboxDelivery, OutboxDelivery.event_seq == OutboxEvent.seq)
        .where(
            OutboxDelivery.consumer == consumer,
            OutboxDelivery.delivered_at >= since,
            OutboxEvent.type.in_(EVENT_TYPES),
        )
    )
    async with db.transaction() as uow:
        for event_type, aggregate_id, payload, occurred_at in await uow.execute(query):
            found.note(event_type, aggregate_id, dict(payload or {}), occurred_at)
    return found


async def _affected_products(uow: UnitOfWork, changes: PendingChanges, *, demo: bool) -> set[str]:
    products = set(changes.products)
    if changes.variants:
        variants = await catalog.get_variants(uow, changes.variants)
        products |= {v.product_id for v in variants.values()}
    for category_id in sorted(changes.categories):
        products |= set(await catalog.product_ids_in_category_tree(uow, category_id))
    if changes.everything and demo:
        # Only a demo shop's placeholder sales depend on whether any figures exist at all.
        after: str | None = None
        while ids := await catalog.listed_product_ids(uow, after=after, limit=BATCH):
            products.update(ids)
            after = ids[-1]
    return products


_busy_warned: set[Path] = set()


async def _rebuild_outdated(runtime: Runtime, engine: SearchEngine) -> int:
    try:
        with engine.rebuilding_outdated():
            log.warning("search index of an older schema: rebuilding it")
            return max(1, (await reindex(runtime)).documents)
    except IndexBusy:
        return 0  # another process of this host is rebuilding it


BUSY_LOOK_AGAIN = 5.0
"""Seconds a process that found the host's index writer taken waits before trying again."""
_busy_until: dict[Path, float] = {}


def feeds_index(runtime: Runtime) -> bool:
    """Whether this process may take the index's outbox consumer: it holds the host's index
    writer, or can take it (the process that held it stopped), or there is no index yet.

    What the consumer notes is applied by this same process's sync job, so on a host with two
    workers only the one writing the index must be handed its events (the other would note
    changes it cannot apply)."""
    engine = engine_for(runtime)
    if time.monotonic() < _busy_until.get(engine.root, 0.0):
        return False
    try:
        engine.writer()
    except IndexBusy:
        _busy_until[engine.root] = time.monotonic() + BUSY_LOOK_AGAIN
        return False
    return True


async def sync_index(runtime: Runtime, *, bootstrap: bool, consumer: str | None = None) -> int:
    """Apply the pending changes to this host's index and commit; how many products changed.

    ``bootstrap``: build the index when there is none (the one-process default and a replica's
    follower do; a plain worker leaves that to ``mercato reindex``). An index of an older
    schema is rebuilt either way: the shop had one, and after an upgrade nothing could read it.
    """
    engine = engine_for(runtime)
    consumer = consumer or consumer_name() or "search-index"
    try:
        writer = engine.writer()
    except IndexBusy:
        if engine.root not in _busy_warned:
            _busy_warned.add(engine.root)
            log.warning("another process writes the search index in %s; not syncing", engine.root)
        PENDING.take()
        return 0
    if writer is None:
        PENDING.take()
        if bootstrap:
            return max(1, (await reindex(runtime)).documents)
        if engine.outdated():
            return await _rebuild_outdated(runtime, engine)
        return 0
    if writer.needs_replay:
        PENDING.floor = writer.meta.built_at - REPLAY_MARGIN
        since = writer.meta.committed_at - REPLAY_MARGIN
        PENDING.merge(await replay(runtime.db, consumer, since, PENDING.floor))
        writer.needs_replay = False
    changes = PENDING.take()
    if not changes:
        return 0
    try:
        async with runtime.db.transaction() as uow:
            demo = runtime.settings.demo_mode
            products = sorted(await _affected_products(uow, changes, demo=demo))
            names = await catalog.category_names_by_path(uow)
        for start in range(0, len(products), BATCH):
            chunk = products[start : start + BATCH]
            async with runtime.db.transaction() as uow:
                sources = await load_sources(uow, chunk, names, demo=runtime.settings.demo_mode)
            for product_id in chunk:
                source = sources.get(product_id)
                writer.upsert(product_id, to_document(source) if source else None)
        writer.commit(utcnow())
        engine.committed(writer)
    except BaseException:
        PENDING.merge(changes)
        engine.close_writer()  # drops what was not committed; the next writer replays
        raise
    return len(products)
