"""Search rules: keeping the index a faithful projection of the catalog, and answering from it.

The index is derived data. ``reindex`` rebuilds it from the database into a new version and
switches to it; the outbox consumer keeps it fresh in between (a product change is searchable
within a second); deleting the index and running ``reindex`` loses nothing.

Feeding: the consumer only notes which products changed (the dispatcher hands it events one at
a time); the ``search.sync`` job then reads those products in batches, rewrites their documents
and commits. A crash between a delivery and the commit would lose the change, so a writer that
opens an index first replays the events delivered since that index's last commit.

Ratings and units sold: the reviews and orders modules do not publish them yet, so every product
has rating 0 ("not rated") and 0 units sold, except in demo mode where both are derived from the
product id (``engine.demo_signals``) so that facets and sorts have something to show.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mercato.catalog import service as catalog
from mercato.db import Database, utcnow
from mercato.events import OutboxDelivery, OutboxEvent
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.problems import Problem, not_found, validation_problem
from mercato.runtime import Runtime
from mercato.search import query as q
from mercato.search.engine import (
    IndexBusy,
    IndexStore,
    ProductSource,
    SearchEngine,
    VersionBuilder,
    demo_signals,
    to_document,
)
from mercato.search.models import Synonym

log = logging.getLogger("mercato.search")

EXTRAS_KEY = "search"
EVENT_TYPES = (
    "ProductCreated",
    "ProductUpdated",
    "ProductArchived",
    "VariantCreated",
    "VariantUpdated",
    "StockChanged",
    "CategoryUpdated",
)
SYNONYM_TTL = 5.0
REPLAY_MARGIN = timedelta(seconds=60)
BATCH = 1000
BUILD_MEMORY = 512_000_000
"""Indexing buffers of a full rebuild: fewer, larger segments answer faster (a million
products end up in about four segments rather than ten, about 10 % off each query)."""
BUILD_THREADS = 2


class SearchSettings(BaseSettings):
    """``MERCATO_SEARCH_*``: which replica this host's follower feeds, and writer memory."""

    model_config = SettingsConfigDict(env_prefix="MERCATO_SEARCH_", extra="ignore")

    replica: str = "default"  # "none" turns the worker's consumer off on this host
    writer_memory_mb: int = 64


@lru_cache(maxsize=1)
def search_settings() -> SearchSettings:
    return SearchSettings()


def consumer_name(replica: str | None = None) -> str | None:
    """The outbox consumer feeding this host's replica (each replica is its own consumer, so
    every host sees every event); None when this host keeps no replica."""
    name = (replica if replica is not None else search_settings().replica).strip()
    if name.lower() in {"", "none", "off"}:
        return None
    return "search-index" if name == "default" else f"search-index@{name}"


# --------------------------------------------------------------------------------------------
# The per-process engine

_ENGINES: weakref.WeakValueDictionary[Path, SearchEngine] = weakref.WeakValueDictionary()


def engine_for(runtime: Runtime) -> SearchEngine:
    """This process's engine for the runtime's data directory (one per directory, so a process
    never opens two writers on the same index)."""
    engine = runtime.extras.get(EXTRAS_KEY)
    if isinstance(engine, SearchEngine):
        return engine
    root = (Path(runtime.settings.data_dir) / "search").resolve()
    engine = _ENGINES.get(root)
    if engine is None:
        engine = SearchEngine(
            IndexStore(root), writer_memory=search_settings().writer_memory_mb * 1_000_000
        )
        _ENGINES[root] = engine
    runtime.extras[EXTRAS_KEY] = engine
    return engine


def unavailable() -> Problem:
    return Problem(
        503,
        "search_unavailable",
        "The search index has not been built yet; run `mercato reindex`.",
        title="Search unavailable",
    )


# --------------------------------------------------------------------------------------------
# Synonyms (a staff-edited list, applied at query time: no reindex needed)


@dataclass(frozen=True, slots=True)
class SynonymInfo:
    id: str
    terms: list[str]
    created_at: datetime


@dataclass
class _SynonymCache:
    synonyms: q.Synonyms
    loaded: float


def normalise_term(term: str) -> str:
    return " ".join(term.lower().split())


