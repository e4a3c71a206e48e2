"""Recommendations: the offline build at a synthetic 100,000 orders, and serving in process.

Run from the repository root::

    python -m bench.recommendations --database mercato-demo.db      # about a minute

**Build**: 100,000 synthetic orders (``--orders``) of 30,000 customers over 20,000 products,
one to four products each, popularity Zipf-like, a third of the products sold in pairs. Times
``compute_lists`` (the rules, the similarity model, the best sellers) for each similarity model
and its peak Python/NumPy allocation (``tracemalloc``). Reading the orders from the database and
writing the lists are not in it (two short transactions around it).

**Serving**: against an existing shop (``--database``, e.g. the demo's), builds the lists, then
asks ``recommendations.recommend`` for random active products (100 of them), both kinds, in
process (no HTTP), and prints p50/p99: reading the product cards and stock that filter each
list every time, then with this process's recent reads kept (what the API does: warm after
the first request for a product, until ``recs_reload_seconds`` pass).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import tracemalloc
from datetime import UTC, datetime

from mercato.orders.service import SoldBasket
from mercato.recommendations import build as building
from mercato.settings import Settings


def synthetic(orders: int, customers: int, products: int, seed: int = 7) -> list[SoldBasket]:
    rng = random.Random(seed)
    names = [f"p{i:06d}" for i in range(products)]
    weights = [1 / (rank + 1) ** 0.9 for rank in range(products)]
    partner = {names[i]: names[i + 1] for i in range(0, products // 3, 2)}
    now = datetime.now(UTC)
    baskets = []
    for n in range(orders):
        size = rng.choices((1, 2, 3, 4), weights=(50, 30, 15, 5))[0]
        picked = set(rng.choices(names, weights=weights, k=size))
        for p in sorted(picked):
            if p in partner and rng.random() < 0.5:
                picked.add(partner[p])
        who = f"c{int(rng.paretovariate(1.2) * 7919) % customers}"
        baskets.append(SoldBasket(f"o{n}", who, now, frozenset(picked)))
    return baskets


def bench_build(orders: int) -> None:
    baskets = synthetic(orders, 30_000, 20_000)
    print(f"build: {orders:,} orders, {len({b.customer for b in baskets}):,} customers")
    for model in ("itemknn", "rp3beta"):
        settings = Settings(recs_also_bought_model=model)
        tracemalloc.start()
        started = time.perf_counter()
        computed = building.compute_lists(baskets, [], settings)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"  {model:8s} {seconds:6.1f} s  peak {peak / 1e6:7.1f} MB  "
            f"{computed.rules:,} rules  lists: {computed.bought_together:,} together, "
            f"{computed.also_bought:,} also bought"
        )
    print("  ease     not run: a dense 20,000 x 20,000 inverse (3.2 GB) is past its limit")


async def bench_serving(database: str, requests: int) -> None:
    from mercato import migrate
    from mercato.catalog import service as catalog
    from mercato.modules import wire
    from mercato.recommendations import service
    from mercato.runtime import Runtime

    wire()
    url = database if "://" in database else f"sqlite+aiosqlite:///{database}"
    runtime = Runtime.from_settings(Settings(database_url=url, recs_reload_seconds=60.0))
    try:
        await migrate.ensure_migrated(runtime.db)
        stats = await service.build(runtime)
        print(f"serving: built from {stats.orders:,} orders in {stats.seconds:.1f} s")
        async with runtime.db.transaction() as uow:
            page = await catalog.staff_products(uow, status="active", limit=100)
            ids = [p.id for p in page.items]
            lists = await service.served(runtime, uow)
        rng = random.Random(3)
        filters = service.Filters.for_runtime(runtime)  # kept 60 s: warm after the first reads
        for label, kept in (("every read", None), ("recent reads kept", filters)):
            for kind in service.KINDS:
                timings = []
                for _ in range(requests):
                    product = rng.choice(ids)
                    async with runtime.db.transaction() as uow:
                        started = time.perf_counter()
                        await service.recommend(
                            uow, lists, product, kind=kind, limit=10, country="DE", filters=kept
                        )
                        timings.append((time.perf_counter() - started) * 1000)
                timings.sort()
                p99 = timings[int(len(timings) * 0.99) - 1]
                print(
                    f"  {label:18s} {kind:16s} p50 {statistics.median(timings):.3f} ms  "
                    f"p99 {p99:.3f} ms"
                )
    finally:
        await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--database", help="a shop to serve from (SQLite file or URL)")
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    bench_build(args.orders)
    if args.database:
        asyncio.run(bench_serving(args.database, args.requests))


if __name__ == "__main__":
    main()
