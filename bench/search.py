"""Product search: Mercato's Tantivy index against PostgreSQL full-text search and SQLite FTS5.

Run from the repository root::

    .venv/bin/python -m bench.search                     # 100,000 and 1,000,000 products
    .venv/bin/python -m bench.search --sizes 100000      # one size only
    .venv/bin/python -m bench.search --countries DE,FR   # also for shoppers in these countries
    .venv/bin/python -m bench.search --personal          # also for a signed-in customer

For each size it generates the demo catalog (the generator ``mercato demo`` seeds from, so the
data is deterministic for a seed) and loads the very same products into:

1. Mercato's search index (Tantivy), queried in process through ``mercato.search.query`` and
   over HTTP through ``mercato serve`` (``/api/search``, ``/api/search/suggest``);
2. PostgreSQL full-text search done well: a stored ``tsvector`` with weights A (title),
   B (brand) and C (category names, attribute values, description), a GIN index, ``ts_rank``,
   ``websearch_to_tsquery``, GIN/B-tree indexes for the filters, facets by ``GROUP BY`` over the
   matching set (one statement, one round trip), ``work_mem`` raised for those;
3. SQLite FTS5 with ``bm25`` column weights (3, 2, 1, 1, 1), the porter tokenizer, prefix
   indexes, facets by ``GROUP BY`` over the matching set.

Then it runs the same mix of 1,000 queries against each (after a warm-up pass): keywords,
keywords with filters, category browsing, misspelt keywords and autocomplete prefixes. Every
search asks for 24 hits, the total, and six facets (brand, category, price buckets, rating
buckets, stock, attribute values); autocomplete asks for 8 titles plus brands and categories.
It prints p50/p95/p99 and queries per second for each engine, the ratio Mercato/other, index
build time and size, per-kind latencies, and the machine. Queries run one at a time from one
client on this machine (the servers share its cores). PostgreSQL and SQLite do not correct
typos: their misspelt queries mostly find nothing, which costs them little.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100_000, 1_000_000)
QUERIES = 1000
WARMUP = 100
BENCH_SECRET = "bench-cursor-key-that-signs-throwaway-cursors-only"  # noqa: S105
HITS = 24
SUGGESTIONS = 8
KINDS = ("keywords", "keywords+filters", "browse", "typo", "autocomplete")
MIX = {"keywords": 35, "keywords+filters": 20, "browse": 20, "typo": 15, "autocomplete": 10}
PRICE_EDGES = (1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000)

console = Console()

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import CURRENCY  # noqa: E402
from bench.reservations import machine  # noqa: E402
from mercato.search.engine import ProductSource  # noqa: E402


@dataclass(frozen=True)
class Spec:
    """One query of the mix."""

    kind: str
    q: str = ""
    category: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    rating_gte: float | None = None
    in_stock: bool | None = None
    sort: str = "relevance"


@dataclass
class Run:
    engine: str
    latencies: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_early: bool = False

    def all(self) -> list[float]:
        return [x for values in self.latencies.values() for x in values]

    @property
    def count(self) -> int:
        return len(self.all())

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


@dataclass
class Built:
    engine: str
    seconds: float
    size_bytes: int


# --------------------------------------------------------------------------------------------
# The query mix


def _typo(word: str, rng: random.Random) -> str:
    at = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("substitute", "delete", "insert", "transpose"))
    if kind == "substitute":
        return word[:at] + rng.choice(string.ascii_lowercase) + word[at + 1 :]
    if kind == "delete":
        return word[:at] + word[at + 1 :]
    if kind == "insert":
        return word[:at] + rng.choice(string.ascii_lowercase) + word[at:]
    return word[: at - 1] + word[at] + word[at - 1] + word[at + 1 :]


def _keywords(p: ProductSource, rng: random.Random) -> str:
    noun = p.categories[-1][1].split()[-1].lower()
    words = p.title.split()
    choice = rng.random()
    if choice < 0.3:
        return f"{p.brand_name} {noun}".lower()
    if choice < 0.5:
        return noun
    if choice < 0.7 and len(words) > 2:
        return f"{words[-2]} {noun}".lower()
    if choice < 0.85:
        return p.title.lower()
    values = sorted(p.attributes.values())
    return f"{rng.choice(values)} {noun}".lower() if values else noun


def make_mix(sources: Sequence[ProductSource], count: int, seed: int) -> list[Spec]:
    rng = random.Random(seed)
    kinds = [k for k, share in MIX.items() for _ in range(share)]
    mix: list[Spec] = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        p = sources[rng.randrange(len(sources))]
        department, leaf = p.categories[0][0], p.categories[-1][0]
        if kind == "keywords":
            mix.append(Spec(kind, q=_keywords(p, rng)))
        elif kind == "keywords+filters":
            low = p.min_price // 2 if rng.random() < 0.6 else None
            high = p.min_price * 2 if rng.random() < 0.6 else None
            mix.append(
                Spec(
                    kind,
                    q=_keywords(p, rng),
                    category=department if rng.random() < 0.5 else None,
                    min_price=low,
                    max_price=high,
                    rating_gte=4.0 if rng.random() < 0.3 else None,
                    in_stock=True if rng.random() < 0.5 else None,
                )
            )
        elif kind == "browse":
            mix.append(
                Spec(
                    kind,
                    category=leaf if rng.random() < 0.7 else department,
                    in_stock=True if rng.random() < 0.3 else None,
                    sort=rng.choice(("relevance", "price_asc", "newest", "rating")),
                )
            )
        elif kind == "typo":
            words = _keywords(p, rng).split()
            long_words = [j for j, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
            if long_words:
                j = rng.choice(long_words)
                words[j] = _typo(words[j], rng)
            mix.append(Spec(kind, q=" ".join(words)))
        else:
            words = p.title.lower().split()
            j = rng.randrange(len(words))
            prefix = words[j][: rng.randint(2, 5)]
            lead = " ".join(words[:j][-1:])
            mix.append(Spec(kind, q=f"{lead} {prefix}".strip()))
    return mix


# --------------------------------------------------------------------------------------------
# Mercato


def generated_reach(country: str) -> Any:
    """The destination as a search sees it: the generated warehouses standing for the demo's
    warehouses that ship to ``country``."""
    from mercato.inventory.demo import DEMO_WAREHOUSES
    from mercato.search import query as q
    from mercato.search.demo import GENERATED_WAREHOUSES

    reaching = [
        GENERATED_WAREHOUSES[i]
        for i, spec in enumerate(DEMO_WAREHOUSES)
        if country in spec["countries"]
    ]
    return q.Reach(country, tuple(sorted(reaching)))


def customer_affinity(sources: Sequence[ProductSource], seed: int) -> Any:
    """A customer's affinities as the re-rank reads them: the brands and categories of a
    dozen products they might have bought (weights as the recommendations module would give:
    the favourite 1, the others below)."""
    from mercato.search.personal import Affinity

    rng = random.Random(seed)
    bought = [sources[rng.randrange(len(sources))] for _ in range(12)]
    brands = {p.brand_slug: round(rng.uniform(0.1, 1.0), 3) for p in bought if p.brand_slug}
    categories = {p.categories[-1][0]: round(rng.uniform(0.1, 1.0), 3) for p in bought}
    categories |= {p.categories[0][0]: 0.25 for p in bought}
    brands[next(iter(brands))] = 1.0
    return Affinity(brands, categories)


class MercatoInProcess:
    name = "Mercato (in process)"

    def __init__(self, data_dir: Path, country: str | None = None, affinity: Any = None) -> None:
        from mercato.search.personal import NO_AFFINITY

        self.data_dir = data_dir
        self.reach = generated_reach(country) if country else None
        self.affinity = affinity if affinity is not None else NO_AFFINITY
        if country:
            self.name = f"Mercato (in process, deliver to {country})"
        if affinity is not None:
            self.name = f"{self.name[:-1]}, signed-in customer)"

    def build(self, sources: Sequence[ProductSource]) -> Built:
        from mercato.search.engine import IndexStore, VersionBuilder

        started = time.perf_counter()
        store = IndexStore(self.data_dir / "search")
        builder = VersionBuilder(store)
        for source in sources:
            builder.add(source)
        builder.finish(datetime.now(UTC))
        seconds = time.perf_counter() - started
        self.open()
        return Built(self.name, seconds, store.size_bytes(builder.version))

    def open(self) -> None:
        from mercato.search.engine import IndexStore, SearchEngine

        reader = SearchEngine(IndexStore(self.data_dir / "search")).reader()
        assert reader is not None
        self.reader = reader

    def run(self, spec: Spec) -> int:
        from mercato.search import query as q

        if spec.kind == "autocomplete":
            found = q.suggest(self.reader, spec.q)
            return len(found["products"])
        request = q.SearchRequest(
            q=spec.q,
            filters=q.Filters(
                category=spec.category,
                min_price=spec.min_price,
                max_price=spec.max_price,
                rating_gte=spec.rating_gte,
                in_stock=spec.in_stock,
                reach=self.reach,
            ),
            sort=spec.sort,
            limit=HITS,
            currency=CURRENCY,
        )
        return q.search(self.reader, request, secret_key=BENCH_SECRET, affinity=self.affinity).total


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _decimal(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


class MercatoHttp:
    """``mercato serve`` in a subprocess, asked over one keep-alive connection with the
    standard library's client (a few hundred microseconds per request cheaper than httpx, so
    the figures show the server rather than the client)."""

    name = "Mercato (HTTP, mercato serve)"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: http.client.HTTPConnection | None = None

    def start(self) -> None:
        from mercato import migrate

        database = self.data_dir / "mercato.db"
        migrate.upgrade(f"sqlite+aiosqlite:///{database}")
        self.port = _free_port()
        env = {
            **os.environ,
            "MERCATO_DATA_DIR": str(self.data_dir),
            "MERCATO_SECRET_KEY": BENCH_SECRET,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "mercato.cli", "serve"),
                *("--database", str(database), "--port", str(self.port)),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mercato serve exited early")
            with contextlib.suppress(OSError, http.client.HTTPException):
                self._get("/api/health", {})
                return
            self.conn = None
            time.sleep(0.1)
        raise RuntimeError("mercato serve did not start")

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        query = urllib.parse.urlencode(params)
        self.conn.request("GET", f"{path}?{query}" if query else path)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
        data: dict[str, Any] = json.loads(body)
        return data

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def run(self, spec: Spec) -> int:
        if spec.kind == "autocomplete":
            return len(self._get("/api/search/suggest", {"q": spec.q})["products"])
        params: dict[str, Any] = {"q": spec.q, "limit": HITS, "sort": spec.sort}
        if spec.category:
            params["category"] = spec.category
        if spec.min_price is not None:
            params["min_price"] = _decimal(spec.min_price)
        if spec.max_price is not None:
            params["max_price"] = _decimal(spec.max_price)
        if spec.rating_gte is not None:
            params["rating_gte"] = spec.rating_gte
        if spec.in_stock is not None:
            params["in_stock"] = "true" if spec.in_stock else "false"
        total: int = self._get("/api/search", params)["total"]
        return total


# --------------------------------------------------------------------------------------------
# PostgreSQL full-text search


def _row(p: ProductSource) -> tuple[Any, ...]:
    pairs = sorted({f"{k}={v}" for k, v in [*p.attributes.items(), *p.options]})
    values = " ".join(dict.fromkeys([*p.attributes.values(), *(v for _, v in p.options)]))
    return (
        p.id,
        p.title,
        p.brand_slug,
        p.brand_name,
        "/".join(slug for slug, _ in p.categories),
        [slug for slug, _ in p.categories],
        " ".join(name for _, name in p.categories),
        pairs,
        values,
        p.description,
        p.min_price,
        p.max_price,
        p.rating,
        p.in_stock,
        p.sales,
        p.created_at,
    )


PG_SCHEMA = """
CREATE TABLE products (
    id text PRIMARY KEY,
    title text NOT NULL,
    brand_slug text,
    brand_name text,
    category_path text NOT NULL,
    category_slugs text[] NOT NULL,
    category_names text NOT NULL,
    attrs text[] NOT NULL,
    attr_text text NOT NULL,
    description text NOT NULL,
    min_price bigint NOT NULL,
    max_price bigint NOT NULL,
    rating real NOT NULL,
    in_stock boolean NOT NULL,
    sales integer NOT NULL,
    created_at timestamptz NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A')
        || setweight(to_tsvector('english', coalesce(brand_name, '')), 'B')
        || setweight(
            to_tsvector('english', category_names || ' ' || attr_text || ' ' || description),
            'C')
    ) STORED,
    title_words tsvector GENERATED ALWAYS AS (to_tsvector('simple', title)) STORED
)
"""
PG_INDEXES = (
    "CREATE INDEX products_tsv ON products USING gin (tsv)",
    "CREATE INDEX products_title_words ON products USING gin (title_words)",
    "CREATE INDEX products_categories ON products USING gin (category_slugs)",
    "CREATE INDEX products_attrs ON products USING gin (attrs)",
    "CREATE INDEX products_brand ON products (brand_slug)",
    "CREATE INDEX products_price ON products (min_price, id)",
    "CREATE INDEX products_sales ON products (sales DESC, id)",
    "CREATE INDEX products_newest ON products (created_at DESC, id)",
    "CREATE INDEX products_rating ON products (rating DESC, sales DESC, id)",
    "CREATE TABLE brands AS SELECT brand_slug AS slug, min(brand_name) AS name, count(*) AS n"
    " FROM products WHERE brand_slug IS NOT NULL GROUP BY brand_slug",
    "CREATE TABLE categories AS SELECT s AS slug, count(*) AS n"
    " FROM products, unnest(category_slugs) s GROUP BY s",
)
ORDER_SQL = {
    "relevance": "rank DESC, sales DESC, id",
    "price_asc": "min_price, id",
    "price_desc": "min_price DESC, id DESC",
    "newest": "created_at DESC, id DESC",
    "rating": "rating DESC, sales DESC, id",
}
FACETS_SQL = """
  (SELECT count(*) FROM m) AS total,
  (SELECT json_agg(b) FROM (SELECT brand_slug, count(*) FROM m GROUP BY 1) b) AS brands,
  (SELECT json_agg(c) FROM (SELECT category_path, count(*) FROM m GROUP BY 1) c) AS categories,
  (SELECT json_agg(x) FROM (SELECT width_bucket(min_price, ARRAY[{edges}]::bigint[]), count(*)
                            FROM m GROUP BY 1) x) AS prices,
  (SELECT json_agg(x) FROM (SELECT floor(rating)::int, count(*) FROM m GROUP BY 1) x) AS ratings,
  (SELECT json_agg(x) FROM (SELECT in_stock, count(*) FROM m GROUP BY 1) x) AS stock,
  (SELECT json_agg(x) FROM (SELECT a, count(*) FROM m, unnest(m.attrs) a GROUP BY 1) x) AS attrs
