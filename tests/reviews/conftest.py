"""Reviews test helpers: a stocked product, customers who received it (an order placed like a
checkout leaves it, shipped and delivered through the staff API), reviews written through the
API, and the brute-force truth the aggregates are checked against."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.reviews import service as reviews
from tests.factories import make_product
from tests.fulfilment.conftest import (
    WAREHOUSE,
    Shopper,
    ada,
    adb,
    assert_problem,
    fast_password_hashing,
    sandbox,
    ship,
    shopper,
    staff,
)
from tests.orders.conftest import LineSpec, make_draft

__all__ = [
    "Shopper",
    "ada",
    "adb",
    "assert_problem",
    "fast_password_hashing",
    "sandbox",
    "shopper",
    "staff",
]


@pytest.fixture
async def warehouse(adb: Database) -> str:
    async with adb.transaction() as conn:
        await inventory.create_warehouse(conn, code=WAREHOUSE, name="Reviews", countries=["DE"])
    return WAREHOUSE


async def stocked_product(db: Database, title: str = "Test kettle") -> tuple[str, str]:
    """An active product with one variant, 100 units in the test warehouse: (product, variant)."""
    async with db.transaction() as uow:
        product_id, [variant_id] = await make_product(uow, title=title)
    async with db.transaction() as uow:
        await inventory.receive(uow, variant_id, WAREHOUSE, 100)
    return product_id, variant_id


async def placed(
    db: Database, provider: SandboxProvider, customer: Shopper, product: tuple[str, str]
) -> orders.OrderInfo:
    """One unit of the product ordered as a checkout leaves it (stock sold, payment held)."""
    product_id, variant_id = product
    checkout_id = new_id("chk")
    async with db.transaction() as uow:
        await inventory.reserve(uow, checkout_id, [(variant_id, 1)])
    draft = make_draft(
        user_id=customer.id,
        email=customer.email,
        lines=[LineSpec(variant_id, product_id, 1, 1999, "SKU-R")],
        checkout_id=checkout_id,
    )
    outcome = await payments.authorize(
        db,
        provider,
        owner=checkout_id,
        amount=draft.total,
        currency="EUR",
        token="tok_visa",
        idempotency_key=f"auth:{checkout_id}",
    )
    assert outcome.ok, outcome
    draft = replace(draft, payment_intent_id=outcome.intent_id)
    async with db.transaction() as uow:
        await inventory.commit(uow, checkout_id)
        return await orders.create_order(uow, draft)


async def shipped(client: httpx.AsyncClient, staff: Shopper, order_id: str) -> str:
    r = await ship(client, staff, order_id)
    assert r.status_code == 201, r.text
    shipment_id: str = r.json()["id"]
    return shipment_id


async def deliver(client: httpx.AsyncClient, staff: Shopper, shipment_id: str) -> None:
    r = await client.post(
        f"/api/admin/shipments/{shipment_id}/deliver", json={}, headers=staff.headers
    )
    assert r.status_code == 200, r.text


async def received(
    client: httpx.AsyncClient,
    db: Database,
    provider: SandboxProvider,
    customer: Shopper,
    staff: Shopper,
    product: tuple[str, str],
) -> str:
    """The customer ordered the product and it was delivered; the order id."""
    order = await placed(db, provider, customer, product)
    await deliver(client, staff, await shipped(client, staff, order.id))
    return order.id


async def write(
    client: httpx.AsyncClient, customer: Shopper, product_id: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/products/{product_id}/reviews", json=body, headers=customer.headers
    )


def client_at(app: FastAPI, ip: str) -> httpx.AsyncClient:
    """A client calling from ``ip`` (the abuse filter counts reviews per address)."""
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def staff_post(
    client: httpx.AsyncClient, staff: Shopper, review_id: str, action: str, body: Any = None
) -> httpx.Response:
    return await client.post(
        f"/api/admin/reviews/{review_id}/{action}", json=body, headers=staff.headers
    )


async def truth(db: Database, product_id: str) -> reviews.RatingSummary:
    """The product's figures counted from scratch over its approved reviews."""
    async with db.transaction() as uow:
        rows = await uow.execute(
            select(reviews.REVIEWS.c.rating).where(
                reviews.REVIEWS.c.product_id == product_id, reviews.REVIEWS.c.state == "approved"
            )
        )
        stars = Counter(int(r) for (r,) in rows)
    histogram = tuple(stars.get(n, 0) for n in range(1, 6))
    return reviews.RatingSummary(
        sum(histogram),
        sum(n * c for n, c in stars.items()),
        histogram,  # type: ignore[arg-type]
    )


async def stored(db: Database, product_id: str) -> reviews.RatingSummary:
    async with db.transaction() as uow:
        return await reviews.rating(uow, product_id)


async def snapshot(db: Database) -> dict[str, Any]:
    """The reviews tables and the outbox: to prove a refused request wrote nothing."""
    found: dict[str, Any] = {}
    async with db.transaction() as uow:
        for table in (reviews.REVIEWS, reviews.VOTES, reviews.REPORTS, reviews.RATINGS):
            rows = await uow.execute(select(table).order_by(*table.primary_key.columns))
            found[table.name] = [tuple(r) for r in rows]
        found["outbox"] = await uow.scalar(select(func.count()).select_from(OutboxEvent))
    return found


def app_db(app: FastAPI) -> Database:
    db: Database = app.state.runtime.db
    return db
