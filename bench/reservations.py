"""Reservation throughput on PostgreSQL: one hot variant, and 10,000 variants spread out.

Run from the repository root::

    python -m bench.reservations

It starts a private PostgreSQL on a free 127.0.0.1 port (the test suite's server: fsync and
synchronous_commit are off, so the figures show locking and CPU, not disk flushes), migrates
it, seeds a demo catalog, one hot variant with a huge stock and 10,000 variants with plenty each,
then runs ``inventory.service.reserve`` (one unit, catalog check included, one transaction per
call) from 1, 16 and 64 concurrent workers for a fixed time each. Holds are given back between
runs through the expiry path, and the ledger check must report zero differences at the end.
Prints a Rich table and a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import ROOT, machine, migrated_database, seed_hot_and_spread

WORKERS = (1, 16, 64)
SPREAD_VARIANTS = 10_000
HOT_STOCK = 1_000_000_000
SPREAD_STOCK = 1_000_000

console = Console()


@dataclass
class Run:
    scenario: str
    workers: int
    seconds: float
    latencies: list[float]
    failures: int

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


async def seed(db: Any, products: int) -> tuple[str, list[str]]:
    """A catalog from the demo generator; stock for one hot and SPREAD_VARIANTS other variants."""
    return await seed_hot_and_spread(
        db,
        products=products,
        seed=1,
        spread_variants=SPREAD_VARIANTS,
        hot_stock=HOT_STOCK,
        spread_stock=SPREAD_STOCK,
    )


async def run(
    db: Any, scenario: str, variants: list[str], workers: int, seconds: float, check_catalog: bool
) -> Run:
    from mercato.inventory import service as inventory
    from mercato.problems import Problem

    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal failures
        rng = random.Random(n)
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            variant = variants[rng.randrange(len(variants))]
            started = time.perf_counter()
            try:
                async with db.transaction() as uow:
                    await inventory.reserve(
                        uow,
                        f"b-{scenario}-{workers}-{n}-{i}",
                        [(variant, 1)],
                        check_catalog=check_catalog,
                    )
            except Problem:
                failures += 1
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(workers)))
    return Run(scenario, workers, time.perf_counter() - started, latencies, failures)


async def give_back(db: Any) -> int:
    """Release every hold through the expiry path (as the worker would after their TTL)."""
    from mercato.db import utcnow
    from mercato.inventory import service as inventory

    total = 0
    while True:
        async with db.transaction() as uow:
            done = await inventory.expire_due(uow, utcnow() + timedelta(days=1), limit=5000)
        total += done
        if done == 0:
            return total


async def main_async(args: argparse.Namespace) -> None:
    from sqlalchemy import text
    from tests.support.servers import PostgresServer

    from mercato.db import Database
    from mercato.inventory import service as inventory

    server = PostgresServer.start()
    try:
        url = await migrated_database(server)
        db = Database(url, pool_size=max(WORKERS) + 4, max_overflow=8)
        try:
            started = time.perf_counter()
            hot, spread = await seed(db, args.products)
            console.print(f"seeded in {time.perf_counter() - started:.1f}s")
            async with db.transaction() as uow:
                pg_version = str((await uow.execute(text("SHOW server_version"))).scalar_one())
            runs: list[Run] = []
            for scenario, variants in (("hot", [hot]), ("spread", spread)):
                for workers in WORKERS:
                    result = await run(
                        db, scenario, variants, workers, args.seconds, args.check_catalog
                    )
                    runs.append(result)
                    released = await give_back(db)
                    console.print(
                        f"{scenario:>6} x{workers:<3} {result.per_second:8.0f}/s "
                        f"({released} holds given back)"
                    )
            async with db.transaction() as uow:
                differences = await inventory.check_ledger(uow)
        finally:
            await db.dispose()
    finally:
        server.stop()
    report(runs, {**machine(), "postgresql": pg_version}, len(differences), args)


def report(
    runs: list[Run], info: dict[str, str], differences: int, args: argparse.Namespace
) -> None:
    seconds = args.seconds
    catalog = "with" if args.check_catalog else "without"
    labels = {"hot": "1 hot variant", "spread": f"{SPREAD_VARIANTS:,} variants"}
    table = Table(title="inventory.reserve on PostgreSQL (1 unit per call, one transaction each)")
    for column in ("variants", "workers", "reservations/s", "p50 ms", "p99 ms", "failed"):
        table.add_column(column, justify="left" if column == "variants" else "right")
    rows = []
    for r in runs:
        row = [
            labels[r.scenario],
            str(r.workers),
            f"{r.per_second:,.0f}",
            f"{r.percentile(0.5):.1f}",
            f"{r.percentile(0.99):.1f}",
            str(r.failures),
        ]
        rows.append(row)
        table.add_row(*row)
    console.print(table)
    console.print(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; "
        f"PostgreSQL {info['postgresql']}; Python {info['python']}. "
        f"{seconds:g} s per run. Ledger check after all runs: {differences} differences."
    )
    print()
    print("| variants | workers | reservations/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {' | '.join(row[:5])} |")
    print()
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; PostgreSQL "
        f"{info['postgresql']} (private test server: fsync and synchronous_commit off); "
        f"Python {info['python']}; one asyncio client process on the same machine as the server. "
        f"Each call: one transaction, {catalog} the catalog check of the variant. Each run "
        f"{seconds:g} s; after all runs the ledger check reported {differences} differences."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument(
        "--products",
        type=int,
        default=6000,
        help="demo products to generate (variants come from them)",
    )
    parser.add_argument(
        "--check-catalog",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="look the variant up in the catalog on each reservation (the default path)",
    )
    args = parser.parse_args()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
