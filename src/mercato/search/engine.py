"""The index on disk: its schema and analysers, the documents, versioned directories, readers
that follow the writer, and the one writer per directory.

Layout under ``<data_dir>/search``::

    CURRENT                 the name of the version searches use (switched with os.replace)
    v20261123T101500-k3x9/  one Tantivy index per build, plus ``mercato-index.json``

A rebuild writes a new version next to the live one and then switches ``CURRENT``, so searches
never see a half-built index. Readers look at ``CURRENT`` and reload their searcher at most every
``RELOAD_INTERVAL`` seconds; that is how every API process on a host follows the one writer.
Each reload that brings new documents starts a new :class:`Snapshot` (a searcher and a small
cache of answers computed from it), so a cached answer never outlives the commit it counted.
Tantivy releases the GIL while it searches: the API runs each search on a worker thread (the
event loop goes on serving), and a search counts its facets on a second thread while it
collects its page of hits.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tantivy

from mercato.money import round_unit

log = logging.getLogger("mercato.search")

SCHEMA_VERSION = 3
"""Bumped whenever the schema or the analysers change: an index of another version is ignored
(shoppers get the catalog listing) until a current one is built: by ``mercato reindex``, or by
the index's follower, which rebuilds an index of an older version on its next pass.
3: the warehouses holding each product's stock (``stocked_in``)."""

RELOAD_INTERVAL = 0.1
META_FILE = "mercato-index.json"
POINTER = "CURRENT"
SEP = "\x1f"  # joins the parts of facet keys ("slug<SEP>Name"); never part of shop text

STEM = "mercato_en"  # words, lower case, accents folded, English stems: the searchable text
PLAIN = "mercato_plain"  # the same without stemming: prefixes for autocomplete
LOWER = "mercato_lower"  # the whole value in lower case: SKUs

MATCH_FIELD = "text"
"""Everything searchable in one field (description, category names, attribute values, title,
brand): a word must be found here, so each word costs one posting list to match."""
BONUS_FIELDS: dict[str, float] = {"title": 2.0, "brand_text": 1.0}
"""Extra BM25 for a word found in these too: with the match field's own score, the title
weighs 3, the brand 2 and everything else 1. Scored on matching documents only."""
SHORT_FIELDS = ("title", "brand_text")
"""Where a fuzzy term is matched (descriptions would add noise, not corrections)."""

FLAGS = "flags"
"""Small-valued filters as indexed terms: a filter is then one posting list that an
intersection skips through, instead of a fast-field column scanned for every candidate."""
IN_STOCK = "in_stock"
OUT_OF_STOCK = "out_of_stock"
STOCKED_IN = "stocked_in"
"""One term per warehouse (its id) holding available units of some variant of the product.
Units available to a destination are the sum over the warehouses shipping there, and a sum of
non-negative amounts is positive iff one of them is: so a product is in stock for a country
iff it carries the term of a warehouse shipping there, which a query for any of those terms answers
exactly. Which warehouses ship where is read at query time, so a warehouse's countries may
change without a rebuild."""
STOCK_SET = "stock_set"
"""The same warehouses as one value (ids joined by ``SEP``, absent when none): a product has
one set, so one terms aggregation counts the products of each set, and the in-stock count for
a destination is the sum over the sets holding one of its warehouses, exact and in the same
pass as the other facets."""
RATING_THRESHOLDS = (1, 2, 3, 4, 5)
SALES_TIERS = (1, 3, 10, 30, 100, 300, 1000)
"""Sales-rank scores a product's flags mark ("sales>=10"): what the default ranking's sales
bonus counts, about one step per tripling."""

ATTRIBUTE_SLOTS = ("attr_1", "attr_2", "attr_3")
"""The attribute facet's columns: a product's attributes (by name) one per column, the rest in
``MORE_ATTRIBUTES``. Counting a few single-valued columns costs a third of what one
multi-valued column does; a product has each attribute once, so the counts just add up."""
MORE_ATTRIBUTES = "attrs_more"

PRICE_BITS = 40
HASH_BITS = 24
PRICE_STEPS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
"""Edges of the price facet's buckets, in round units of the product's currency
(:func:`mercato.money.round_unit`: whole euros, pounds or dollars, hundreds of yen)."""
EPOCH_US = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)


def _analyzer(stem: bool) -> tantivy.TextAnalyzer:
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
    )
    if stem:
        builder = builder.filter(tantivy.Filter.stemmer("english"))
    return builder.build()