async def list_synonyms(session: AsyncSession) -> list[SynonymInfo]:
    rows = (await session.scalars(select(Synonym).order_by(Synonym.created_at, Synonym.id))).all()
    return [SynonymInfo(r.id, list(r.terms), r.created_at) for r in rows]


async def add_synonyms(session: AsyncSession, terms: Sequence[str]) -> SynonymInfo:
    """A new group; each term needs at least one word, and the group two different terms."""
    cleaned: list[str] = []
    for i, term in enumerate(terms):
        normal = normalise_term(term)
        if not q.words_of(normal):
            raise validation_problem(f"terms.{i}", "must contain a word")
        if normal not in cleaned:
            cleaned.append(normal)
    if len({tuple(w.stem for w in q.words_of(t)) for t in cleaned}) < 2:
        raise validation_problem("terms", "a group needs at least two different terms")
    for existing in await list_synonyms(session):
        if set(existing.terms) == set(cleaned):
            raise Problem(
                409, "synonyms_exist", "This synonym group exists already", id=existing.id
            )
    row = Synonym(id=new_id("syn"), terms=cleaned, created_at=utcnow())
    session.add(row)
    await session.flush()
    return SynonymInfo(row.id, list(row.terms), row.created_at)


async def delete_synonyms(session: AsyncSession, synonym_id: str) -> None:
    row = await session.get(Synonym, synonym_id)
    if row is None:
        raise not_found("Synonym group", synonym_id)
    await session.delete(row)
    await session.flush()


def forget_synonyms(runtime: Runtime) -> None:
    engine_for(runtime).synonyms = None


async def current_synonyms(runtime: Runtime) -> q.Synonyms:
    """The synonym groups, re-read from the database at most every few seconds per process."""
    engine = engine_for(runtime)
    cache = engine.synonyms
    now = time.monotonic()
    if isinstance(cache, _SynonymCache) and now - cache.loaded < SYNONYM_TTL:
        return cache.synonyms
    try:
        async with runtime.db.session() as session:
            groups = await list_synonyms(session)
    except Exception:
        if isinstance(cache, _SynonymCache):
            log.warning("synonyms could not be re-read; using the last list", exc_info=True)
            return cache.synonyms
        raise
    synonyms = q.Synonyms.of(g.terms for g in groups)
    engine.synonyms = _SynonymCache(synonyms, now)
    return synonyms


# --------------------------------------------------------------------------------------------
# Answering


async def search(runtime: Runtime, request: q.SearchRequest) -> q.SearchResult:
    reader = engine_for(runtime).reader()
    if reader is None:
        raise unavailable()
    synonyms = await current_synonyms(runtime)
    try:
        # Off the event loop: Tantivy releases the GIL, so other requests go on meanwhile.
        return await asyncio.to_thread(
            functools.partial(
                q.search, reader, request, secret_key=runtime.settings.secret_key, synonyms=synonyms
            )
        )
    except (ValueError, OSError) as exc:  # the engine, never the shopper's input
        log.exception("search failed")
        raise unavailable() from exc


async def suggest(runtime: Runtime, text: str) -> dict[str, list[dict[str, Any]]]:
    reader = engine_for(runtime).reader()
    if reader is None:
        raise unavailable()
    try:
        return q.suggest(reader, text)
    except (ValueError, OSError) as exc:
        log.exception("suggest failed")
        raise unavailable() from exc


async def list_products(
    runtime: Runtime,
    session: AsyncSession,
    query: catalog.ProductQuery,
    cursor: str | None,
) -> catalog.ProductPage | None:
    """The public product listing read from the index; None when the catalog query must answer
    (no index built yet, or a cursor the catalog query issued)."""
    reader = engine_for(runtime).reader()
    secret = runtime.settings.secret_key
    if reader is None or (cursor is not None and not q.is_search_cursor(secret, cursor)):
        return None
    slug, brand = query.category_slug, query.brand_slug
    if slug is not None and await catalog.get_category_by_slug(session, slug) is None:
        raise validation_problem("category", f"no category {slug!r}", code="unknown_category")
    if brand is not None and await catalog.get_brand_by_slug(session, brand) is None:
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
                q.list_ids, reader, filters, query.sort, query.limit, cursor, secret_key=secret
            )
        )
    except (ValueError, OSError):
        log.exception("listing from the index failed; answering from the catalog")
        return None
    views = await catalog.get_products(session, ids, include_inactive=False)
    # A product archived a moment ago may still be in the index: it is left out of the page.
    return catalog.ProductPage([views[i] for i in ids if i in views], next_cursor)


