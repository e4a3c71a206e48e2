"""``mercato search ...``: rebuild the index, follow the outbox for a replica, show its state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mercato.cli_support import DatabaseOption, console, refuse_unmigrated, settings_for
from mercato.runtime import Runtime
from mercato.settings import Settings

app = typer.Typer(help="The search index.", no_args_is_help=True)


def _settings(database: str | None) -> Settings:
    settings = settings_for(database)
    refuse_unmigrated(settings)
    return settings


async def reindex_with_progress(settings: Settings) -> None:
    """Rebuild from the database with a progress bar (what ``mercato reindex`` runs)."""
    from mercato.search import service

    runtime = Runtime.from_settings(settings)
    try:
        with Progress(
            TextColumn("[bold]Search index"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("index", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            stats = await service.reindex(runtime, advance)
    finally:
        await runtime.close()
    console.print(
        f"[green]Indexed {stats.documents:,} products in {stats.seconds:.1f}s[/green] "
        f"({stats.size_bytes / 1e6:.1f} MB, version {stats.version})"
    )


@app.command()
def reindex(database: DatabaseOption = None) -> None:
    """Rebuild the index from the database into a new version and switch to it atomically;
    searches keep working meanwhile."""
    asyncio.run(reindex_with_progress(_settings(database)))


@app.command()
def follow(
    database: DatabaseOption = None,
    replica: Annotated[
        str | None, typer.Option(help="This host's replica name (default: MERCATO_SEARCH_REPLICA)")
    ] = None,
) -> None:
    """Keep this host's index replica fed from the outbox (builds it first if missing)."""
    from mercato.events import Consumer, Dispatcher
    from mercato.search import events, service

    settings = _settings(database)
    consumer = service.consumer_name(replica) or service.consumer_name("default")
    assert consumer is not None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def main() -> None:
        runtime = Runtime.from_settings(settings)
        dispatcher = Dispatcher()
        dispatcher.register(
            Consumer.of(
                consumer, service.EVENT_TYPES, events.note_change, ready=service.feeds_index
            )
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        console.print(f"[green]following the outbox as {consumer}[/green] (Ctrl-C to stop)")
        try:
            while not stop.is_set():
                busy = await dispatcher.dispatch_once(runtime)
                busy += await service.sync_index(runtime, bootstrap=True, consumer=consumer)
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=events.SYNC_INTERVAL)
        finally:
            await runtime.close()

    asyncio.run(main())


@app.command()
def status(database: DatabaseOption = None) -> None:
    """The index version this host reads, its size and its last commit."""
    from mercato.search import service

    settings = _settings(database)

    async def main() -> None:
        runtime = Runtime.from_settings(settings)
        try:
            console.print(await service.status(runtime))
        finally:
            await runtime.close()

    asyncio.run(main())
