"""``mercato inventory ...``: the ledger check and stock receipts from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mercato.cli_support import DatabaseOption, console, run_migrated
from mercato.inventory import service
from mercato.runtime import Runtime

app = typer.Typer(help="Warehouses, stock and the stock ledger.", no_args_is_help=True)


@app.command()
def check(database: DatabaseOption = None) -> None:
    """Verify every stock row against the ledger; exit code 1 when any row disagrees."""

    async def work(
        runtime: Runtime,
    ) -> tuple[int, list[service.LedgerDifference], dict[str, str]]:
        async with runtime.db.transaction() as uow:
            rows = await service.count_stock_rows(uow)
            differences = await service.check_ledger(uow)
            codes = {w.id: w.code for w in await service.list_warehouses(uow)}
        return rows, differences, codes

    rows, differences, codes = run_migrated(database, work)
    console.print(f"Rule: {service.LEDGER_RULE}")
    if not differences:
        console.print(f"[green]Ledger check passed: {rows} stock rows, 0 differences.[/green]")
        return
    table = Table(title=f"Stock rows that disagree with the ledger ({len(differences)})")
    table.add_column("variant", no_wrap=True)
    table.add_column("warehouse", no_wrap=True)
    table.add_column("on_hand (ledger)", justify="right")
    table.add_column("reserved (active / ledger)", justify="right")
    for d in differences:
        table.add_row(
            d.variant_id,
            codes.get(d.warehouse_id, d.warehouse_id),
            f"{d.on_hand} ({d.expected_on_hand})",
            f"{d.reserved} ({d.expected_reserved} / {d.ledger_reserved})",
        )
    console.print(table)
    console.print(f"[red]{len(differences)} differences in {rows} stock rows.[/red]")
    raise typer.Exit(1)


@app.command()
def receive(
    sku: Annotated[str, typer.Option(help="The variant's SKU")],
    warehouse: Annotated[str, typer.Option(help="Warehouse code")],
    quantity: Annotated[int, typer.Option(help="Units received")],
    reference: Annotated[str | None, typer.Option(help="Delivery note or order")] = None,
    database: DatabaseOption = None,
) -> None:
    """Record goods received at a warehouse."""

    async def work(runtime: Runtime) -> service.StockLevel:
        async with runtime.db.transaction() as uow:
            return await service.receive(uow, sku, warehouse, quantity, reference)

    level = run_migrated(database, work)
    console.print(
        f"[green]{sku} in {level.warehouse_code}:[/green] on hand {level.on_hand}, "
        f"reserved {level.reserved}, available {level.available}"
    )


@app.command("add-warehouse")
def add_warehouse(
    code: Annotated[str, typer.Option(help="Short code, e.g. BER")],
    name: Annotated[str, typer.Option(help="Display name")],
    countries: Annotated[str, typer.Option(help="Comma-separated ISO codes it ships to")] = "",
    region: Annotated[str | None, typer.Option(help="Region label")] = None,
    handling_days: Annotated[
        int, typer.Option(help="Business days it takes to dispatch an order")
    ] = service.DEFAULT_HANDLING_DAYS,
    database: DatabaseOption = None,
) -> None:
    """Create a warehouse."""

    async def work(runtime: Runtime) -> service.WarehouseInfo:
        async with runtime.db.transaction() as uow:
            return await service.create_warehouse(
                uow,
                code=code,
                name=name,
                countries=[c for c in countries.split(",") if c.strip()],
                region=region,
                handling_days=handling_days,
            )

    created = run_migrated(database, work)
    console.print(f"[green]Created warehouse {created.code}[/green] ({created.id})")


@app.command("set-handling-days")
def set_handling_days(
    code: Annotated[str, typer.Argument(help="Warehouse code")],
    days: Annotated[int, typer.Argument(help="Business days it takes to dispatch an order")],
    database: DatabaseOption = None,
) -> None:
    """Change how long a warehouse takes to dispatch (delivery estimates count from it)."""

    async def work(runtime: Runtime) -> service.WarehouseInfo:
        async with runtime.db.transaction() as uow:
            return await service.set_handling_days(uow, code, days)

    changed = run_migrated(database, work)
    console.print(
        f"[green]{changed.code} now dispatches in {changed.handling_days} business day(s)[/green]"
    )
