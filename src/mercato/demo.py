"""The demo shop: logins, a generated catalog and stock, and ninety days of history (customers,
orders, shipments, returns, reviews), built once per database in the shop's currency
(``MERCATO_CURRENCY``).

Each module seeds its own tables through its own ``demo`` functions; the history goes through
the services as shoppers and staff would (:mod:`mercato.demo_history`); this file only orders
them and shows progress.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text
from sqlalchemy.engine import make_url

from mercato.catalog.demo import seed_catalog
from mercato.checkout.demo import seed_checkout
from mercato.db import Database
from mercato.demo_history import generate_history
from mercato.identity import service as identity
from mercato.inventory.demo import seed_inventory
from mercato.runtime import Runtime
from mercato.settings import Settings

STAFF_EMAIL = "staff@example.com"
SHOPPER_EMAIL = "shopper@example.com"
DEFAULT_CUSTOMERS = 200
DEFAULT_ORDERS = 300  # see docs/benchmarks.md: each order runs the real workflows


def reset_database(url: str) -> None:
    """Throw the demo database away (a SQLite file, or every table of a PostgreSQL schema)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return

    async def drop() -> None:
        db = Database(url, pool_size=0)
        try:
            async with db.raw_connection() as conn:  # maintenance, not a unit of work
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        finally:
            await db.dispose()

    asyncio.run(drop())


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


async def seed_if_empty(
    settings: Settings,
    products: int,
    seed: int,
    password: str,
    console: Console,
    *,
    customers: int = DEFAULT_CUSTOMERS,
    orders: int = DEFAULT_ORDERS,
) -> bool:
    """Seed the demo shop unless it is already there; returns whether anything was created."""
    runtime = Runtime.from_settings(settings)
    try:
        async with runtime.db.transaction() as uow:
            if await identity.get_user_by_email(uow, STAFF_EMAIL) is not None:
                return False
            await identity.create_user(
                uow, email=STAFF_EMAIL, password=password, role="staff", name="Demo Staff"
            )
            await identity.create_user(
                uow, email=SHOPPER_EMAIL, password=password, role="customer", name="Sam Shopper"
            )
        with _progress(console) as progress:
            task = progress.add_task("Catalog", total=products)
            variant_ids = await seed_catalog(
                runtime.db,
                products,
                seed,
                lambda n: progress.advance(task, n),
                currency=settings.currency,
            )
            stock_task = progress.add_task("Stock", total=len(variant_ids))
            await seed_inventory(
                runtime.db, variant_ids, seed, lambda n: progress.advance(stock_task, n)
            )
            await seed_checkout(runtime.db, currency=settings.currency)
            history_task = progress.add_task("Orders", total=orders)
            history = await generate_history(
                runtime,
                customers=customers,
                orders_count=orders,
                seed=seed,
                password=password,
                advance=lambda n: progress.advance(history_task, n),
            )
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(history.by_status.items()))
        states = ", ".join(f"{n} {s}" for s, n in sorted(history.reviews_by_state.items()))
        console.print(
            f"History: {history.customers} customers, {history.orders} orders ({statuses}), "
            f"{history.reviews} reviews ({states})"
        )
        if history.not_placed:
            console.print(f"  {history.not_placed} orders refused by the checkout (out of stock)")
        return True
    finally:
        await runtime.close()
