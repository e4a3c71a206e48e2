"""Recommendations at scale: the build at 100,000 and 1,000,000 orders, and serving a million
products' lists in process and over HTTP, with the memory the lists take.

Run from the repository root (one command; every part by default, about ten minutes here)::

    python -m bench.recommendations
    python -m bench.recommendations --parts build --build-orders 100000
    python -m bench.recommendations --parts serve,http --products 200000 --orders 200000

**build**: synthetic orders (``--build-orders``), as many products as orders and a third as
many customers. A basket holds one to four products (50/30/15/5%), drawn with Zipf popularity
(exponent 0.9); a third of the products come in pairs, the partner added half the time; the
customers' order counts are Zipf too (exponent 0.6: the heaviest buyer places about 0.25% of
the orders). Each size runs in a fresh process: the time of ``compute_lists`` (the rules, the
RP3beta similarity, the best sellers) and the process's peak RSS, against its RSS with the
orders generated (the build's own memory is the difference).

**serve**: a throwaway SQLite database with ``--products`` active products (one variant each,
all in stock in a German warehouse) and the lists built from ``--orders`` synthetic orders over
them, written through ``store.write``. Then: ``store.read`` of those lists (time, retained
memory by ``tracemalloc``, RSS before/after), the Redis copy when ``--redis-url`` is
given, and ``recommendations.recommend`` for ``--requests`` random listed products in process
(limit 10, Germany), first with this process's recent reads cold, then warm (as the API keeps
them for ``recs_reload_seconds``).

**http**: ``mercato serve`` on that database (one API process), its RSS before and after the
first recommendations request (which loads the lists: from the Redis copy when
``--redis-url`` is given, else from the database), then ``GET /api/products/{id}/
recommendations`` for ``--http-requests`` random listed products, cold then warm, one request
at a time.

The database is seeded with Core inserts straight into the catalog and inventory tables of a
SQLite file nobody else uses: the catalog's own bulk path (the demo generator) makes realistic
products at about a thousand a second, twenty minutes for a million, and the recommendations
only need products to exist, be active and be in stock. ``--database`` keeps the file and
reuses it on the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.common import ROOT, machine
from mercato.orders.service import SoldBasket
from mercato.settings import Settings

console = Console(width=None if sys.stdout.isatty() else 150)
COUNTRY = "DE"
SECRET_KEY = secrets.token_urlsafe(32)


# --- synthetic orders ------------------------------------------------------------------------


def product_id(i: int) -> str:
    return f"prd_bench{i:021d}"  # 30 characters, as long as a real product id


def _zipf_draws(rng: np.random.Generator, n: int, size: int, exponent: float) -> Any:
    cumulative = np.cumsum(1.0 / np.arange(1, n + 1) ** exponent)
    cumulative /= cumulative[-1]
    return np.minimum(np.searchsorted(cumulative, rng.random(size)), n - 1)


def synthetic(orders: int, products: int, customers: int, seed: int = 7) -> list[SoldBasket]:
    rng = np.random.default_rng(seed)
    sizes = rng.choice(np.array([1, 2, 3, 4]), size=orders, p=[0.5, 0.3, 0.15, 0.05])
    picks = _zipf_draws(rng, products, int(sizes.sum()), 0.9).tolist()
    with_partner = (rng.random(len(picks)) < 0.5).tolist()
    who = _zipf_draws(rng, customers, orders, 0.6).tolist()
    ends = np.cumsum(sizes).tolist()
    paired = products // 3  # products 0, 2, 4... below it sell with the next one
    names = [product_id(i) for i in range(products)]
    now = datetime.now(UTC)
    baskets, start = [], 0
    for n, end in enumerate(ends):
        chosen = set(picks[start:end])
        for k in range(start, end):
            p = picks[k]
            if p < paired and p % 2 == 0 and with_partner[k]:
                chosen.add(p + 1)
        baskets.append(SoldBasket(f"o{n}", f"c{who[n]}", now, frozenset(names[p] for p in chosen)))
        start = end
    return baskets


# --- memory ----------------------------------------------------------------------------------


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(timings: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(timings)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


@contextmanager
def step(progress: Progress, what: str) -> Iterator[None]:
    task = progress.add_task(what, total=None)
    try:
        yield
    finally:
        progress.remove_task(task)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


# --- build -----------------------------------------------------------------------------------


def _build_once(orders: int, model: str, out: Any) -> None:
    """In a fresh process: generate, then time ``compute_lists`` and read the peak RSS."""
    from mercato.recommendations import build as building

    baskets = synthetic(orders, orders, max(1, orders // 3))
    gc.collect()
    before = rss_mb()
    steps: dict[str, float] = {}
    started = time.perf_counter()

    def advance(name: str) -> None:
        steps[name] = time.perf_counter() - started

    computed = building.compute_lists(baskets, [], Settings(recs_also_bought_model=model), advance)
    out.put(
        {
            "seconds": time.perf_counter() - started,
            "rules_s": steps.get("rules", 0.0),
            "rss_orders": before,
            "peak": peak_rss_mb(),
            "rules": computed.rules,
            "customers": computed.customers,
            "products": computed.products,
            "together": computed.bought_together,
            "also": computed.also_bought,
            "lists_mb": computed.lists.compact().nbytes() / 1e6,
        }
    )


def bench_build(sizes: Sequence[int], model: str) -> None:
    table = Table(title=f"compute_lists ({model}), synthetic orders; a fresh process per size")
    for column in (
        "orders",
        "products sold",
        "customers",
        "time",
        "of which rules",
        "peak RSS",
        "RSS with orders",
        "build's own",
        "rules",
        "lists: together / also",
    ):
        table.add_column(column, justify="right")
    context = multiprocessing.get_context("spawn")
    for orders in sizes:
        queue = context.Queue()
        with progress_bar() as progress, step(progress, f"build at {orders:,} orders"):
            child = context.Process(target=_build_once, args=(orders, model, queue))
            child.start()
            found = queue.get()
            child.join()
        table.add_row(
            f"{orders:,}",
            f"{found['products']:,}",
            f"{found['customers']:,}",
            f"{found['seconds']:.1f} s",
            f"{found['rules_s']:.1f} s",
            f"{found['peak']:,.0f} MB",
            f"{found['rss_orders']:,.0f} MB",
            f"{found['peak'] - found['rss_orders']:,.0f} MB",
            f"{found['rules']:,}",
            f"{found['together']:,} / {found['also']:,}",
        )
        console.print(
            f"  {orders:,} orders: lists in memory {found['lists_mb']:.0f} MB (float32 arrays)"
        )
    console.print(table)


# --- the shop: a throwaway SQLite database ----------------------------------------------------


def seed_shop(path: Path, products: int) -> None:
    """Products, one in-stock variant each and a German warehouse, by Core inserts (see the
    module's docstring for why not the catalog's own bulk path)."""
    from sqlalchemy import create_engine, insert

    from mercato import migrate
    from mercato.catalog.models import Category, Product, Variant
    from mercato.inventory.models import Stock, Warehouse

    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    batch = 20_000
    with progress_bar() as progress, engine.begin() as conn:
        task = progress.add_task("seeding products", total=products)
        conn.execute(
            insert(Category.__table__),
            [{"id": "cat_bench", "name": "Bench", "slug": "bench", "path": "bench"}],
        )
        conn.execute(
            insert(Warehouse.__table__),
            [{"id": "whs_bench", "code": "BENCH", "name": "Bench", "countries": [COUNTRY]}],
        )
        for start in range(0, products, batch):
            ids = [product_id(i) for i in range(start, min(products, start + batch))]
            conn.execute(
                insert(Product.__table__),
                [
                    {
                        "id": p,
                        "title": f"Bench product {p[-7:]}",
                        "slug": f"bench-{p[-7:]}",
                        "category_id": "cat_bench",
                        "status": "active",
                        "currency": "EUR",
                        "min_price": 1000,
                        "max_price": 1000,
                    }
                    for p in ids
                ],
            )
            conn.execute(
                insert(Variant.__table__),
                [
                    {
                        "id": f"var{p[3:]}",
                        "product_id": p,
                        "sku": f"SKU{p[-10:]}",
                        "price": 1000,
                        "currency": "EUR",
                    }
                    for p in ids
                ],
            )
            conn.execute(
                insert(Stock.__table__),
                [
                    {"variant_id": f"var{p[3:]}", "warehouse_id": "whs_bench", "on_hand": 50}
                    for p in ids
                ],
            )
            progress.update(task, advance=len(ids))
    with engine.begin() as conn:
        # Planner statistics, as a live shop's database would have them (PostgreSQL gathers
        # them itself; SQLite only on ANALYZE): without them SQLite reads the product cards
        # of `id IN (...) AND status = ?` through the status index, a scan of every product.
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    asyncio.run(_ship_to_germany(f"sqlite+aiosqlite:///{path}"))


async def _ship_to_germany(url: str) -> None:
    """A shipping zone, so that the API takes Germany as a destination."""
    from mercato.checkout import service as checkout
    from mercato.db import Database

    db = Database(url)
    try:
        async with db.transaction() as uow:
            await checkout.create_zone(uow, name="Germany", countries=[COUNTRY])
    finally:
        await db.dispose()


def seeded(path: Path) -> int:
    if not path.exists():
        return 0
    import sqlite3

    with sqlite3.connect(path) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM catalog_products").fetchone()[0])
        except sqlite3.Error:
            return 0


# --- serving in process ------------------------------------------------------------------------


async def bench_serve(
    url: str, products: int, orders: int, requests: int, redis_url: str | None
) -> list[str]:
    """Builds and stores the lists, loads them back, serves them; returns the products asked
    (listed ones) for the HTTP part."""
    from mercato.modules import wire
    from mercato.recommendations import build as building
    from mercato.recommendations import store
    from mercato.runtime import Runtime

    wire()
    settings = Settings(database_url=url, redis_url=redis_url, recs_reload_seconds=600.0)
    runtime = Runtime.from_settings(settings)
    try:
        with progress_bar() as progress:
            with step(progress, f"{orders:,} synthetic orders"):
                baskets = synthetic(orders, products, max(1, orders // 3))
            with step(progress, "compute_lists"):
                started = time.perf_counter()
                computed = building.compute_lists(baskets, [], settings)
                compute_s = time.perf_counter() - started
            del baskets
            with step(progress, "store.write (SQLite)"):
                started = time.perf_counter()
                async with runtime.db.transaction() as uow:
                    version = await store.write(
                        uow,
                        computed.lists,
                        built_at=datetime.now(UTC),
                        orders_seen=orders,
                        model=computed.model,
                    )
                write_s = time.perf_counter() - started
            stored = len(store.to_blob(computed.lists.compact()))
            also = computed.lists.kinds["also_bought"]
            listed = np.flatnonzero(np.diff(also.indptr))
            asked_ids = [
                computed.lists.ids[i].decode()
                for i in np.random.default_rng(5).choice(listed, size=requests, replace=False)
            ]
            del computed
            gc.collect()
            rss_before = rss_mb()
            with step(progress, "store.read"):
                started = time.perf_counter()
                async with runtime.db.transaction() as uow:
                    lists = await store.read(uow)
                read_s = time.perf_counter() - started
            gc.collect()
            rss_after = rss_mb()
            del lists
            gc.collect()
            with step(progress, "store.read under tracemalloc"):
                tracemalloc.start()
                async with runtime.db.transaction() as uow:
                    lists = await store.read(uow)
                retained, load_peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
        console.print(
            f"serve: {products:,} products, lists from {orders:,} orders in {compute_s:.1f} s: "
            f"{lists.listed('also_bought'):,} also bought, "
            f"{lists.listed('bought_together'):,} bought together (version {version})"
        )
        console.print(
            f"  store.write ({stored / 1e6:.0f} MB in {stored // store.PART_BYTES + 1} parts): "
            f"{write_s:.1f} s; store.read: {read_s:.2f} s; "
            f"arrays {lists.nbytes() / 1e6:.0f} MB; retained (tracemalloc) "
            f"{retained / 1e6:.0f} MB, peak while loading {load_peak / 1e6:.0f} MB; "
            f"RSS {rss_before:,.0f} -> {rss_after:,.0f} MB"
        )
        if runtime.redis is not None:
            started = time.perf_counter()
            await store.copy_to_redis(runtime.redis, lists)
            put_s = time.perf_counter() - started
            started = time.perf_counter()
            again = await store.from_redis(runtime.redis, lists.version)
            get_s = time.perf_counter() - started
            assert again is not None
            blob = len(store.to_blob(lists))
            console.print(
                f"  Redis copy {blob / 1e6:.0f} MB: written in {put_s:.2f} s, "
                f"loaded in {get_s:.2f} s"
            )
        await _serve_in_process(runtime, lists, asked_ids)
        return asked_ids
    finally:
        await runtime.close()


async def _serve_in_process(runtime: Any, lists: Any, asked: Sequence[str]) -> None:
    from mercato.recommendations import service

    table = Table(title=f"recommend in process, {len(asked):,} listed products, limit 10")
    for column in ("part", "kind", "p50", "p99"):
        table.add_column(column, justify="right" if column in ("p50", "p99") else "left")
    for kind in service.KINDS:
        timings = []
        for product in asked:
            started = time.perf_counter()
            lists.of(kind, product)
            timings.append((time.perf_counter() - started) * 1000)
        p50, p99 = percentiles(timings)
        table.add_row("the list only (Lists.of)", kind, f"{p50:.3f} ms", f"{p99:.3f} ms")
    filters = service.Filters.for_runtime(runtime)
    for label in ("cold recent reads", "warm recent reads"):
        for kind in service.KINDS:
            timings = []
            for product in asked:
                async with runtime.db.transaction() as uow:
                    started = time.perf_counter()
                    await service.recommend(
                        uow, lists, product, kind=kind, limit=10, country=COUNTRY, filters=filters
                    )
                    timings.append((time.perf_counter() - started) * 1000)
            p50, p99 = percentiles(timings)
            table.add_row(label, kind, f"{p50:.3f} ms", f"{p99:.3f} ms")
    console.print(table)


# --- over HTTP -------------------------------------------------------------------------------


def start_server(url: str, port: int, log: Path, redis_url: str | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **({"MERCATO_REDIS_URL": redis_url} if redis_url else {}),
        "MERCATO_DATABASE_URL": url,
        "MERCATO_SECRET_KEY": SECRET_KEY,
        "MERCATO_RECS_RELOAD_SECONDS": "600",
        "PYTHONPATH": str(ROOT / "src"),
    }
    command = [sys.executable, "-m", "mercato.cli", "serve", "--port", str(port)]
    with log.open("wb") as out:  # a pipe nobody reads would fill up and stall the server
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


async def bench_http(
    url: str, asked: Sequence[str], count: int, log: Path, redis_url: str | None
) -> None:
    import httpx
    from tests.support.servers import free_port

    port = free_port()
    proc = start_server(url, port, log, redis_url)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            await _wait_up(client, proc, log)
            idle = rss_mb(proc.pid)
            started = time.perf_counter()
            first = await client.get(
                f"/api/products/{asked[0]}/recommendations", params={"country": COUNTRY}
            )
            if first.status_code != 200:
                raise SystemExit(f"{first.status_code}: {first.text}")
            load_s = time.perf_counter() - started
            loaded = rss_mb(proc.pid)
            console.print(
                f"http: mercato serve RSS {idle:,.0f} MB before the lists, {loaded:,.0f} MB after "
                f"(+{loaded - idle:,.0f} MB); the first request, which loads them: {load_s:.1f} s"
            )
            table = Table(title=f"GET /api/products/{{id}}/recommendations, {count:,} products")
            for column in ("reads", "kind", "p50", "p99"):
                table.add_column(column, justify="right" if column in ("p50", "p99") else "left")
            products = list(asked[1 : count + 1])
            timings = []
            for _ in products:  # the floor: a route that reads nothing
                started = time.perf_counter()
                (await client.get("/api/health")).raise_for_status()
                timings.append((time.perf_counter() - started) * 1000)
            p50, p99 = percentiles(timings)
            table.add_row("GET /api/health", "(baseline)", f"{p50:.2f} ms", f"{p99:.2f} ms")
            for label in ("cold recent reads", "warm recent reads"):
                for kind in ("bought_together", "also_bought"):
                    timings = []
                    for product in products:
                        started = time.perf_counter()
                        r = await client.get(
                            f"/api/products/{product}/recommendations",
                            params={"kind": kind, "country": COUNTRY, "limit": 10},
                        )
                        timings.append((time.perf_counter() - started) * 1000)
                        r.raise_for_status()
                    p50, p99 = percentiles(timings)
                    table.add_row(label, kind, f"{p50:.2f} ms", f"{p99:.2f} ms")
            console.print(table)
            console.print(f"  RSS after the requests: {rss_mb(proc.pid):,.0f} MB")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _wait_up(client: Any, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mercato serve exited early; its log: {log}")
        try:
            if (await client.get("/api/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.3)
    raise SystemExit("mercato serve did not come up")


# --- the command -----------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--parts", default="build,serve,http", help="build, serve, http")
    parser.add_argument("--build-orders", type=_sizes, default=[100_000, 1_000_000])
    parser.add_argument("--model", default="rp3beta", choices=("itemknn", "rp3beta"))
    parser.add_argument("--products", type=int, default=1_000_000, help="serving catalog")
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders behind the lists")
    parser.add_argument("--requests", type=int, default=1000, help="in process, per kind")
    parser.add_argument("--http-requests", type=int, default=500, help="per kind and pass")
    parser.add_argument("--database", type=Path, help="keep the seeded SQLite file here")
    parser.add_argument("--redis-url", help="also time the Redis copy of the lists")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    described = machine()
    console.print(
        f"{described['cpu']}, {described['cores']} cores, {described['ram']}, Python "
        f"{described['python']}; load average {os.getloadavg()[0]:.2f}"
    )
    if "build" in parts:
        bench_build(args.build_orders, args.model)
    if parts & {"serve", "http"}:
        run_serving(args, parts)
    console.print(f"load average after: {os.getloadavg()[0]:.2f}")


def run_serving(args: argparse.Namespace, parts: set[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="mercato-bench-recs-") as scratch:
        path = args.database or Path(scratch) / "shop.db"
        if seeded(path) == args.products:
            from mercato import migrate

            migrate.upgrade(f"sqlite+aiosqlite:///{path}")  # a file kept by an older version
        else:
            path.unlink(missing_ok=True)
            started = time.perf_counter()
            seed_shop(path, args.products)
            console.print(
                f"seeded {args.products:,} products in {time.perf_counter() - started:.0f} s"
            )
        url = f"sqlite+aiosqlite:///{path}"
        asked = asyncio.run(
            bench_serve(url, args.products, args.orders, args.requests + 1, args.redis_url)
        )
        if "http" in parts:
            log = Path(scratch) / "server.log"
            count = min(args.http_requests, len(asked) - 1)
            asyncio.run(bench_http(url, asked, count, log, args.redis_url))


if __name__ == "__main__":
    main()
