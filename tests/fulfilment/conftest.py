"""Fulfilment test helpers: orders placed like a checkout leaves them (stock committed under
the checkout id, the payment authorized on the sandbox), optionally split over two
warehouses, and the money invariant."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.fulfilment import service as fulfilment
from mercato.fulfilment.service import FULFILMENTS, ITEMS, SHIPMENT_ITEMS, SHIPMENTS, TRACKING
from mercato.identity import service as identity
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.runtime import Runtime
from tests.orders.conftest import (
    WAREHOUSE,
    LineSpec,
    RealOrder,
    Shopper,
    make_draft,
    real_order,
    shopper,
)
from tests.orders.conftest import snapshot as orders_snapshot

SECOND_WAREHOUSE = "ORD2"

__all__ = ["SECOND_WAREHOUSE", "WAREHOUSE", "RealOrder", "Shopper", "real_order", "shopper"]


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        identity, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


def rt(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
def adb(app: FastAPI) -> Database:
    """The app's database."""
    return rt(app).db


@pytest.fixture
def sandbox(app: FastAPI) -> SandboxProvider:
    """The app's payment provider (faults injected here reach the API)."""
    chosen = payments.get_provider(rt(app))
    assert isinstance(chosen, SandboxProvider)
    return chosen


@pytest.fixture
async def warehouses(adb: Database) -> tuple[str, str]:
    async with adb.transaction() as conn:
        await inventory.create_warehouse(conn, code=WAREHOUSE, name="First", countries=["DE"])
        await inventory.create_warehouse(
            conn, code=SECOND_WAREHOUSE, name="Second", countries=["DE"]
        )
    return WAREHOUSE, SECOND_WAREHOUSE


@pytest.fixture
async def staff(app: FastAPI) -> Shopper:
    return await shopper(app, "picker@example.com", role="staff")


@pytest.fixture
async def ada(app: FastAPI) -> Shopper:
    return await shopper(app, "ada@example.com")


async def split_order(
    db: Database, provider: SandboxProvider, *, user_id: str, email: str
) -> RealOrder:
    """An order of two lines whose variants are stocked in different warehouses: 2 units of
    the first (ORD1), 1 of the second (ORD2)."""
    from tests.factories import make_product

    async with db.transaction() as session:
        product_id, variants = await make_product(
            session, variants=[{"price": 1000}, {"price": 1250}]
        )
    async with db.transaction() as conn:
        await inventory.receive(conn, variants[0], WAREHOUSE, 10)
        await inventory.receive(conn, variants[1], SECOND_WAREHOUSE, 10)
    checkout_id = new_id("chk")
    quantities = [2, 1]
    async with db.transaction() as conn:
        await inventory.reserve(conn, checkout_id, list(zip(variants, quantities, strict=True)))
    specs = [
        LineSpec(variants[0], product_id, 2, 1000, "SKU-0"),
        LineSpec(variants[1], product_id, 1, 1250, "SKU-1"),
    ]
    draft = make_draft(user_id=user_id, email=email, lines=specs, checkout_id=checkout_id)
    outcome = await payments.authorize(
        db,
        provider,
        owner=checkout_id,
        amount=draft.total,
        currency="EUR",
        token="tok_visa",
        idempotency_key=f"auth:{checkout_id}",
    )
    assert outcome.ok
    draft = replace(draft, payment_intent_id=outcome.intent_id)
    async with db.transaction() as conn:
        await inventory.commit(conn, checkout_id)
        order = await orders.create_order(conn, draft)
    return RealOrder(order, variants, quantities, checkout_id, outcome.intent_id)


async def get_order(db: Database, order_id: str) -> orders.OrderInfo:
    async with db.transaction() as conn:
        order = await orders.get_order(conn, order_id)
    assert order is not None
    return order


async def intent(db: Database, intent_id: str) -> payments.IntentInfo:
    async with db.transaction() as conn:
        found = await payments.get_intent(conn, intent_id)
    assert found is not None
    return found


async def assert_money(db: Database, order_id: str) -> tuple[int, int]:
    """captured - refunded at the provider == what the shipments captured - what the order
    refunded; returns (captured, refunded)."""
    order = await get_order(db, order_id)
    paid = await intent(db, order.payment_intent_id)
    async with db.transaction() as conn:
        captured = await fulfilment.captured_for_order(conn, order_id)
    assert paid.amount_captured == captured
    assert paid.amount_captured - paid.amount_refunded == captured - order.refunded_total
    assert 0 <= paid.amount_captured <= paid.amount_authorized
    return paid.amount_captured, paid.amount_refunded


async def snapshot(db: Database) -> dict[str, Any]:
    """Orders, fulfilment tables, payment intents and the outbox: proof nothing was written."""
    found = await orders_snapshot(db)
    async with db.transaction() as conn:
        for table in (FULFILMENTS, ITEMS, SHIPMENTS, SHIPMENT_ITEMS, TRACKING):
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            found[table.name] = [tuple(r) for r in rows]
        intents = []
        for intent_id in await conn.scalars(
            select(orders.ORDERS.c.payment_intent_id).order_by(orders.ORDERS.c.id)
        ):
            paid = await payments.get_intent(conn, intent_id)
            if paid is not None:
                intents.append((paid.id, paid.status, paid.amount_captured, paid.amount_refunded))
        found["intents"] = intents
        found["outbox_types"] = list(
            await conn.scalars(select(OutboxEvent.type).order_by(OutboxEvent.seq))
        )
        found["outbox_count"] = await conn.scalar(select(func.count()).select_from(OutboxEvent))
    return found


async def events_of(db: Database, order_id: str, event_type: str) -> list[dict[str, Any]]:
    async with db.transaction() as conn:
        rows = await conn.execute(
            select(OutboxEvent.payload)
            .where(OutboxEvent.aggregate_id == order_id, OutboxEvent.type == event_type)
            .order_by(OutboxEvent.seq)
        )
        return [dict(r.payload) for r in rows]


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def ship(
    client: httpx.AsyncClient,
    staff: Shopper,
    order_id: str,
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/api/admin/orders/{order_id}/shipments",
        json=body if body is not None else {"carrier": "sandbox"},
        headers=staff.headers,
    )
