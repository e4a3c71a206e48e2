"""``mercato import``, ``mercato export``, ``mercato backup`` and ``mercato restore``: the shop's
data in and out of files.

Each product of an import is written in a unit of work of its own (a bad one never undoes
the others); a dry run does all of the same work and rolls every one back. Exports read in
pages of short transactions (a long one would hold SQLite's writer lock, or a PostgreSQL
snapshot, for the whole file), so a large shop is written without being held in memory.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mercato import backup as backups
from mercato import migrate as migrations
from mercato.catalog import service as catalog
from mercato.cli_support import DatabaseOption, console, database_url, run_migrated
from mercato.db import UnitOfWork
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.problems import Problem
from mercato.runtime import Runtime

import_app = typer.Typer(help="Bring products into the shop from files.", no_args_is_help=True)
export_app = typer.Typer(help="Write the shop's products or orders to CSV.", no_args_is_help=True)

EXPORT_BATCH = 200
SHOWN_ERRORS = 500
err_console = Console(stderr=True)

WarehouseOption = Annotated[
    str | None,
    typer.Option(
        help="Warehouse code the stock quantities are for (default: the first active "
        "warehouse of the shop's own pool, by code)"
    ),
]


# --------------------------------------------------------------------------------------------
# mercato import products


@dataclass
class ImportSummary:
    products_created: int = 0
    products_updated: int = 0
    products_unchanged: int = 0
    products_rejected: int = 0
    variants_created: int = 0
    variants_updated: int = 0
    quantities_ignored: bool = False
    errors: list[catalog.RowError] = field(default_factory=list)

    def add(self, outcome: catalog.ProductImported) -> None:
        self.errors.extend(outcome.errors)
        if outcome.product_id is None:
            self.products_rejected += 1
        elif outcome.created:
            self.products_created += 1
        elif outcome.updated:
            self.products_updated += 1
        else:
            self.products_unchanged += 1
        self.variants_created += outcome.variants_created
        self.variants_updated += outcome.variants_updated


class _RolledBack(Exception):
    """Ends a dry run's unit of work: what it did is undone, what it found is kept."""

    def __init__(self, outcome: catalog.ProductImported) -> None:
        super().__init__("dry run")
        self.outcome = outcome


async def _import_one(
    runtime: Runtime,
    product: catalog.ShopifyProduct,
    stock: catalog.ShopStock | None,
    dry_run: bool,
) -> catalog.ProductImported:
    currency = runtime.settings.currency

    async def work(uow: UnitOfWork) -> catalog.ProductImported:
        outcome = await catalog.import_shopify_product(uow, product, currency=currency, stock=stock)
        if dry_run:
            raise _RolledBack(outcome)
        return outcome

    try:
        return await runtime.db.run(work)
    except _RolledBack as done:
        return done.outcome
    except Problem as exc:
        refused = catalog.RowError(product.row, None, exc.detail)
        return catalog.ProductImported(None, errors=(*product.errors, refused))


def _has_quantities(product: catalog.ShopifyProduct) -> bool:
    return any(v.quantity is not None for v in product.variants)


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )


