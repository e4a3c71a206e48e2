"""Checkout test helpers: a shop (warehouses, shipping, tax, promo codes), customers made
cheaply, carts filled through the cart service, and the cross-module invariants."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from mercato.cart import service as cart_service
from mercato.catalog import service as catalog
from mercato.checkout import service as checkout
from mercato.checkout.demo import seed_checkout
from mercato.checkout.models import promo_codes, redemptions
from mercato.checkout.workflow import CHECKOUT
from mercato.db import Database
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.runtime import Runtime
from mercato.workflows import RUNS
from tests.factories import make_product

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
TEST_PASSWORD = "correct horse battery staple"

ADDRESS: dict[str, Any] = {
    "name": "Erika Mustermann",
    "line1": "Heidestrasse 17",
    "city": "Berlin",
    "postal_code": "10557",
    "country": "DE",
}
BODY: dict[str, Any] = {
    "shipping_address": ADDRESS,
    "shipping_method": "standard",
    "payment_token": "tok_visa",
    "promo_code": None,
}


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "PASSWORD_HASHER", FAST_HASHER)


@dataclass
class Customer:
    user: identity.UserInfo
    headers: dict[str, str]

    @property
    def id(self) -> str:
        return self.user.id


async def make_customers(db: Database, count: int, prefix: str = "shopper") -> list[Customer]:
    """``count`` customers with bearer tokens, in one transaction (cheap argon2 parameters)."""
    made: list[Customer] = []
    async with db.transaction() as uow:
        for i in range(count):
            user = await identity.create_user(
                uow,
                email=f"{prefix}{i}@example.com",
                password=TEST_PASSWORD,
                role="customer",
                name=f"{prefix} {i}",
            )
            token = await identity.issue_token(uow, user.id, 3600)
            made.append(Customer(user, {"Authorization": f"Bearer {token}"}))
    return made


async def make_customer(db: Database, email_prefix: str = "buyer") -> Customer:
    return (await make_customers(db, 1, email_prefix))[0]


async def staff_headers_for(db: Database) -> dict[str, str]:
    async with db.transaction() as uow:
        user = await identity.create_user(
            uow, email="boss@example.com", password=TEST_PASSWORD, role="staff", name="Boss"
        )
        token = await identity.issue_token(uow, user.id, 3600)
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Shop:
    db: Database
    warehouse: inventory.WarehouseInfo


async def make_shop(db: Database) -> Shop:
    async with db.transaction() as uow:
        warehouse = await inventory.create_warehouse(
            uow, code="BER", name="Berlin", countries=["AT", "DE", "FR", "GB", "NL"]
        )
    await seed_checkout(db, currency="EUR")
    return Shop(db, warehouse)


@pytest.fixture
async def shop(db: Database) -> Shop:
    return await make_shop(db)


async def make_variant(
    db: Database,
    *,
    price: int = 1999,
    stock: int = 100,
    weight_grams: int = 500,
    tax_class: str | None = None,
    warehouse: str = "BER",
) -> str:
    async with db.transaction() as uow:
        product_id, [variant_id] = await make_product(
            uow, variants=[{"price": price, "weight_grams": weight_grams}]
        )
        if tax_class is not None:
            await catalog.update_product(
                uow, product_id, catalog.ProductChanges(tax_class=tax_class)
            )
    if stock:
        async with db.transaction() as uow:
            await inventory.receive(uow, variant_id, warehouse, stock)
    return variant_id


async def fill_cart(db: Database, user_id: str, *lines: tuple[str, int]) -> None:
    async with db.transaction() as uow:
        for variant_id, quantity in lines:
            await cart_service.add_item(
                uow,
                cart_service.CartOwner(user_id=user_id),
                variant_id,
                quantity,
                limits=cart_service.CartLimits(),
            )


async def cart_lines(db: Database, user_id: str) -> list[tuple[str, int]]:
    async with db.transaction() as uow:
        cart = await cart_service.get_cart_for(uow, user_id, None)
    return [(line.variant_id, line.quantity) for line in cart.lines] if cart else []


async def set_price(db: Database, variant_id: str, price: int) -> None:
    async with db.transaction() as uow:
        await catalog.update_variant(uow, variant_id, catalog.VariantChanges(price=price))


async def stock(db: Database, variant_id: str) -> tuple[int, int]:
    """(on_hand, reserved) summed over warehouses."""
    async with db.transaction() as uow:
        levels = await inventory.stock_for_variant(uow, variant_id)
    return sum(s.on_hand for s in levels), sum(s.reserved for s in levels)


def provider_of(runtime: Runtime) -> SandboxProvider:
    found = payments.get_provider(runtime)
    assert isinstance(found, SandboxProvider)
    return found


async def post_checkout(
    client: httpx.AsyncClient,
    customer: Customer,
    key: str | None = "key-1",
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    headers = dict(customer.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/api/checkout", json=body or BODY, headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


@dataclass
class Totals:
    checkouts: dict[str, int]
    """Checkout runs by status."""
    orders: int
    live_charges: int
    active_reservations: int


async def checkout_runs(db: Database) -> list[tuple[str, dict[str, Any]]]:
    """(status, state) of every checkout run."""
    async with db.transaction() as uow:
        rows = await uow.execute(
            select(RUNS.c.status, RUNS.c.state).where(RUNS.c.workflow == CHECKOUT.name)
        )
        return [(status, dict(state)) for status, state in rows]


async def check_invariants(db: Database) -> Totals:
    """Every checkout is either a paid order with its stock sold, or undone: no live charge
    without an order, no stock held by a finished checkout, promo counts matching their uses,
    and the stock ledger balanced."""
    runs = await checkout_runs(db)
    async with db.transaction() as uow:
        by_status = await checkout.count_by_status(uow)
        order_count = sum((await orders.count_by_status(uow)).values())
        summary = await payments.sandbox_charge_summary(uow)
        active = await inventory.list_reservations(uow, state="active", limit=100_000)
        finished = {
            state["checkout_id"] for status, state in runs if status in ("completed", "failed")
        }
        assert not [r for r in active if r.owner in finished], "a finished checkout holds stock"
        assert await inventory.check_ledger(uow) == []
        for promo_id, used in await uow.execute(select(promo_codes.c.id, promo_codes.c.used_count)):
            live = await uow.scalar(
                select(func.count()).where(
                    redemptions.c.promo_id == promo_id,
                    redemptions.c.state.in_(("reserved", "committed")),
                )
            )
            assert used == live
        completed = [
            (state["order_id"], (state.get("payment") or {}).get("intent_id"))
            for status, state in runs
            if status == "completed"
        ]
        for order_id, intent_id in completed:
            order = await orders.get_order(uow, order_id)
            assert order is not None and order.status == "paid"
            if intent_id:
                intent = await payments.get_intent(uow, intent_id)
                assert intent is not None and intent.status == "authorized"
    assert order_count == len(completed)
    # Charges the processor holds (authorized, not voided) are exactly the orders' payments.
    assert summary.charges == order_count
    return Totals(by_status, order_count, summary.charges, len(active))


async def gather_limited(coros: list[Any], limit: int = 100) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with semaphore:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))
