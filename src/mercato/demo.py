"""The demo shop: logins, a generated catalog and stock, and ninety days of history (customers,
orders, shipments, returns, reviews), built once per database in the shop's currency
(``MERCATO_CURRENCY``), and served.

Each module seeds its own tables through its own ``demo`` functions; the history goes through
the services as shoppers and staff would (:mod:`mercato.demo_history`); this file orders them,
shows progress and serves the shop. The first part of the history is made before the shop
serves; the rest while it serves, in this process, from a journal that a restart continues.
The search index is built before the shop's address is printed, so the first search answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text
from sqlalchemy.engine import make_url

from mercato.catalog.demo import seed_catalog
from mercato.checkout.demo import seed_checkout
from mercato.db import Database
from mercato.demo_history import History, HistoryCounts, journal_path
from mercato.identity import service as identity
from mercato.inventory.demo import seed_inventory
from mercato.runtime import Runtime
from mercato.search import service as search
from mercato.search.cli import reindex_with_progress
from mercato.settings import Settings

log = logging.getLogger("mercato.demo")

STAFF_EMAIL = "staff@example.com"
SHOPPER_EMAIL = "shopper@example.com"
DEFAULT_CUSTOMERS = 300
DEFAULT_ORDERS = 3000
# Orders made before the shop serves (the oldest); the rest follow while it serves. About ten
# seconds of the first start on the machine of docs/benchmarks.md.
BEFORE_SERVING = 150


def reset_database(settings: Settings) -> None:
    """Throw the demo database away (a SQLite file, or every table of a PostgreSQL schema),
    with the history's journal and the search index kept for it."""
    url = settings.database_url
    journal_path(settings).unlink(missing_ok=True)
    shutil.rmtree(Path(settings.data_dir) / "search", ignore_errors=True)
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


def _summary(history: HistoryCounts) -> str:
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(history.by_status.items()))
    states = ", ".join(f"{n} {s}" for s, n in sorted(history.reviews_by_state.items()))
    refused = (
        f"; {history.not_placed} orders refused by the checkout (out of stock)"
        if history.not_placed
        else ""
    )
    return (
        f"History: {history.customers} customers, {history.orders} orders ({statuses}), "
        f"{history.reviews} reviews ({states}){refused}"
    )


async def _seed_shop(
    runtime: Runtime, products: int, seed: int, password: str, console: Console
) -> bool:
    """The logins, catalog, stock and shipping methods unless they are there; whether anything
    was created."""
    settings = runtime.settings
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
    return True


async def _history(
    runtime: Runtime, created: bool, seed: int, password: str, customers: int, orders: int
) -> History | None:
    """The demo's history: planned afresh for a new shop, continued from its journal for one
    made before (None: a shop whose history is not journalled, nothing to continue)."""
    journal = journal_path(runtime.settings)
    if created:
        journal.unlink(missing_ok=True)  # left by a database that is gone
    elif not journal.exists():
        return None
    return await History.prepare(
        runtime,
        customers=customers,
        orders_count=orders,
        seed=seed,
        password=password,
        journal=journal,
    )


async def _make_history(
    history: History, console: Console, *, until_orders: int | None, stop: asyncio.Event | None
) -> HistoryCounts | None:
    """Run the history on with a progress bar; its counts once complete, printed."""
    with _progress(console) as progress:
        task = progress.add_task(
            "Orders", total=history.total_orders, completed=history.orders_done
        )
        counts = await history.run(
            until_orders=until_orders, stop=stop, advance=lambda n: progress.advance(task, n)
        )
    await history.publish_figures()
    if counts is not None:
        console.print(_summary(counts))
    return counts


async def run_demo(
    settings: Settings,
    console: Console,
    *,
    products: int,
    seed: int,
    password: str,
    customers: int = DEFAULT_CUSTOMERS,
    orders: int = DEFAULT_ORDERS,
    serve: bool = True,
    announce: Callable[[], None] = lambda: None,
) -> None:
    """Seed the demo shop unless it is there, make the first part of its history (all of it
    when not serving), build the search index, then serve: ``announce()`` once the shop
    answers, while the rest of the history is made."""
    runtime = Runtime.from_settings(settings)
    history: History | None = None
    try:
        created = await _seed_shop(runtime, products, seed, password, console)
        if not created:
            console.print("[yellow]Demo data already present (use --reset to start over).[/yellow]")
        history = await _history(runtime, created, seed, password, customers, orders)
        if history is not None and not history.finished:
            with _stop_on_signal() as stop:
                await _make_history(
                    history, console, until_orders=BEFORE_SERVING if serve else None, stop=stop
                )
            if stop.is_set():
                console.print("[yellow]Stopped; `mercato demo` continues the history.[/yellow]")
                return
        if created or not (await search.status(runtime))["built"]:
            await reindex_with_progress(settings)
        if serve:
            await _serve(settings, history, console, announce)
        else:
            announce()
    finally:
        if history is not None:
            history.close()
        await runtime.close()


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[asyncio.Event]:
    """An event set by Ctrl-C (or SIGTERM) meanwhile, so the history stops between two steps
    rather than in the middle of one."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Signals reach the main thread only (a demo run from another thread stops as it can).
    signals = (
        (signal.SIGINT, signal.SIGTERM)
        if threading.current_thread() is threading.main_thread()
        else ()
    )
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


class _DemoServer(uvicorn.Server):
    """uvicorn's server, telling when it listens and letting the history stop between two
    steps before the application shuts down."""

    def __init__(
        self,
        config: uvicorn.Config,
        started: Callable[[], None],
        stopping: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(config)
        self.on_started = started
        self.on_stopping = stopping

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                # uvicorn raises the signal again once shut down; the shop has stopped cleanly
                # by then, and the demo's own clean-up still has to run.
                self._captured_signals.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.on_stopping()
        await super().shutdown(sockets)


async def _serve(
    settings: Settings, history: History | None, console: Console, announce: Callable[[], None]
) -> None:
    stop = asyncio.Event()
    background: list[asyncio.Task[None]] = []

    async def finish_history() -> None:
        assert history is not None
        try:
            await _make_history(history, console, until_orders=None, stop=stop)
        except Exception:
            # The shop keeps serving; a restart continues from the last step journalled.
            log.exception("the demo history stopped")

    def started() -> None:
        announce()
        if history is not None and not history.finished:
            console.print("The rest of the history is made while the shop serves:")
            background.append(asyncio.create_task(finish_history(), name="demo-history"))

    async def stopping() -> None:
        stop.set()
        for task in background:
            await task
        background.clear()

    config = uvicorn.Config(
        "mercato.app:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
    )
    try:
        await _DemoServer(config, started, stopping).serve()
    finally:
        await stopping()
