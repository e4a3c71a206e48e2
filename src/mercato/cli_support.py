"""What the ``mercato`` command and each module's own commands share: the console, the
``--database`` option, settings built from the options, and running work against a database
whose schema is current.

The top-level ``cli.py`` mounts the module commands; they import this file, never ``cli.py``,
so neither depends on the other being half-built while it is imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from mercato import migrate as migrations
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.settings import Settings, get_settings

T = TypeVar("T")

console = Console()

DatabaseOption = Annotated[str | None, typer.Option(help="Database URL or SQLite file")]


def environment_settings() -> Settings:
    """The settings from the ``MERCATO_*`` environment; a value that cannot be used (a currency
    that is not an ISO code, a port that is not a number) is printed and becomes exit code 2,
    before anything starts."""
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "MERCATO_" + "_".join(str(part) for part in error["loc"]).upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            if not message.startswith(name):
                message = f"{name}: {message}"
            console.print(f"[red]Invalid configuration: {message}[/red]")
        raise typer.Exit(2) from exc


def database_url(database: str | None) -> str:
    """A ``--database`` value as a URL: a URL as given, a file name as a SQLite URL, and the
    configured database when the option is absent."""
    if database is None:
        return environment_settings().database_url
    if "://" in database:
        return database
    return f"sqlite+aiosqlite:///{Path(database).resolve()}"


def settings_with(**overrides: object) -> Settings:
    """The environment's settings with the options the command was given (``None``: not given)."""
    base = environment_settings()
    return base.with_changes(**{k: v for k, v in overrides.items() if v is not None})


def settings_for(database: str | None) -> Settings:
    return settings_with(database_url=database_url(database))


def refuse_unmigrated(settings: Settings) -> None:
    """Exit with code 1 when the database's schema is not at the latest migration."""

    async def check() -> None:
        runtime = Runtime.from_settings(settings)
        try:
            await migrations.ensure_migrated(runtime.db)
        finally:
            await runtime.close()

    try:
        asyncio.run(check())
    except migrations.NotMigrated as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


def run_migrated(database: str | None, work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``work(runtime)`` against the ``--database`` once its schema is known to be current;
    a refusal (a problem, an old schema) is printed and becomes exit code 1."""
    settings = settings_for(database)

    async def main() -> T:
        runtime = Runtime.from_settings(settings)
        try:
            await migrations.ensure_migrated(runtime.db)
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(main())
    except (Problem, migrations.NotMigrated) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
