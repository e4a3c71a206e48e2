"""What the shopper-signals tests share: a customer signed in by a bearer token or by the
pages' cookie, a small stocked product with two sizes, and selling or receiving its stock
through the inventory service."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from mercato.checkout import service as checkout
from mercato.db import Database, UnitOfWork
from mercato.identity import service as identity
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD
from tests.factories import make_product


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real argon2id at its smallest cost: these tests sign in, they do not test hash strength.
    monkeypatch.setattr(
        identity, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    email: str
    headers: dict[str, str]


async def make_customer(runtime: Runtime, email: str) -> Customer:
    async with runtime.db.transaction() as uow:
        user = await identity.create_user(
            uow, email=email, password=TEST_PASSWORD, role="customer", name=email.split("@")[0]
        )
        token = await identity.issue_token(uow, user.id, runtime.settings.token_ttl_seconds)
    return Customer(user.id, email, {"Authorization": f"Bearer {token}"})


async def api_log_in(client: httpx.AsyncClient, email: str) -> None:
    """Sign a client in by the API (its cookie jar keeps the session, as a browser's would)."""
    r = await client.post("/api/auth/login", json={"email": email, "password": TEST_PASSWORD})
    assert r.status_code == 200, r.text


@dataclass(frozen=True, slots=True)
class Shirt:
    product_id: str
    small: str  # variant ids
    medium: str


async def make_shirt(db: Database, title: str = "Linen shirt", units: int = 2) -> Shirt:
    """A shirt in two sizes, ``units`` of each in Berlin (ships to Germany)."""
    async with db.transaction() as uow:
        if not any(w.code == "BER" for w in await inventory.list_warehouses(uow)):
            await inventory.create_warehouse(uow, code="BER", name="Berlin", countries=["DE"])
            await checkout.create_zone(uow, name="Germany", countries=["DE"])
        sku = new_id("sku")[-10:].upper()
        pid, [small, medium] = await make_product(
            uow,
            title=title,
            variants=[
                {"sku": f"S-{sku}", "price": 2500, "title": "Small", "options": {"size": "S"}},
                {"sku": f"M-{sku}", "price": 2700, "title": "Medium", "options": {"size": "M"}},
            ],
        )
        for variant in (small, medium):
            await inventory.receive(uow, variant, "BER", units)
    return Shirt(pid, small, medium)


async def sell_out(db: Database, variant_id: str) -> None:
    """Sell every unit left, as a checkout does: reserve, then commit."""
    owner = new_id("chk")

    async def sell(uow: UnitOfWork) -> None:
        left = (await inventory.availability(uow, [variant_id]))[variant_id]
        await inventory.reserve(uow, owner, [(variant_id, left)])
        await inventory.commit(uow, owner)

    await db.run(sell)


async def receive(db: Database, variant_id: str, units: int = 3) -> None:
    async with db.transaction() as uow:
        await inventory.receive(uow, variant_id, "BER", units)


async def count_rows(db: Database, table: object, **where: object) -> int:
    query = select(func.count()).select_from(table)  # type: ignore[arg-type]
    for name, value in where.items():
        query = query.where(table.c[name] == value)  # type: ignore[attr-defined]
    async with db.transaction() as uow:
        return int(await uow.scalar(query) or 0)
