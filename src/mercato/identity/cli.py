"""``mercato identity ...``: operator commands.

Staff and seller accounts cannot be made through the public API (registration always makes a
customer), so the first staff account of a shop has to come from here.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated

import typer
from rich.console import Console

from mercato.problems import Problem

app = typer.Typer(help="Users and access.", no_args_is_help=True)
console = Console()


class RoleChoice(enum.StrEnum):
    customer = "customer"
    staff = "staff"
    seller = "seller"


@app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="Login e-mail address")],
    name: Annotated[str, typer.Option(help="Display name")],
    password: Annotated[
        str,
        typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="Password"),
    ],
    role: Annotated[RoleChoice, typer.Option(help="Role")] = RoleChoice.customer,
    database: Annotated[str | None, typer.Option(help="Database URL or SQLite file")] = None,
) -> None:
    """Create a user with any role (the public sign-up only makes customers)."""
    # Imported here: mercato.cli imports this module while it is being built.
    from mercato.cli import _database_url, _settings
    from mercato.identity import service
    from mercato.migrate import NotMigrated, ensure_migrated
    from mercato.runtime import Runtime

    settings = _settings(database_url=_database_url(database))

    async def create() -> service.UserInfo:
        runtime = Runtime.from_settings(settings)
        try:
            await ensure_migrated(runtime.db)
            async with runtime.db.session() as session:
                return await service.create_user(
                    session, email=email, password=password, role=role.value, name=name
                )
        finally:
            await runtime.close()

    try:
        user = asyncio.run(create())
    except (Problem, NotMigrated) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"[green]Created {user.role} {user.email}[/green] ({user.id})")
