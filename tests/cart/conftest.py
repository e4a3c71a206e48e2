"""Cart test helpers: variants with stock, price and stock changes, row counts."""

from __future__ import annotations

from typing import NamedTuple

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.cart.models import cart_lines, carts
from mercato.catalog import service as catalog
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD
from tests.factories import make_product

WAREHOUSE = "CART1"


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real argon2id at its smallest cost: these tests log in, they do not test hash strength.
    monkeypatch.setattr(
        identity, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


def rt(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


class Counts(NamedTuple):
    carts: int
    lines: int
    quantity: int


async def counts(app: FastAPI) -> Counts:
    """Cart rows (and total units): bad input must leave these alone."""
    async with rt(app).db.transaction() as session:
        n_carts = await session.scalar(select(func.count()).select_from(carts))
        n_lines = await session.scalar(select(func.count()).select_from(cart_lines))
        units = await session.scalar(select(func.coalesce(func.sum(cart_lines.c.quantity), 0)))
    return Counts(int(n_carts or 0), int(n_lines or 0), int(units or 0))


async def _ensure_warehouse(app: FastAPI) -> None:
    async with rt(app).db.transaction() as conn:
        if WAREHOUSE not in {w.code for w in await inventory.list_warehouses(conn)}:
            await inventory.create_warehouse(
                conn, code=WAREHOUSE, name="Cart tests", countries=["DE"]
            )


async def add_stock(app: FastAPI, variant_id: str, qty: int) -> None:
    await _ensure_warehouse(app)
    async with rt(app).db.transaction() as conn:
        await inventory.receive(conn, variant_id, WAREHOUSE, qty)


async def set_stock(app: FastAPI, variant_id: str, qty: int) -> None:
    """Set the available units of a variant in the test warehouse (a stock count correction)."""
    await _ensure_warehouse(app)
    async with rt(app).db.transaction() as conn:
        current = (await inventory.availability(conn, [variant_id]))[variant_id]
        if qty != current:
            await inventory.adjust(conn, variant_id, WAREHOUSE, qty - current, reason="count")


async def new_variant(
    app: FastAPI,
    *,
    price: int = 1999,
    stock: int = 10,
    currency: str = "EUR",
    title: str = "Test kettle",
    status: str = "active",
    active: bool = True,
) -> str:
    """A product with one variant, ``stock`` units in the test warehouse; the variant id."""
    async with rt(app).db.transaction() as session:
        _, (variant_id,) = await make_product(
            session,
            title=title,
            status=status,
            variants=[{"price": price, "currency": currency, "active": active}],
        )
    if stock:
        await add_stock(app, variant_id, stock)
    return variant_id


async def set_price(app: FastAPI, variant_id: str, price: int) -> None:
    async with rt(app).db.transaction() as session:
        await catalog.update_variant(session, variant_id, catalog.VariantChanges(price=price))


async def product_of(app: FastAPI, variant_id: str) -> str:
    async with rt(app).db.transaction() as session:
        return (await catalog.get_variants(session, [variant_id]))[variant_id].product_id


async def archive(app: FastAPI, variant_id: str) -> None:
    product_id = await product_of(app, variant_id)
    async with rt(app).db.transaction() as session:
        await catalog.archive_product(session, product_id)


async def make_customer(app: FastAPI, email: str) -> str:
    """A customer who can log in with TEST_PASSWORD; the user id."""
    async with rt(app).db.transaction() as session:
        user = await identity.create_user(
            session, email=email, password=TEST_PASSWORD, role="customer", name=email.split("@")[0]
        )
    return user.id


async def login(
    client: httpx.AsyncClient, email: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    r = await client.post(
        "/api/auth/login", json={"email": email, "password": TEST_PASSWORD}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = r.json()
    assert body["code"] == code, body
    return body