# --------------------------------------------------------------------------------------------
# Projecting products


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def load_sources(
    session: AsyncSession,
    product_ids: Collection[str],
    category_names: Mapping[str, str],
    *,
    demo: bool,
) -> dict[str, ProductSource]:
    """What the index should hold for these products; listed ones only (the others must go)."""
    products = await catalog.listed_products(session, product_ids)
    variant_ids = [v.id for p in products.values() for v in p.variants]
    stock = await inventory.availability(session, variant_ids) if variant_ids else {}
    found: dict[str, ProductSource] = {}
    for p in products.values():
        slugs = p.category_path.split("/")
        categories = [
            (slug, category_names.get("/".join(slugs[: i + 1]), slug))
            for i, slug in enumerate(slugs)
        ]
        categories[-1] = (slugs[-1], p.category_name)
        rating, rating_count, sales = demo_signals(p.id) if demo else (0.0, 0, 0)
        options = dict.fromkeys(
            (name, value) for v in p.variants for name, value in v.options.items()
        )
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
            min_price=p.min_price,
            max_price=p.max_price,
            in_stock=any(stock.get(v.id, 0) > 0 for v in p.variants),
            image=p.image,
            created_at=p.created_at,
            rating=rating,
            rating_count=rating_count,
            sales=sales,
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
        async with runtime.db.session() as session:
            total = await catalog.count_listed_products(session)
            names = await catalog.category_names_by_path(session)
        after: str | None = None
        done = 0
        while True:
            async with runtime.db.session() as session:
                ids = await catalog.listed_product_ids(session, after=after, limit=BATCH)
                if not ids:
                    break
                sources = await load_sources(session, ids, names, demo=runtime.settings.demo_mode)
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
    floor: datetime | None = None
    """Events older than this are in the index already (it was built from the database after
    them): a new replica, which is handed the whole outbox history, skips them."""

    def __bool__(self) -> bool:
        return bool(self.products or self.variants or self.categories)

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

    def take(self) -> PendingChanges:
        taken = PendingChanges(self.products, self.variants, self.categories, self.floor)
        self.products, self.variants, self.categories = set(), set(), set()
        return taken

    def merge(self, other: PendingChanges) -> None:
        self.products |= other.products
        self.variants |= other.variants
        self.categories |= other.categories


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
    async with db.session() as session:
        for event_type, aggregate_id, payload, occurred_at in await session.execute(query):
            found.note(event_type, aggregate_id, dict(payload or {}), occurred_at)
    return found


async def _affected_products(session: AsyncSession, changes: PendingChanges) -> set[str]:
    products = set(changes.products)
    if changes.variants:
        variants = await catalog.get_variants(session, changes.variants)
        products |= {v.product_id for v in variants.values()}
    for category_id in sorted(changes.categories):
        products |= set(await catalog.product_ids_in_category_tree(session, category_id))
    return products


_busy_warned: set[Path] = set()


async def sync_index(runtime: Runtime, *, bootstrap: bool, consumer: str | None = None) -> int:
    """Apply the pending changes to this host's index and commit; how many products changed.

    ``bootstrap``: build the index when there is none (the one-process default and a replica's
    follower do; a plain worker leaves that to ``mercato reindex``).
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
        if not bootstrap:
            return 0
        return max(1, (await reindex(runtime)).documents)
    if writer.needs_replay:
        PENDING.floor = writer.meta.built_at - REPLAY_MARGIN
        since = writer.meta.committed_at - REPLAY_MARGIN
        PENDING.merge(await replay(runtime.db, consumer, since, PENDING.floor))
        writer.needs_replay = False
    changes = PENDING.take()
    if not changes:
        return 0
    try:
        async with runtime.db.session() as session:
            products = sorted(await _affected_products(session, changes))
            names = await catalog.category_names_by_path(session)
        for start in range(0, len(products), BATCH):
            chunk = products[start : start + BATCH]
            async with runtime.db.session() as session:
                sources = await load_sources(session, chunk, names, demo=runtime.settings.demo_mode)
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
