"""The ``mercato`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from typing import Annotated, Any

import typer
import uvicorn
from rich.markup import escape

from mercato import cli_transfer, logs, metrics
from mercato import migrate as migrations
from mercato.cli_support import (
    DatabaseOption,
    console,
    database_url,
    refuse_unmigrated,
    settings_with,
)
from mercato.modules import MODULES, _import
from mercato.runtime import Runtime
from mercato.settings import Settings, get_settings

DEMO_ORDERS = 3000  # the demo's defaults (mercato.demo imports too much to be read here)
DEMO_CUSTOMERS = 300
DEMO_PASSWORD = "demo-password"  # noqa: S105 - demo mode only, printed at start

app = typer.Typer(help="Mercato: an e-commerce platform in one package.", no_args_is_help=True)

for _module in MODULES:
    _cli = _import(f"mercato.{_module}.cli")
    if _cli is not None:
        app.add_typer(_cli.app, name=_module)

app.add_typer(cli_transfer.import_app, name="import")
app.add_typer(cli_transfer.export_app, name="export")
app.command()(cli_transfer.backup)
app.command()(cli_transfer.restore)


payments_app = typer.Typer(help="Payments: the money check.", no_args_is_help=True)
app.add_typer(payments_app, name="payments")


@payments_app.command("check")
def payments_check(
    database: DatabaseOption = None,
    grace_seconds: Annotated[
        int | None,
        typer.Option(
            help="Age past which a payment without an order must have been voided "
            "(default: the reservation TTL, the longest a checkout can take)"
        ),
    ] = None,
) -> None:
    """Verify that what the processor holds is what the orders say; exit code 1 otherwise."""
    from datetime import timedelta

    from mercato.checks import check_money
    from mercato.cli_support import run_migrated

    async def work(runtime: Runtime) -> list[Any]:
        settings = runtime.settings
        grace = grace_seconds if grace_seconds is not None else settings.reservation_ttl_seconds
        async with runtime.db.transaction() as uow:
            return await check_money(
                uow,
                secret_key=settings.secret_key,
                grace=timedelta(seconds=grace),
                sandbox=settings.payment_provider == "sandbox",
            )

    differences = run_migrated(database, work)
    if not differences:
        console.print("[green]Money check passed: 0 differences.[/green]")
        return
    for d in differences:
        console.print(
            f"[red]{escape(d.reference)}[/red] {escape(d.what)}: "
            f"expected {d.expected}, found {d.found}"
        )
    console.print(f"[red]{len(differences)} differences[/red]")
    raise typer.Exit(1)


@app.command()
def migrate(
    database: DatabaseOption = None,
) -> None:
    """Apply the database migrations."""
    url = database_url(database)
    migrations.upgrade(url)
    console.print(f"[green]Database is at revision {migrations.head_revision()}[/green]")


def refuse_public_secret(settings: Settings) -> None:
    """Exit with code 2 when the secret key is the public default (or too short) outside demo
    mode: guest-cart and form tokens signed with it could be forged offline."""
    refusal = settings.secret_key_refusal()
    if refusal is not None:
        console.print(f"[red]{escape(refusal)}[/red]")
        raise typer.Exit(2)


def _export_env(settings: Settings) -> None:
    # uvicorn's workers build the app from the environment; hand them the same settings.
    os.environ["MERCATO_DATABASE_URL"] = settings.database_url
    os.environ["MERCATO_DEMO_MODE"] = "true" if settings.demo_mode else "false"
    if settings.redis_url:
        os.environ["MERCATO_REDIS_URL"] = settings.redis_url
    get_settings.cache_clear()


@contextlib.contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """Several API processes count into one private directory (prometheus-client's
    multiprocess mode), so a scrape of any of them sees all; removed when serving ends."""
    if workers <= 1 or os.environ.get(metrics.MULTIPROC_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="mercato-metrics-")
    os.environ[metrics.MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        os.environ.pop(metrics.MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def _serve(settings: Settings, workers: int, with_worker: bool) -> None:
    _export_env(settings)
    os.environ["MERCATO_EMBEDDED_WORKER"] = "true" if with_worker else "false"
    logs.configure(logs.resolve_format(settings.log_format), settings.log_level)
    with _shared_metrics(workers):
        uvicorn.run(
            "mercato.app:app_factory",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers if workers > 1 else None,
            log_config=None,  # our handlers (JSON or plain), set up in every process
            log_level=settings.log_level.lower(),
            access_log=False,
            # The supervisor pings each worker; on a busy host a worker still importing answers
            # late, and uvicorn's 5 s default kills and respawns healthy workers in a loop.
            timeout_worker_healthcheck=30,
        )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    database: DatabaseOption = None,
    workers: Annotated[int, typer.Option(help="API processes")] = 1,
    with_worker: Annotated[
        bool, typer.Option(help="Run the background worker inside the API process")
    ] = False,
) -> None:
    """Serve the API (and the shop pages) with uvicorn."""
    settings = settings_with(host=host, port=port, database_url=database_url(database))
    refuse_public_secret(settings)
    refuse_unmigrated(settings)
    _serve(settings, workers, with_worker)


@app.command()
def worker(
    database: DatabaseOption = None,
    once: Annotated[bool, typer.Option(help="Run every job once and exit")] = False,
) -> None:
    """Run the background worker: outbox delivery, reservation expiry, recovery jobs."""
    from mercato import worker as worker_mod
    from mercato.modules import wire

    wire()
    settings = settings_with(database_url=database_url(database))
    refuse_public_secret(settings)
    refuse_unmigrated(settings)
    logs.configure(logs.resolve_format(settings.log_format), settings.log_level)

    async def main() -> None:
        runtime = Runtime.from_settings(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            if once:
                console.print(await worker_mod.run_once(runtime))
            else:
                console.print("[green]worker running[/green] (Ctrl-C to stop)")
                await worker_mod.run_forever(runtime, stop)
        finally:
            await runtime.close()

    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        runner.run(main())


def _event_loop_factory() -> Any:
    """uvloop's loop, as the API processes' uvicorn takes, when it is installed (it comes with
    ``uvicorn[standard]``): the worker is one database round trip after another, and each
    costs the standard loop's Python transport more CPU; ``None`` (asyncio's own) without it."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@app.command()
