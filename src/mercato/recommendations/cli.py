"""``mercato recommendations ...``: build the lists, evaluate the recommenders, print rules."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mercato.cli_support import DatabaseOption, console, run_migrated, settings_for
from mercato.runtime import Runtime

if TYPE_CHECKING:
    from mercato.recommendations.evaluation import BasketFile, Report

app = typer.Typer(help="Recommendations: bought together, also bought.", no_args_is_help=True)

BasketsOption = Annotated[
    Path | None,
    typer.Option(help="A basket file: one basket per line, items separated by commas"),
]


@app.command()
def build(database: DatabaseOption = None) -> None:
    """Rebuild every product's lists from the shop's orders and switch to them at once."""
    from mercato.recommendations import build as building

    async def work(runtime: Runtime) -> building.BuildStats:
        with Progress(
            TextColumn("[bold]Recommendations"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("reading orders", total=len(building.STEPS))

            def advance(step: str) -> None:
                progress.update(task, advance=1, description=step)

            return await building.build(runtime, advance=advance)

    stats = run_migrated(database, work)
    console.print(
        f"[green]Built version {stats.version} from {stats.orders:,} orders of "
        f"{stats.customers:,} customers in {stats.seconds:.1f}s[/green]: "
        f"{stats.rules:,} rules, bought-together lists for {stats.bought_together:,} products, "
        f"also-bought ({stats.model}) for {stats.also_bought:,}, {stats.popular} best sellers"
    )


def _skips(basket_file: BasketFile) -> None:
    counted = ", ".join(
        f"{n:,} {why.replace('_', ' ')}" for why, n in sorted(basket_file.skipped.items())
    )
    console.print(f"{len(basket_file.baskets):,} baskets read; skipped: {counted or 'nothing'}")


def _report_table(report: Report) -> Table:
    table = Table(title=f"Hold-out evaluation at k=10 ({report.cases:,} cases)")
    for column in ("recommender", "hit-rate@10", "recall@10", "NDCG@10", "coverage"):
        table.add_column(column, justify="left" if column == "recommender" else "right")
    base = report.by_recommender["popular"].hit_rate
    for name, s in report.by_recommender.items():
        times = f" (×{s.hit_rate / base:.1f})" if base and name != "popular" else ""
        table.add_row(
            name,
            f"{s.hit_rate:.3f}{times}",
            f"{s.recall:.3f}",
            f"{s.ndcg:.3f}",
            f"{s.coverage:.1%}",
        )
    return table


@app.command()
def evaluate(
    database: DatabaseOption = None,
    baskets: BasketsOption = None,
    min_support: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    min_confidence: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
) -> None:
    """Hold out each customer's last order (or every tenth basket of ``--baskets``), train on
    the rest, and compare every recommender with the best sellers."""
    from mercato.orders import service as orders
    from mercato.recommendations import evaluation

    settings = settings_for(database)
    rule_settings = evaluation.RuleSettings(
        min_support if min_support is not None else settings.recs_min_support,
        min_confidence if min_confidence is not None else settings.recs_min_confidence,
    )
    if baskets is not None:
        found = evaluation.read_baskets(baskets)
        _skips(found)
        split = evaluation.hold_out_baskets(found.baskets)
    else:

        async def read(runtime: Runtime) -> list[orders.SoldBasket]:
            async with runtime.db.transaction() as uow:
                return await orders.sold_baskets(uow)

        sold = run_migrated(database, read)
        split = evaluation.hold_out_last_orders(
            [
                evaluation.PastOrder(b.customer, (b.placed_at, b.order_id), b.product_ids)
                for b in sold
            ]
        )
    report = evaluation.evaluate(split, rule_settings, timer=time.perf_counter)
    console.print(_report_table(report))
    console.print(
        f"{report.train_orders:,} training orders, {report.items:,} products; "
        f"{report.skipped:,} skipped (nothing new to guess)"
    )


@app.command()
def rules(
    baskets: Annotated[Path, typer.Option(help="One basket per line, items separated by commas")],
    min_support: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.01,
    min_confidence: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.1,
    top: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Print the association rules X → Y with their support, confidence and lift."""
    from mercato.recommendations import evaluation
    from mercato.recommendations import rules as mining

    found = evaluation.read_baskets(baskets)
    _skips(found)
    if min_support <= 0:
        raise typer.BadParameter("must be above 0", param_hint="--min-support")
    mined = mining.pair_rules(found.baskets, min_support=min_support, min_confidence=min_confidence)
    table = Table(title=f"{len(mined):,} rules (showing {min(top, len(mined)):,})")
    for column in ("rule", "support", "confidence", "lift", "count"):
        table.add_column(column, justify="left" if column == "rule" else "right")
    for r in mined[:top]:
        table.add_row(
            escape(f"{{{r.antecedent}}} → {{{r.consequent}}}"),  # names are the file's, not markup
            f"{r.support:.4f}",
            f"{r.confidence:.4f}",
            f"{r.lift:.3f}",
            f"{r.count:,}",
        )
    console.print(table)