STEM_ANALYZER = _analyzer(stem=True)
PLAIN_ANALYZER = _analyzer(stem=False)
LOWER_ANALYZER = (
    tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.raw()).filter(tantivy.Filter.lowercase()).build()
)


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("title", stored=True, tokenizer_name=STEM)
    sb.add_text_field("title_plain", tokenizer_name=PLAIN)
    sb.add_text_field("brand_text", tokenizer_name=STEM)
    sb.add_text_field(MATCH_FIELD, stored=True, tokenizer_name=STEM)
    sb.add_text_field("sku", tokenizer_name=LOWER, index_option="basic")
    sb.add_text_field("suggest", tokenizer_name="raw", index_option="basic")
    # Facet keys carry their labels ("acme<SEP>Acme"), filters use the bare slugs.
    for name in ("brand", "category"):
        sb.add_text_field(name, stored=True, fast=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("attrs", stored=True, tokenizer_name="raw", index_option="basic")
    for name in (*ATTRIBUTE_SLOTS, MORE_ATTRIBUTES):
        sb.add_text_field(name, fast=True, tokenizer_name="raw", index_option="basic")
    for name in ("brand_slug", "category_slugs", "options"):
        sb.add_text_field(name, tokenizer_name="raw", index_option="basic")
    for name in ("currency", "image"):
        sb.add_text_field(name, stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field(FLAGS, tokenizer_name="raw", index_option="basic")
    sb.add_text_field(STOCKED_IN, tokenizer_name="raw", index_option="basic")
    sb.add_text_field(STOCK_SET, stored=True, fast=True, tokenizer_name="raw", index_option="basic")
    sb.add_unsigned_field("price_min", stored=True, indexed=True, fast=True)
    sb.add_unsigned_field("price_max", stored=True)
    sb.add_unsigned_field("in_stock", stored=True)
    sb.add_float_field("rating", stored=True, indexed=True, fast=True)
    sb.add_unsigned_field("rating_count", stored=True)
    sb.add_unsigned_field("sales", stored=True)
    sb.add_unsigned_field("facet_code", fast=True)
    for key in ("key_newest", "key_price", "key_sales", "key_rating"):
        sb.add_unsigned_field(key, indexed=True, fast=True)
    return sb.build()


SCHEMA = build_schema()


def register_analyzers(index: tantivy.Index) -> None:
    """Custom analysers live in the process, not in the index: register them on every open."""
    index.register_tokenizer(STEM, STEM_ANALYZER)
    index.register_tokenizer(PLAIN, PLAIN_ANALYZER)
    index.register_tokenizer(LOWER, LOWER_ANALYZER)


# --------------------------------------------------------------------------------------------
# Documents


@dataclass(frozen=True, slots=True)
class ProductSource:
    """Everything the index knows about one listed product (variants folded in)."""

    id: str
    title: str
    description: str
    brand_slug: str | None
    brand_name: str | None
    categories: tuple[tuple[str, str], ...]  # (slug, name) from the root down to its own
    attributes: Mapping[str, str]
    options: tuple[tuple[str, str], ...]  # (name, value) over its active variants
    skus: tuple[str, ...]
    currency: str
    min_price: int
    max_price: int
    in_stock: bool  # units available in some active warehouse: stocked_in is not empty
    image: str | None
    created_at: datetime
    rating: float = 0.0  # 0 = not rated yet
    rating_count: int = 0
    sales: int = 0  # net units sold over the sales-rank window
    sales_score: float | None = None  # the sales rank: those units decayed by age (None: sales)
    stocked_in: tuple[str, ...] = ()  # ids of the active warehouses holding available units


def id_hash(product_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(product_id.encode(), digest_size=8).digest(), "big")


def _clean(text: str) -> str:
    return text.replace(SEP, " ")


def brand_key(slug: str, name: str) -> str:
    return f"{slug}{SEP}{_clean(name)}"


@functools.lru_cache(maxsize=4096)
def category_key(categories: tuple[tuple[str, str], ...]) -> str:
    """``home-kitchen/kettles<SEP>Home & Kitchen<SEP>Kettles``: the path and each level's name,
    so one single-valued facet rolls up to every ancestor without asking the database."""
    path = "/".join(slug for slug, _ in categories)
    return SEP.join([path, *(_clean(name) for _, name in categories)])


def attr_key(name: str, value: str) -> str:
    return f"{name}{SEP}{_clean(value)}"


def rating_tenths(rating: float) -> int:
    return max(0, min(50, round(rating * 10)))


def sort_keys(src: ProductSource) -> dict[str, int]:
    """Unsigned composite keys, one per sort, unique per product in practice: the sort value in
    the high bits and a hash of the id below it, so a keyset cursor is one number."""
    h = id_hash(src.id)
    low24 = h & ((1 << HASH_BITS) - 1)
    created_us = int(src.created_at.timestamp() * 1_000_000) - EPOCH_US
    created = max(0, min(created_us, (1 << 51) - 1))
    price = max(0, min(src.min_price, (1 << PRICE_BITS) - 1))
    sales = max(0, min(sales_milli(sales_rank(src)), (1 << PRICE_BITS) - 1))
    return {
        "key_newest": (created << 13) | (h & 0x1FFF),
        "key_price": (price << HASH_BITS) | low24,
        "key_sales": (sales << HASH_BITS) | low24,
        "key_rating": (rating_tenths(src.rating) << 58)
        | (min(sales, (1 << 34) - 1) << HASH_BITS)
        | low24,
    }


def sales_rank(src: ProductSource) -> float:
    return float(src.sales) if src.sales_score is None else src.sales_score


def sales_milli(score: float) -> int:
    """The sales rank in thousandths: the sort keys' integer form of it."""
    return max(0, round(score * 1000))


def sales_term(tier: int) -> str:
    return f"sales>={tier}"


def price_bucket(minor: int, currency: str) -> int:
    """Which price facet bucket an amount falls in: 0 below the first edge, 9 above the last."""
    unit = round_unit(currency)
    return sum(1 for step in PRICE_STEPS if minor >= step * unit)


def rating_term(threshold: int) -> str:
    """The flag a product rated ``threshold`` or better carries ("rating>=4")."""
    return f"rating>={threshold}"


def flags(src: ProductSource) -> list[str]:
    """Stock, and every whole-star threshold the rating reaches: a product rated 4.3 carries
    "rating>=1" up to "rating>=4", so "4 stars and up" is the one term "rating>=4"; likewise
    every sales tier its sales rank reaches (what the default ranking's sales bonus counts)."""
    found = [IN_STOCK if src.in_stock else OUT_OF_STOCK]
    found += [rating_term(n) for n in RATING_THRESHOLDS if src.rating >= n]
    found += [sales_term(n) for n in SALES_TIERS if sales_rank(src) >= n]
    return found


def rating_bucket(rating: float) -> int:
    """0 unrated (or below 1), then 1 for [1, 2) up to 4 for [4, 5]."""
    return 0 if rating < 1 else min(4, int(rating))


def facet_code(src: ProductSource) -> int:
    """Price bucket, rating bucket and stock in one small number: the three facets then cost
    one terms aggregation over a single-valued fast field instead of three range ones."""
    return (
        price_bucket(src.min_price, src.currency) * 100
        + rating_bucket(src.rating) * 10
        + (1 if src.in_stock else 0)
    )


@functools.lru_cache(maxsize=4096)
def _suggest_terms(kind: str, slug: str, name: str) -> tuple[str, ...]:
    """Autocomplete terms for a brand ("b") or category ("c"): one per word of its name
    (cached: a catalog has few brands and categories, and many products)."""
    clean = _clean(name)
    return tuple(
        SEP.join((kind, word, slug, clean)) for word in dict.fromkeys(PLAIN_ANALYZER.analyze(name))
    )


def to_document(src: ProductSource) -> tantivy.Document:
    doc = tantivy.Document()
    doc.add_text("id", src.id)
    doc.add_text("title", src.title)
    doc.add_text("title_plain", src.title)
    doc.add_text(MATCH_FIELD, src.description)  # the first value: what a snippet shows
    if src.brand_slug and src.brand_name:
        doc.add_text("brand_text", src.brand_name)
        doc.add_text("brand", brand_key(src.brand_slug, src.brand_name))
        doc.add_text("brand_slug", src.brand_slug)
        for term in _suggest_terms("b", src.brand_slug, src.brand_name):
            doc.add_text("suggest", term)
    doc.add_text("category", category_key(src.categories))
    for slug, name in src.categories:
        doc.add_text("category_slugs", slug)
        for term in _suggest_terms("c", slug, name):
            doc.add_text("suggest", term)
    values = list(dict.fromkeys([*src.attributes.values(), *(v for _, v in src.options)]))
    facts = [*(name for _, name in src.categories), " ".join(values), src.title, src.brand_name]
    doc.add_text(MATCH_FIELD, " · ".join(fact for fact in facts if fact))
    # Product attributes are faceted ("the top attributes of the category"); variant options
    # (size, colour) are searchable and filterable, but counting them too would double the
    # cost of the facets for little: a shopper picks those on the product page.
    for name, value in src.attributes.items():
        doc.add_text("attrs", attr_key(name, value))
    keys = [attr_key(name, src.attributes[name]) for name in sorted(src.attributes)]
    for slot, key in zip(ATTRIBUTE_SLOTS, keys, strict=False):
        doc.add_text(slot, key)
    for key in keys[len(ATTRIBUTE_SLOTS) :]:
        doc.add_text(MORE_ATTRIBUTES, key)
    for name, value in dict.fromkeys(src.options):
        doc.add_text("options", attr_key(name, value))
    for sku in src.skus:
        doc.add_text("sku", sku)
    doc.add_text("currency", src.currency)
    for flag in flags(src):
        doc.add_text(FLAGS, flag)
    warehouses = sorted(set(src.stocked_in))
    for warehouse in warehouses:
        doc.add_text(STOCKED_IN, warehouse)
    if warehouses:
        doc.add_text(STOCK_SET, SEP.join(warehouses))
    if src.image:
        doc.add_text("image", src.image)
    doc.add_unsigned("price_min", src.min_price)
    doc.add_unsigned("price_max", src.max_price)
    doc.add_unsigned("in_stock", 1 if src.in_stock else 0)
    doc.add_float("rating", float(src.rating))
    doc.add_unsigned("rating_count", src.rating_count)
    doc.add_unsigned("sales", src.sales)
    doc.add_unsigned("facet_code", facet_code(src))
    for key, number in sort_keys(src).items():
        doc.add_unsigned(key, number)
    return doc


def demo_signals(product_id: str) -> tuple[float, int, int]:
    """(rating, rating count, units sold) for a demo shop with no reviews or no orders yet,
    derived from the id's hash. One product in seven has no rating."""
    h = id_hash(product_id)
    if h % 7 == 0:
        rating, count = 0.0, 0
    else:
        rating, count = 2.5 + (h >> 8) % 26 / 10, 1 + (h >> 16) % 400
    share = ((h >> 32) % 10_000) / 10_000
    return rating, count, int(2000 * share**3)


# --------------------------------------------------------------------------------------------
# Versions on disk


@dataclass
class IndexMeta:
    schema: int
    version: str
    built_at: datetime
    committed_at: datetime
    documents: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema": self.schema,
                "version": self.version,
                "built_at": self.built_at.isoformat(),
                "committed_at": self.committed_at.isoformat(),
                "documents": self.documents,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> IndexMeta:
        data = json.loads(text)
        return cls(
            schema=int(data["schema"]),
            version=str(data["version"]),
            built_at=datetime.fromisoformat(data["built_at"]),
            committed_at=datetime.fromisoformat(data["committed_at"]),
            documents=int(data.get("documents", 0)),
        )


_VERSION_NAME = re.compile(r"^v\d{8}T\d{6}-[a-z0-9]{6}$")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class IndexStore:
    """The versioned directories under one root and the ``CURRENT`` pointer."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def current(self) -> str | None:
        try:
            name = (self.root / POINTER).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return name if _VERSION_NAME.match(name) else None

    def path(self, version: str) -> Path:
        return self.root / version

    def new_version(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
        return f"v{stamp}-{''.join(secrets.choice(alphabet) for _ in range(6))}"

    def read_meta(self, version: str) -> IndexMeta | None:
        try:
            return IndexMeta.from_json((self.path(version) / META_FILE).read_text("utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write_meta(self, meta: IndexMeta) -> None:
        _write_atomically(self.path(meta.version) / META_FILE, meta.to_json())

    def switch(self, version: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.root / POINTER, version + "\n")

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _VERSION_NAME.match(p.name))

    def prune(self, keep: Iterable[str]) -> list[str]:
        """Delete versions other than ``keep`` (the live one and the one before it: a process
        that has not noticed the switch yet may still be reading it)."""
        kept = set(keep)
        removed = []
        for name in self.versions():
            if name not in kept:
                shutil.rmtree(self.path(name), ignore_errors=True)
                removed.append(name)
        return removed

    def size_bytes(self, version: str) -> int:
        return sum(p.stat().st_size for p in self.path(version).rglob("*") if p.is_file())


def open_index(path: Path) -> tantivy.Index:
    index = tantivy.Index.open(str(path))
    register_analyzers(index)
    index.config_reader(reload_policy="manual")
    return index


def create_index(path: Path) -> tantivy.Index:
    """A new, empty index whose segments keep their documents best sellers first: Tantivy
    breaks score ties by document order, so equally relevant products come out by sales."""
    path.mkdir(parents=True, exist_ok=False)
    index = tantivy.Index(
        SCHEMA,
        path=str(path),
        reuse=False,
        sort_by_field="key_sales",
        sort_order=tantivy.Order.Desc,
    )
    register_analyzers(index)
    index.config_reader(reload_policy="manual")
    return index


class VersionBuilder:
    """Builds a whole new version from scratch, then makes it the current one."""

    def __init__(self, store: IndexStore, memory: int = 512_000_000, threads: int = 2) -> None:
        self.store = store
        store.root.mkdir(parents=True, exist_ok=True)
        self.version = store.new_version()
        self.path = store.path(self.version)
        self.index = create_index(self.path)
        self.writer: tantivy.IndexWriter | None = self.index.writer(memory, threads)
        self.documents = 0

    def add(self, src: ProductSource) -> None:
        assert self.writer is not None
        self.writer.add_document(to_document(src))
        self.documents += 1

    def finish(self, built_at: datetime) -> IndexMeta:
        """Commit, merge, and switch ``CURRENT`` to this version (keeping the previous one for
        processes that have not noticed yet; older ones are deleted)."""
        assert self.writer is not None
        self.writer.commit()
        self.writer.wait_merging_threads()
        self.writer = None
        meta = IndexMeta(SCHEMA_VERSION, self.version, built_at, built_at, self.documents)
        self.store.write_meta(meta)
        previous = self.store.current()
        self.store.switch(self.version)
        self.store.prune({self.version, *([previous] if previous else [])})
        return meta

    def abort(self) -> None:
        self.writer = None
        shutil.rmtree(self.path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Readers and the writer


RESULT_CACHE_SIZE = 256
TANTIVY_META = "meta.json"
_unsettled = itertools.count(1)


class ResultCache:
    """Answers computed from one generation of the index, least recently used dropped first.
    It belongs to a :class:`Snapshot`: a reload that changes the documents starts an empty one,
    so nothing computed before a commit is ever served after it."""

    def __init__(self, size: int = RESULT_CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries


@dataclass(frozen=True)
class Snapshot:
    """A searcher and what has been computed from it. ``generation`` names the documents it
    holds: two snapshots share one only when the index's commit file was the same."""

    searcher: tantivy.Searcher
    generation: str
    results: ResultCache


def _commit_state(path: Path) -> bytes | None:
    try:
        return (path / TANTIVY_META).read_bytes()
    except OSError:
        return None


@dataclass
class Reader:
    """One opened version. ``snapshot()`` (or ``searcher()``) is a consistent view for one
    request; ``reload()`` moves it on to the latest commit."""

    version: str
    index: tantivy.Index
    meta: IndexMeta
    path: Path
    cache: dict[str, Any] = field(default_factory=dict)  # derived data (the vocabulary)
    _snapshot: Snapshot | None = None
    _reloading: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            self.reload()
            snapshot = self._snapshot
            assert snapshot is not None
        return snapshot

    def searcher(self) -> tantivy.Searcher:
        return self.snapshot().searcher

    def reload(self) -> bool:
        """Pick up the latest commit; True when the documents may have changed. The commit
        file, read before and after the reload, names the generation; when a commit lands in
        between, the snapshot gets a name of its own and the next reload settles it. The name
        is fixed before the searcher is taken, so a snapshot never holds documents older than
        its name says, and results cached under a name always come from that commit or later.
        """
        with self._reloading:
            before = _commit_state(self.path)
            self.index.reload()
            after = _commit_state(self.path)
            if before is not None and before == after:
                generation = hashlib.blake2b(before, digest_size=16).hexdigest()
            else:
                generation = f"unsettled-{next(_unsettled)}"
            current = self._snapshot
            if current is not None and current.generation == generation:
                return False
            self._snapshot = Snapshot(self.index.searcher(), generation, ResultCache())
            return True


@dataclass
class Writer:
    version: str
    index: tantivy.Index
    writer: tantivy.IndexWriter
    meta: IndexMeta
    needs_replay: bool = True

    def upsert(self, product_id: str, doc: tantivy.Document | None) -> None:
        self.writer.delete_documents_by_term("id", product_id)
        if doc is not None:
            self.writer.add_document(doc)

    def commit(self, when: datetime) -> None:
        self.writer.commit()
        self.meta.committed_at = when


class IndexBusy(RuntimeError):
    """Another process holds this version's writer lock."""


@dataclass
class SearchEngine:
    """One per process and data directory: the reader every request uses, and the writer when
    this process is the one feeding the index."""

    store: IndexStore
    writer_memory: int = 64_000_000
    _reader: Reader | None = None
    _checked: float = field(default=-1e9)
    _writer: Writer | None = None
    synonyms: Any = None  # the query side keeps its synonym cache here
    warehouses: Any = None  # ...and the warehouses a destination maps to

    @property
    def root(self) -> Path:
        return self.store.root

    def reader(self, *, fresh: bool = False) -> Reader | None:
        """The current version, reloaded if a commit or a switch happened (checked at most
        every ``RELOAD_INTERVAL`` seconds, or now when ``fresh``); None without a usable index."""
        now = time.monotonic()
        if not fresh and now - self._checked < RELOAD_INTERVAL:
            return self._reader
        self._checked = now
        version = self.store.current()
        current = self._reader
        if current is not None and current.version == version:
            try:
                current.reload()
                return current
            except (OSError, ValueError):
                log.warning("search index %s could not be reloaded; reopening", version)
        self._reader = self._open_reader(version) if version else None
        return self._reader

    def _open_reader(self, version: str) -> Reader | None:
        meta = self.store.read_meta(version)
        if meta is None or meta.schema != SCHEMA_VERSION:
            log.warning("search index %s is missing or of another schema: run reindex", version)
            return None
        try:
            index = open_index(self.store.path(version))
        except (OSError, ValueError) as exc:
            log.warning("search index %s cannot be opened: %s", version, exc)
            return None
        reader = Reader(version, index, meta, self.store.path(version))
        reader.reload()
        return reader

    def writer(self) -> Writer | None:
        """This process's writer on the current version (reopened after a switch); None when
        there is no usable index. Raises :class:`IndexBusy` when another process writes."""
        version = self.store.current()
        if self._writer is not None and self._writer.version == version:
            return self._writer
        self.close_writer()
        if version is None:
            return None
        meta = self.store.read_meta(version)
        if meta is None or meta.schema != SCHEMA_VERSION:
            return None
        index = open_index(self.store.path(version))
        try:
            raw = index.writer(self.writer_memory, 1)
        except ValueError as exc:
            raise IndexBusy(str(exc)) from exc
        self._writer = Writer(version, index, raw, meta)
        return self._writer

    def outdated(self) -> bool:
        """Whether the current version was built for an older schema: the shop had an index,
        which this code cannot read, so it wants a rebuild (after an upgrade)."""
        version = self.store.current()
        meta = self.store.read_meta(version) if version else None
        return meta is not None and meta.schema < SCHEMA_VERSION

    @contextlib.contextmanager
    def rebuilding_outdated(self) -> Iterator[None]:
        """Hold the outdated version's writer lock while it is rebuilt, so that one process
        per host rebuilds it; :class:`IndexBusy` when another one is."""
        version = self.store.current()
        lock: tantivy.IndexWriter | None = None
        if version is not None:
            try:
                lock = open_index(self.store.path(version)).writer(15_000_000, 1)
            except ValueError as exc:
                raise IndexBusy(str(exc)) from exc
            except OSError:
                lock = None  # unreadable: nobody can be writing it
        try:
            yield
        finally:
            if lock is not None:
                with contextlib.suppress(Exception):
                    lock.rollback()
                del lock

    def close_writer(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.writer.rollback()
            self._writer = None

    def committed(self, writer: Writer) -> None:
        self.store.write_meta(writer.meta)
        if self._reader is not None and self._reader.version == writer.version:
            self._reader.reload()
            self._checked = time.monotonic()
        else:
            self.reader(fresh=True)