@import_app.command("products")
def import_products(
    file: Annotated[Path, typer.Argument(help="A product CSV in Shopify's format")],
    database: DatabaseOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check everything, write nothing")
    ] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """Create or update products from a Shopify product CSV; every bad row is reported with
    its row number and column, the good ones are imported. Exit code 1 when any row was
    reported."""
    if not file.is_file():
        console.print(f"[red]{escape(str(file))} does not exist[/red]")
        raise typer.Exit(1)
    with file.open(newline="", encoding="utf-8-sig") as counted:
        total = catalog.count_csv_rows(counted)

    async def work(runtime: Runtime) -> ImportSummary:
        async with runtime.db.transaction() as uow:
            stock = await inventory.warehouse_stock(uow, warehouse)
        summary = ImportSummary()
        with file.open(newline="", encoding="utf-8-sig") as lines, _progress() as progress:
            task = progress.add_task("Dry run" if dry_run else "Importing", total=total)
            for product in catalog.read_shopify_products(lines, runtime.settings.currency):
                summary.quantities_ignored |= stock is None and _has_quantities(product)
                summary.add(await _import_one(runtime, product, stock, dry_run))
                progress.advance(task, product.rows)
        return summary

    try:
        summary = run_migrated(database, work)
    except (catalog.ShopifyFileError, UnicodeDecodeError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc
    _report(summary, dry_run)
    if summary.errors:
        raise typer.Exit(1)


def _report(summary: ImportSummary, dry_run: bool) -> None:
    if summary.errors:
        table = Table(title=f"Rows not imported ({len(summary.errors)} problems)")
        table.add_column("row", justify="right")
        table.add_column("column")
        table.add_column("problem")
        for error in sorted(summary.errors, key=lambda e: e.row)[:SHOWN_ERRORS]:
            table.add_row(str(error.row), escape(error.column or ""), escape(error.message))
        console.print(table)
        if len(summary.errors) > SHOWN_ERRORS:
            console.print(f"… and {len(summary.errors) - SHOWN_ERRORS} more")
    if summary.quantities_ignored:
        console.print(
            "[yellow]The shop has no warehouse: stock quantities were not set "
            "(add one with `mercato inventory add-warehouse` and import again)[/yellow]"
        )
    verb = "Would import" if dry_run else "Imported"
    console.print(
        f"[green]{verb}:[/green] {summary.products_created} products created, "
        f"{summary.products_updated} updated, {summary.products_unchanged} unchanged, "
        f"{summary.products_rejected} rejected; {summary.variants_created} variants created, "
        f"{summary.variants_updated} updated."
        + (" Nothing was written (dry run)." if dry_run else "")
    )


# --------------------------------------------------------------------------------------------
# mercato export products / orders


@contextmanager
def _output(target: str) -> Iterator[TextIO]:
    if target == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(target, "w", newline="", encoding="utf-8") as out:
        yield out


PageReader = Callable[
    [UnitOfWork, str | None], Awaitable[tuple[Sequence[dict[str, Any]], str | None]]
]


async def _write_pages(
    runtime: Runtime, target: str, columns: Sequence[str], page: PageReader
) -> int:
    """Write the CSV header, then every page ``page(uow, after)`` answers, each read in a short
    transaction of its own, until it says there is no next one; the rows written."""
    written = 0
    with _output(target) as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        after: str | None = None
        while True:
            async with runtime.db.transaction() as uow:
                rows, after = await page(uow, after)
            writer.writerows(rows)
            written += len(rows)
            if after is None:
                return written


TargetArgument = Annotated[str, typer.Argument(help="CSV file to write, or - for standard output")]


@export_app.command("products")
def export_products(
    target: TargetArgument = "-",
    database: DatabaseOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Write every product (every status) in Shopify's product CSV format; stock quantities
    are what is free in the warehouse."""

    async def work(runtime: Runtime) -> int:
        async with runtime.db.transaction() as uow:
            stock = await inventory.warehouse_stock(uow, warehouse)
        return await _write_pages(
            runtime,
            target,
            catalog.SHOPIFY_COLUMNS,
            lambda uow, after: catalog.shopify_export_rows(
                uow, after=after, limit=EXPORT_BATCH, stock=stock
            ),
        )

    written = run_migrated(database, work)
    err_console.print(f"[green]Wrote {written} product rows[/green]")


@export_app.command("orders")
def export_orders(target: TargetArgument = "-", database: DatabaseOption = None) -> None:
    """Write every order as CSV, one row per order line (the columns are documented in
    docs/operations.md)."""

    async def work(runtime: Runtime) -> int:
        return await _write_pages(
            runtime,
            target,
            orders.EXPORT_COLUMNS,
            lambda uow, after: orders.export_order_rows(uow, after=after, limit=EXPORT_BATCH),
        )

    written = run_migrated(database, work)
    err_console.print(f"[green]Wrote {written} order lines[/green]")


# --------------------------------------------------------------------------------------------
# mercato backup / restore

POSTGRES_BACKUPS = (
    "This shop's database is PostgreSQL: back it up with PostgreSQL's own tools "
    "(pg_dump / pg_restore, or WAL archiving for point-in-time recovery); see the backups "
    "section of docs/operations.md."
)


def _sqlite_file(database: str | None) -> Path:
    path = backups.sqlite_path(database_url(database))
    if path is None:
        console.print(f"[red]{POSTGRES_BACKUPS}[/red]")
        raise typer.Exit(2)
    return path


def backup(
    file: Annotated[Path, typer.Argument(help="The backup file to write (replaced if present)")],
    database: DatabaseOption = None,
) -> None:
    """Copy the embedded SQLite shop's database, consistently, while the shop runs."""
    source = _sqlite_file(database)
    try:
        info = backups.backup(source, file)
    except backups.BackupError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc
    console.print(
        f"[green]Backed up {escape(str(source))} to {escape(str(file))}[/green] "
        f"({info.size:,} bytes, integrity ok, migration revision {info.revision})"
    )


def restore(
    file: Annotated[Path, typer.Argument(help="A backup made by `mercato backup`")],
    database: DatabaseOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the database even while a shop has it open")
    ] = False,
) -> None:
    """Put a backup in place of the embedded SQLite shop's database, once its integrity and
    migration revision are checked."""
    target = _sqlite_file(database)
    try:
        info = backups.restore(file, target, force=force)
    except backups.BackupError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc
    console.print(
        f"[green]Restored {escape(str(file))} to {escape(str(target))}[/green] "
        f"(migration revision {info.revision})"
    )
    if info.revision != migrations.head_revision():
        console.print("The backup is from an older Mercato: run `mercato migrate` next.")
    console.print("Rebuild the search index from the restored data: `mercato reindex`.")
