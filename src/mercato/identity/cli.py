"""``mercato identity ...``: operator commands.

Staff and seller accounts cannot be made through the public API (registration always makes a
customer), so the first staff account of a shop has to come from here.
"""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from mercato.cli_support import DatabaseOption, console, run_migrated
from mercato.identity import service
from mercato.runtime import Runtime

app = typer.Typer(help="Users and access.", no_args_is_help=True)


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
    database: DatabaseOption = None,
) -> None:
    """Create a user with any role (the public sign-up only makes customers)."""

    async def create(runtime: Runtime) -> service.UserInfo:
        async with runtime.db.transaction() as uow:
            return await service.create_user(
                uow, email=email, password=password, role=role.value, name=name
            )

    user = run_migrated(database, create)
    console.print(f"[green]Created {user.role} {user.email}[/green] ({user.id})")