""".format(edges=",".join(str(e) for e in PRICE_EDGES))  # noqa: S608 - constants only


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class Postgres:
    name = "PostgreSQL FTS"

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def build(self, sources: Sequence[ProductSource]) -> Built:
        return self.loop.run_until_complete(self._build(sources))

    async def _build(self, sources: Sequence[ProductSource]) -> Built:
        import asyncpg  # type: ignore[import-untyped]
        from tests.support.servers import PostgresServer

        self.server = PostgresServer.start()
        admin = await asyncpg.connect(self.server.dsn())
        await admin.execute("CREATE DATABASE bench")
        await admin.close()
        self.conn = await asyncpg.connect(self.server.dsn("bench"))
        await self.conn.execute("SET maintenance_work_mem = '512MB'")
        started = time.perf_counter()
        await self.conn.execute(PG_SCHEMA)
        columns = [
            "id",
            "title",
            "brand_slug",
            "brand_name",
            "category_path",
            "category_slugs",
            "category_names",
            "attrs",
            "attr_text",
            "description",
            "min_price",
            "max_price",
            "rating",
            "in_stock",
            "sales",
            "created_at",
        ]
        for start in range(0, len(sources), 20_000):
            rows = [_row(p) for p in sources[start : start + 20_000]]
            await self.conn.copy_records_to_table("products", records=rows, columns=columns)
        for statement in PG_INDEXES:
            await self.conn.execute(statement)
        await self.conn.execute("VACUUM ANALYZE")
        seconds = time.perf_counter() - started
        size = await self.conn.fetchval(
            "SELECT pg_total_relation_size('products') + pg_total_relation_size('brands')"
            " + pg_total_relation_size('categories')"
        )
        await self.conn.execute("SET work_mem = '64MB'")
        self.version = str(await self.conn.fetchval("SHOW server_version"))
        return Built(self.name, seconds, int(size))

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.conn.close())
        self.server.stop()
        self.loop.close()

    def run(self, spec: Spec) -> int:
        return self.loop.run_until_complete(self._run(spec))

    async def _run(self, spec: Spec) -> int:
        if spec.kind == "autocomplete":
            words = _words(spec.q)
            if not words:
                return 0
            tsquery = " & ".join([*words[:-1], f"{words[-1]}:*"])
            like = f"{words[-1]}%"
            row = await self.conn.fetchrow(
                """
                SELECT
                  (SELECT json_agg(p) FROM (SELECT id, title FROM products
                     WHERE title_words @@ to_tsquery('simple', $1)
                     ORDER BY sales DESC, id LIMIT $2) p) AS products,
                  (SELECT json_agg(b) FROM (SELECT slug, name, n FROM brands
                     WHERE lower(name) LIKE $3 OR lower(name) LIKE '% ' || $3
                     ORDER BY n DESC LIMIT 5) b) AS brands,
                  (SELECT json_agg(c) FROM (SELECT slug, n FROM categories
                     WHERE slug LIKE $3 OR slug LIKE '%-' || $3
                     ORDER BY n DESC LIMIT 5) c) AS categories
                """,
                tsquery,
                SUGGESTIONS,
                like,
            )
            return len(json.loads(row["products"] or "[]"))
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        rank = "0::real"
        if spec.q:
            query = f"websearch_to_tsquery('english', {arg(spec.q)})"
            where.append(f"tsv @@ {query}")
            rank = f"ts_rank(tsv, {query})"
        if spec.category:
            where.append(f"category_slugs @> ARRAY[{arg(spec.category)}::text]")
        if spec.min_price is not None:
            where.append(f"min_price >= {arg(spec.min_price)}")
        if spec.max_price is not None:
            where.append(f"min_price <= {arg(spec.max_price)}")
        if spec.rating_gte is not None:
            where.append(f"rating >= {arg(spec.rating_gte)}")
        if spec.in_stock is not None:
            where.append(f"in_stock = {arg(spec.in_stock)}")
        order = ORDER_SQL[spec.sort]
        if spec.sort == "relevance" and not spec.q:
            order = ORDER_SQL["relevance"].replace("rank DESC, ", "")
        # Values are bound parameters; only fixed fragments are formatted in.
        sql = f"""
            WITH m AS MATERIALIZED (
                SELECT id, title, brand_slug, brand_name, category_path, attrs, min_price,
                       max_price, rating, in_stock, sales, created_at, {rank} AS rank
                FROM products {"WHERE " + " AND ".join(where) if where else ""}
            )
            SELECT
              (SELECT json_agg(h) FROM (SELECT id, title, brand_name, min_price, max_price,
                 rating, in_stock FROM m ORDER BY {order} LIMIT {HITS}) h) AS hits,
              {FACETS_SQL}
        """  # noqa: S608
        row = await self.conn.fetchrow(sql, *args)
        return int(row["total"])


# --------------------------------------------------------------------------------------------
# SQLite FTS5


SQLITE_SCHEMA = (
    """CREATE TABLE products (
        rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, title TEXT NOT NULL, brand_slug TEXT,
        brand_name TEXT, category_path TEXT NOT NULL, min_price INTEGER NOT NULL,
        max_price INTEGER NOT NULL, rating REAL NOT NULL, in_stock INTEGER NOT NULL,
        sales INTEGER NOT NULL, created_at TEXT NOT NULL)""",
    "CREATE TABLE product_categories (slug TEXT NOT NULL, product INTEGER NOT NULL)",
    "CREATE TABLE product_attrs (product INTEGER NOT NULL, pair TEXT NOT NULL)",
    """CREATE VIRTUAL TABLE fts USING fts5(
        title, brand, categories, attrs, description,
        tokenize = 'porter unicode61 remove_diacritics 2', prefix = '2 3 4')""",
)
SQLITE_INDEXES = (
    "CREATE INDEX product_categories_slug ON product_categories (slug, product)",
    "CREATE INDEX product_attrs_product ON product_attrs (product, pair)",
    "CREATE INDEX products_price ON products (min_price, id)",
    "CREATE INDEX products_sales ON products (sales DESC, id)",
    "CREATE INDEX products_newest ON products (created_at DESC, id)",
    "CREATE INDEX products_rating ON products (rating DESC, sales DESC, id)",
    "CREATE TABLE brands AS SELECT brand_slug AS slug, min(brand_name) AS name, count(*) AS n"
    " FROM products WHERE brand_slug IS NOT NULL GROUP BY brand_slug",
    "CREATE TABLE categories AS SELECT slug, count(*) AS n FROM product_categories GROUP BY slug",
    "INSERT INTO fts(fts) VALUES ('optimize')",
    "ANALYZE",
)
SQLITE_ORDER = {
    "relevance": "rank, sales DESC, id",
    "price_asc": "min_price, id",
    "price_desc": "min_price DESC, id DESC",
    "newest": "created_at DESC, id DESC",
    "rating": "rating DESC, sales DESC, id",
}
PRICE_CASE = (
    "CASE "
    + " ".join(f"WHEN min_price < {edge} THEN {i}" for i, edge in enumerate(PRICE_EDGES))
    + f" ELSE {len(PRICE_EDGES)} END"
)


class Sqlite:
    name = "SQLite FTS5"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "fts5.db"

    def build(self, sources: Sequence[ProductSource]) -> Built:
        started = time.perf_counter()
        conn = sqlite3.connect(self.path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        for statement in SQLITE_SCHEMA:
            conn.execute(statement)
        for start in range(0, len(sources), 20_000):
            chunk = list(enumerate(sources[start : start + 20_000], start=start + 1))
            conn.executemany(
                "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        n,
                        p.id,
                        p.title,
                        p.brand_slug,
                        p.brand_name,
                        "/".join(s for s, _ in p.categories),
                        p.min_price,
                        p.max_price,
                        p.rating,
                        int(p.in_stock),
                        p.sales,
                        p.created_at.isoformat(),
                    )
                    for n, p in chunk
                ],
            )
            conn.executemany(
                "INSERT INTO product_categories VALUES (?, ?)",
                [(slug, n) for n, p in chunk for slug, _ in p.categories],
            )
            conn.executemany(
                "INSERT INTO product_attrs VALUES (?, ?)",
                [
                    (n, pair)
                    for n, p in chunk
                    for pair in sorted({f"{k}={v}" for k, v in [*p.attributes.items(), *p.options]})
                ],
            )
            conn.executemany(
                "INSERT INTO fts (rowid, title, brand, categories, attrs, description)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        n,
                        p.title,
                        p.brand_name or "",
                        " ".join(name for _, name in p.categories),
                        " ".join([*p.attributes.values(), *(v for _, v in p.options)]),
                        p.description,
                    )
                    for n, p in chunk
                ],
            )
            conn.commit()
        for statement in SQLITE_INDEXES:
            conn.execute(statement)
        conn.commit()
        conn.close()
        seconds = time.perf_counter() - started
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA cache_size = -262144")
        self.conn.execute("PRAGMA mmap_size = 4294967296")
        return Built(self.name, seconds, self.path.stat().st_size)

    def stop(self) -> None:
        self.conn.close()

    def run(self, spec: Spec) -> int:
        if spec.kind == "autocomplete":
            words = _words(spec.q)
            if not words:
                return 0
            match = " AND ".join([*(f'title:"{w}"' for w in words[:-1]), f'title:"{words[-1]}"*'])
            like = f"{words[-1]}%"
            products = self.conn.execute(
                "SELECT p.id, p.title FROM fts JOIN products p ON p.rowid = fts.rowid"
                " WHERE fts MATCH ? ORDER BY p.sales DESC, p.id LIMIT ?",
                (match, SUGGESTIONS),
            ).fetchall()
            self.conn.execute(
                "SELECT slug, name, n FROM brands WHERE lower(name) LIKE ?"
                " OR lower(name) LIKE '% ' || ? ORDER BY n DESC LIMIT 5",
                (like, like),
            ).fetchall()
            self.conn.execute(
                "SELECT slug, n FROM categories WHERE slug LIKE ? OR slug LIKE '%-' || ?"
                " ORDER BY n DESC LIMIT 5",
                (like, like),
            ).fetchall()
            return len(products)
        where: list[str] = []
        args: list[Any] = []
        words = _words(spec.q)
        if words:
            source = "fts JOIN products p ON p.rowid = fts.rowid"
            rank = "bm25(fts, 3.0, 2.0, 1.0, 1.0, 1.0)"
            where.append("fts MATCH ?")
            args.append(" ".join(f'"{w}"' for w in words))
        else:
            source, rank = "products p", "0"
        if spec.category:
            where.append("p.rowid IN (SELECT product FROM product_categories WHERE slug = ?)")
            args.append(spec.category)
        if spec.min_price is not None:
            where.append("p.min_price >= ?")
            args.append(spec.min_price)
        if spec.max_price is not None:
            where.append("p.min_price <= ?")
            args.append(spec.max_price)
        if spec.rating_gte is not None:
            where.append("p.rating >= ?")
            args.append(spec.rating_gte)
        if spec.in_stock is not None:
            where.append("p.in_stock = ?")
            args.append(int(spec.in_stock))
        order = SQLITE_ORDER[spec.sort]
        # Values are bound parameters; only fixed fragments are formatted in.
        sql = f"""
            WITH m AS MATERIALIZED (
                SELECT p.rowid AS r, p.id, p.title, p.brand_slug, p.category_path, p.min_price,
                       p.max_price, p.rating, p.in_stock, p.sales, p.created_at, {rank} AS rank
                FROM {source} {"WHERE " + " AND ".join(where) if where else ""}
            )
            SELECT
              (SELECT count(*) FROM m),
              (SELECT json_group_array(json_array(id, title, min_price, rating)) FROM
                 (SELECT * FROM m ORDER BY {order} LIMIT {HITS})),
              (SELECT json_group_array(json_array(brand_slug, n)) FROM
                 (SELECT brand_slug, count(*) AS n FROM m GROUP BY 1)),
              (SELECT json_group_array(json_array(category_path, n)) FROM
                 (SELECT category_path, count(*) AS n FROM m GROUP BY 1)),
              (SELECT json_group_array(json_array(b, n)) FROM
                 (SELECT {PRICE_CASE} AS b, count(*) AS n FROM m GROUP BY 1)),
              (SELECT json_group_array(json_array(r, n)) FROM
                 (SELECT CAST(rating AS INTEGER) AS r, count(*) AS n FROM m GROUP BY 1)),
              (SELECT json_group_array(json_array(in_stock, n)) FROM
                 (SELECT in_stock, count(*) AS n FROM m GROUP BY 1)),
              (SELECT json_group_array(json_array(pair, n)) FROM
                 (SELECT a.pair, count(*) AS n FROM m JOIN product_attrs a ON a.product = m.r
                  GROUP BY 1))
        """  # noqa: S608
        row = self.conn.execute(sql, args).fetchone()
        return int(row[0])


# --------------------------------------------------------------------------------------------
# Running


Engine = Any


def measure(engine: Engine, mix: Sequence[Spec], budget: float) -> Run:
    run = Run(engine.name, {kind: [] for kind in KINDS})
    for spec in mix[:WARMUP]:
        engine.run(spec)
    started = time.perf_counter()
    for spec in mix:
        t0 = time.perf_counter()
        engine.run(spec)
        run.latencies[spec.kind].append(time.perf_counter() - t0)
        if time.perf_counter() - started > budget:
            run.stopped_early = True
            break
    run.seconds = time.perf_counter() - started
    return run


def _p50_p99(values: Sequence[float]) -> str:
    return f"{percentile(values, 0.5):.1f} / {percentile(values, 0.99):.1f}"


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def report(size: int, builds: list[Built], runs: list[Run], info: dict[str, str]) -> list[str]:
    base = runs[0]
    table = Table(title=f"Search, {size:,} products, {QUERIES:,}-query mix (one client)")
    columns = ("engine", "build s", "size", "queries", "p50 ms", "p95 ms", "p99 ms", "q/s")
    for column in (*columns, "Mercato/other p50", "Mercato × faster p50"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    built = {b.engine: b for b in builds}
    markdown = [
        f"| engine ({size:,} products) | build s | size | p50 ms | p95 ms | p99 ms | q/s "
        "| Mercato/other p50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base_p50 = percentile(base.all(), 0.5)
    for run in runs:
        b = built.get(run.engine) or built.get(runs[0].engine)
        p50 = percentile(run.all(), 0.5)
        ratio = base_p50 / p50 if p50 else float("nan")
        count = f"{run.count:,}" + (" (budget hit)" if run.stopped_early else "")
        row = [
            run.engine,
            f"{b.seconds:,.1f}" if b else "",
            _mb(b.size_bytes) if b else "",
            count,
            f"{p50:.2f}",
            f"{percentile(run.all(), 0.95):.2f}",
            f"{percentile(run.all(), 0.99):.2f}",
            f"{run.per_second:,.0f}",
            f"{ratio:.3f}",
            f"{1 / ratio:,.1f}×" if ratio else "",
        ]
        table.add_row(*row)
        markdown.append(f"| {' | '.join(row[:3] + row[4:9])} |")
    console.print(table)
    kinds = Table(title=f"p50 / p99 ms per kind of query, {size:,} products")
    kinds.add_column("engine")
    for kind in KINDS:
        kinds.add_column(kind, justify="right")
    for run in runs:
        kinds.add_row(run.engine, *(_p50_p99(run.latencies[k]) for k in KINDS))
    console.print(kinds)
    markdown.append("")
    markdown.append("| p50 / p99 ms | " + " | ".join(KINDS) + " |")
    markdown.append("| --- |" + " ---: |" * len(KINDS))
    for run in runs:
        cells = [_p50_p99(run.latencies[k]) for k in KINDS]
        markdown.append(f"| {run.engine} | " + " | ".join(cells) + " |")
    return markdown


def load(size: int, seed: int) -> list[ProductSource]:
    from mercato.search.demo import generated_sources

    started = time.perf_counter()
    sources = list(generated_sources(size, seed, currency=CURRENCY))
    console.print(f"generated {size:,} products in {time.perf_counter() - started:.0f}s")
    return sources


def bench_size(size: int, args: argparse.Namespace, info: dict[str, str]) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="mercato-bench-search-"))
    engines_run: list[Run] = []
    builds: list[Built] = []
    try:
        sources = load(size, args.seed)
        mix = make_mix(sources, args.queries, args.seed)

        def step(label: str, action: Callable[[], Any]) -> Any:
            console.print(f"[bold]{label}[/bold] …")
            started = time.perf_counter()
            result = action()
            console.print(f"  done in {time.perf_counter() - started:.0f}s")
            return result

        mercato = MercatoInProcess(work / "data")
        builds.append(step("Mercato: building the index", lambda: mercato.build(sources)))
        engines_run.append(step("Mercato: in process", lambda: measure(mercato, mix, args.budget)))
        if args.personal:
            fan = MercatoInProcess(work / "data", affinity=customer_affinity(sources, args.seed))
            fan.open()
            label = "Mercato: in process, a signed-in customer"
            engines_run.append(step(label, functools.partial(measure, fan, mix, args.budget)))
        for country in args.countries:
            there = MercatoInProcess(work / "data", country)
            there.open()
            label = f"Mercato: in process, to {country}"
            engines_run.append(step(label, functools.partial(measure, there, mix, args.budget)))
        if args.http:
            http = MercatoHttp(work / "data")
            http.start()
            try:
                engines_run.append(
                    step("Mercato: over HTTP", lambda: measure(http, mix, args.budget))
                )
            finally:
                http.stop()
        if args.postgres:
            pg = Postgres()
            try:
                builds.append(step("PostgreSQL: loading and indexing", lambda: pg.build(sources)))
                info["postgresql"] = pg.version
                engines_run.append(
                    step("PostgreSQL: queries", lambda: measure(pg, mix, args.budget))
                )
            finally:
                pg.stop()
        if args.sqlite:
            lite = Sqlite(work)
            builds.append(step("SQLite: loading and indexing", lambda: lite.build(sources)))
            try:
                engines_run.append(step("SQLite: queries", lambda: measure(lite, mix, args.budget)))
            finally:
                lite.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(size, builds, engines_run, info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in SIZES),
        help="comma-separated catalog sizes (default: 100000,1000000)",
    )
    parser.add_argument("--queries", type=int, default=QUERIES, help="queries in the mix")
    parser.add_argument("--seed", type=int, default=42, help="catalog and query mix seed")
    parser.add_argument(
        "--budget",
        type=float,
        default=900.0,
        help="seconds at most per engine and size; a slower engine is reported as such",
    )
    parser.add_argument(
        "--countries",
        type=lambda text: [c.strip().upper() for c in text.split(",") if c.strip()],
        default=[],
        help="also run the in-process mix for shoppers in these countries (e.g. DE,FR): "
        "stock, its filter, facet and ranking for the warehouses shipping there",
    )
    parser.add_argument(
        "--personal",
        action="store_true",
        help="also run the in-process mix for a signed-in customer whose brand and category "
        "affinities re-rank the top of every relevance search with words",
    )
    parser.add_argument("--http", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    info = machine()
    info["sqlite"] = sqlite3.sqlite_version
    markdown: list[str] = []
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        markdown += [*bench_size(size, args, info), ""]
    console.print(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; Python "
        f"{info['python']}; PostgreSQL {info.get('postgresql', '-')}; SQLite {info['sqlite']}."
    )
    print()
    print("\n".join(markdown))
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; Python "
        f"{info['python']}; PostgreSQL {info.get('postgresql', '-')} (private server, fsync "
        f"off); SQLite {info['sqlite']}. {args.queries:,} queries after {WARMUP} warm-up "
        "queries, one at a time from one client on the same machine."
    )


if __name__ == "__main__":
    main()
