"""``mercato marketplace ...``: sellers' statements, payouts and the ledger check."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer
from rich.table import Table

from mercato.cli_support import DatabaseOption, console, run_migrated
from mercato.db import UnitOfWork
from mercato.marketplace import service
from mercato.money import format_minor
from mercato.runtime import Runtime

app = typer.Typer(help="Marketplace: sellers' money.", no_args_is_help=True)
payouts = typer.Typer(
    help="Sellers' statements and the payouts made to them.", no_args_is_help=True
)
app.add_typer(payouts, name="payouts")

PeriodOption = Annotated[str | None, typer.Option(help="A month, e.g. 2026-11 (default: this one)")]
FromOption = Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD")]
ToOption = Annotated[str | None, typer.Option("--to", help="Last day (included), YYYY-MM-DD")]
CurrencyOption = Annotated[str | None, typer.Option(help="Default: the shop's currency")]


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a YYYY-MM-DD day", param_hint=name) from exc


@payouts.command("statements")
def statements(
    period: PeriodOption = None,
    first: FromOption = None,
    last: ToOption = None,
    seller: Annotated[
        str | None, typer.Option(help="One seller's id (default: every seller)")
    ] = None,
    currency: CurrencyOption = None,
    database: DatabaseOption = None,
) -> None:
    """Print each seller's statement for the period: sales, refunds, cancellations,
    commission, net, payouts, and what it is owed at either end."""
    first_day, last_day = _day(first, "--from"), _day(last, "--to")

    async def work(runtime: Runtime) -> tuple[service.Period, list[service.Statement]]:
        days = service.period_of(period, first_day, last_day)
        async with runtime.db.transaction() as uow:
            chosen = currency or runtime.settings.currency
            return days, await service.seller_statements(uow, None, seller, days, chosen)

    days, found = run_migrated(database, work)
    table = Table(title=f"Statements {days.label}")
    for column in (
        "seller",
        "opening",
        "sales",
        "refunds",
        "cancelled",
        "commission",
        "net",
        "payouts",
        "closing",
    ):
        table.add_column(column, justify="left" if column == "seller" else "right", no_wrap=True)
    for s in found:
        amounts = (
            s.opening_payable,
            s.sales,
            s.refunds,
            s.cancellations,
            s.commission,
            s.net,
            s.payouts,
            s.closing_payable,
        )
        table.add_row(s.seller_id, *(format_minor(a, s.currency) for a in amounts))
    console.print(table)


@payouts.command("record")
def record(
    seller: Annotated[str, typer.Option(help="The seller's id")],
    amount: Annotated[str, typer.Option(help="Decimal amount paid out, e.g. 120.50")],
    reference: Annotated[str, typer.Option(help="The payment provider's transfer reference")],
    period: PeriodOption = None,
    first: FromOption = None,
    last: ToOption = None,
    currency: CurrencyOption = None,
    database: DatabaseOption = None,
) -> None:
    """Record a payout made to a seller (once per reference; never more than it is owed)."""
    first_day, last_day = _day(first, "--from"), _day(last, "--to")

    async def work(runtime: Runtime) -> tuple[service.PayoutInfo, int]:
        chosen = currency or runtime.settings.currency
        days = service.period_of(period, first_day, last_day)
        minor = service.parse_amount("amount", amount, chosen)

        async def pay(uow: UnitOfWork) -> tuple[service.PayoutInfo, int]:
            done = await service.record_payout(
                uow,
                seller_id=seller,
                amount=minor,
                currency=chosen,
                reference=reference,
                period=days,
            )
            return done, await service.payable_balance(uow, seller, chosen)

        return await runtime.db.run(pay)

    payout, left = run_migrated(database, work)
    console.print(
        f"[green]Payout {payout.id}:[/green] {format_minor(payout.amount, payout.currency)} "
        f"{payout.currency} to {payout.seller_id} for {payout.period.label}; "
        f"still owed {format_minor(left, payout.currency)}"
    )


@app.command("check")
def check(database: DatabaseOption = None) -> None:
    """Verify that every ledger entry balances; exit code 1 when any does not."""

    async def work(runtime: Runtime) -> list[service.LedgerDifference]:
        async with runtime.db.transaction() as uow:
            return await service.check_ledger(uow)

    differences = run_migrated(database, work)
    if not differences:
        console.print("[green]Ledger check passed: every entry balances.[/green]")
        return
    for d in differences:
        console.print(f"[red]{d.entry_id}[/red] {d.currency}: off by {d.total}")
    raise typer.Exit(1)