def reindex(
    database: DatabaseOption = None,
) -> None:
    """Rebuild the search index from the database into a new version, then switch to it."""
    from mercato.search.cli import reindex as search_reindex

    search_reindex(database)


@app.command()
def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    products: Annotated[int, typer.Option(help="How many demo products to generate")] = 3000,
    orders: Annotated[
        int,
        typer.Option(
            help="How many orders of the last 90 days to generate (the oldest before serving, "
            "the rest while the shop serves)"
        ),
    ] = DEMO_ORDERS,
    customers: Annotated[int, typer.Option(help="How many customers place them")] = DEMO_CUSTOMERS,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same shop")] = 42,
    database: Annotated[str, typer.Option(help="Database URL or SQLite file")] = "mercato-demo.db",
    password: Annotated[str, typer.Option(help="Password of the demo logins")] = DEMO_PASSWORD,
    reset: Annotated[bool, typer.Option(help="Start from an empty database")] = False,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the shop")] = True,
) -> None:
    """Create (or reuse) a demo shop with generated data and serve it."""
    from mercato import demo as demo_mod

    url = database_url(database)
    settings = settings_with(host=host, port=port, database_url=url, demo_mode=True)
    if reset:
        demo_mod.reset_database(settings)
    migrations.upgrade(url)

    def announce() -> None:
        console.print(f"\n[bold green]Mercato demo shop:[/bold green] http://{host}:{port}/")
        console.print(f"  API docs:  http://{host}:{port}/api/docs")
        console.print(f"  staff:     staff@example.com / {password}")
        console.print(f"  shopper:   shopper@example.com / {password}\n")

    if serve_after:
        _export_env(settings)  # the application is built from the environment
        os.environ["MERCATO_EMBEDDED_WORKER"] = "true"
    # The signal that stopped the server is raised again once it has shut down.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            demo_mod.run_demo(
                settings,
                console,
                products=products,
                seed=seed,
                password=password,
                customers=customers,
                orders=orders,
                serve=serve_after,
                announce=announce,
            )
        )


if __name__ == "__main__":  # pragma: no cover
    app()
