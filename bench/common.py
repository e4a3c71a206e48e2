"""What every benchmark needs: a description of the machine, and a catalog with stock."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CURRENCY = "EUR"  # the benchmarks' shop, as a default `mercato demo` is


def _first_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine() -> dict[str, str]:
    """CPU model, cores, memory and Python: printed beside every figure."""
    mem_kib = _first_field("/proc/meminfo", "MemTotal")
    return {
        "cpu": _first_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "ram": f"{int(mem_kib.split()[0]) / 1024 / 1024:.0f} GiB" if mem_kib else "unknown",
        "python": platform.python_version(),
    }


async def seed_hot_and_spread(
    db: Any,
    *,
    products: int,
    seed: int,
    spread_variants: int,
    hot_stock: int,
    spread_stock: int,
    currency: str | None = None,
) -> tuple[str, list[str]]:
    """A demo catalog, one warehouse, one hot variant with ``hot_stock`` units and
    ``spread_variants`` others with ``spread_stock`` each; returns (hot, spread)."""
    from mercato.catalog import service as catalog
    from mercato.catalog.demo import seed_catalog
    from mercato.inventory import service as inventory
    from mercato.inventory.demo import receive_bulk

    variant_ids = await seed_catalog(db, products, seed=seed, currency=CURRENCY)
    async with db.transaction() as uow:
        infos = await catalog.get_variants(uow, variant_ids)
        sellable = [
            v
            for v in variant_ids
            if infos[v].active and (currency is None or infos[v].currency == currency)
        ]
        if len(sellable) < spread_variants + 1:
            raise SystemExit(f"only {len(sellable)} sellable variants; raise --products")
        warehouse = await inventory.create_warehouse(
            uow, code="BENCH", name="Bench", countries=["DE"]
        )
    hot, spread = sellable[0], sellable[1 : spread_variants + 1]
    stock = [(hot, warehouse.id, hot_stock)] + [(v, warehouse.id, spread_stock) for v in spread]
    await receive_bulk(db, stock, reference="bench")
    return hot, spread


async def migrated_database(server: Any, name: str = "bench") -> str:
    """A new database ``name`` on the benchmark's private PostgreSQL, migrated to the head;
    its SQLAlchemy URL."""
    import asyncio

    import asyncpg

    from mercato import migrate

    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url: str = server.url(name)
    await asyncio.to_thread(migrate.upgrade, url)
    return url
