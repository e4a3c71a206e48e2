"""What every benchmark needs: a description of the machine, a catalog with stock, and the
shop's own recovery run before the final checks."""

from __future__ import annotations

import os
import platform
from collections import Counter
from dataclasses import dataclass
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


PAST_EVERY_LEASE_SECONDS = 3600.0
"""How far ahead :func:`finish_left_runs` looks: past every workflow's lease (minutes) and every
retry delay (at most ten minutes)."""


@dataclass(frozen=True)
class Recovered:
    """What recovery made of the runs a stopped server and worker left mid-way."""

    completed: Counter[str]
    """Runs it finished, by workflow."""
    undone: Counter[str]
    """Runs it compensated (or failed), by workflow."""
    active: int
    """Runs still in progress after it (a processor that never answers, a recovery error)."""

    def __str__(self) -> str:
        return (
            f"recovery finished {dict(self.completed) or 0}, undid {dict(self.undone) or 0}, "
            f"left {self.active} in progress"
        )


async def finish_left_runs(url: str, secret_key: str) -> Recovered:
    """Let the shop's own recovery end what the stopped processes left: the worker's
    ``workflows.recover`` job, on a runtime built as the worker builds its own, run as if every
    lease had passed (the server and the worker are gone: nobody else holds a run), until it
    finds nothing more to do. A check of the money after this measures the shop's guarantee,
    not a snapshot taken while runs still wait for their leases to pass."""
    from datetime import timedelta

    from mercato import workflows
    from mercato.db import utcnow
    from mercato.modules import wire
    from mercato.runtime import Runtime
    from mercato.settings import Settings

    wire()
    runtime = Runtime.from_settings(
        Settings(database_url=url, secret_key=secret_key, currency=CURRENCY)
    )
    try:
        before = await _runs_by_status(runtime)
        for _ in range(20):  # bounded: a run may be postponed again and again
            later = utcnow() + timedelta(seconds=PAST_EVERY_LEASE_SECONDS)
            if not await workflows.recover(runtime, now=later):
                break
        after = await _runs_by_status(runtime)
    finally:
        await runtime.close()
    completed: Counter[str] = Counter()
    undone: Counter[str] = Counter()
    for (name, status), n in after.items():
        grown = n - before.get((name, status), 0)
        if grown > 0 and status == "completed":
            completed[name] += grown
        elif grown > 0 and status == "failed":
            undone[name] += grown
    active = sum(n for (_, status), n in after.items() if status in workflows.ACTIVE)
    return Recovered(completed, undone, active)


async def _runs_by_status(runtime: Any) -> dict[tuple[str, str], int]:
    from mercato import workflows

    found: dict[tuple[str, str], int] = {}
    async with runtime.db.transaction() as uow:
        for name in workflows.registered():
            for status, n in (await workflows.count_by_status(uow, name)).items():
                found[(name, status)] = n
    return found
