"""Orders test helpers: drafts built directly (no checkout), orders backed by real stock and a
real sandbox authorization, shoppers with tokens, snapshots of what was written, and what the
worker does for cancellations left unfinished."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import func, select, update

from mercato import workflows
from mercato.db import Database, utcnow
from mercato.events import OutboxEvent, dispatcher
from mercato.identity import service as identity
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.orders import service
from mercato.orders.events import CANCELLATION_CONSUMER
from mercato.orders.service import HISTORY, LINES, ORDERS, OrderDraft, OrderInfo, OrderLineDraft
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD
from tests.factories import make_product

WAREHOUSE = "ORD1"
SHIPPING = 495


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real argon2id at its smallest cost: these tests sign in, they do not test hash strength.
    monkeypatch.setattr(
        identity, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


def rt(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
def provider(runtime: Runtime) -> SandboxProvider:
    chosen = payments.get_provider(runtime)
    assert isinstance(chosen, SandboxProvider)
    return chosen


# -- drafts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineSpec:
    variant_id: str
    product_id: str
    quantity: int
    unit_price: int
    sku: str = "SKU-TEST"


def make_draft(
    *,
    user_id: str | None = "usr_test",
    email: str = "shopper@example.com",
    lines: list[LineSpec] | None = None,
    payment_intent_id: str = "pi_none",
    checkout_id: str | None = None,
    order_id: str | None = None,
    currency: str = "EUR",
) -> OrderDraft:
    """A draft like the checkout workflow builds (no tax, no discount, flat shipping)."""
    specs = lines or [
        LineSpec("var_a", "prod_a", 2, 1999, "SKU-A"),
        LineSpec("var_b", "prod_b", 1, 4550, "SKU-B"),
    ]
    drafts = tuple(
        OrderLineDraft(
            variant_id=s.variant_id,
            product_id=s.product_id,
            sku=s.sku,
            title=f"Item {s.sku}",
            options={"colour": "red"},
            quantity=s.quantity,
            unit_price=s.unit_price,
            subtotal=s.quantity * s.unit_price,
            discount=0,
            tax=0,
            total=s.quantity * s.unit_price,
        )
        for s in specs
    )
    subtotal = sum(d.subtotal for d in drafts)
    return OrderDraft(
        id=order_id or new_id("ord"),
        checkout_id=checkout_id or new_id("chk"),
        user_id=user_id,
        email=email,
        currency=currency,
        lines=drafts,
        subtotal=subtotal,
        shipping=SHIPPING,
        discount=0,
        tax=0,
        total=subtotal + SHIPPING,
        shipping_address={"name": "Ada", "line1": "1 Main St", "city": "Berlin", "country": "DE"},
        shipping_method="standard",
        promo_code=None,
        payment_intent_id=payment_intent_id,
    )


async def place(db: Database, draft: OrderDraft | None = None, **kwargs: Any) -> OrderInfo:
    async with db.transaction() as conn:
        return await service.create_order(conn, draft or make_draft(**kwargs))


async def force_status(db: Database, order_id: str, status: str) -> None:
    """Put an order in ``status`` directly (test setup only; bypasses the machine)."""
    async with db.transaction() as conn:
        await conn.execute(update(ORDERS).where(ORDERS.c.id == order_id).values(status=status))


async def move(db: Database, order_id: str, *statuses: str, actor: str = "test") -> OrderInfo:
    order: OrderInfo | None = None
    for status in statuses:
        async with db.transaction() as conn:
            order = await service.transition(conn, order_id, status, actor=actor)
    assert order is not None
    return order


async def get(db: Database, order_id: str) -> OrderInfo:
    async with db.transaction() as conn:
        order = await service.get_order(conn, order_id)
    assert order is not None
    return order


# -- orders with real stock and a real authorization -----------------------------------------------


@dataclass(frozen=True)
class RealOrder:
    order: OrderInfo
    variants: list[str]
    quantities: list[int]
    checkout_id: str
    intent_id: str


@pytest.fixture
async def warehouse(db: Database) -> str:
    async with db.transaction() as conn:
        await inventory.create_warehouse(conn, code=WAREHOUSE, name="Orders test", countries=["DE"])
    return WAREHOUSE


async def stocked_variants(db: Database, count: int, units: int = 10) -> tuple[str, list[str]]:
    async with db.transaction() as session:
        product_id, variants = await make_product(
            session, variants=[{"price": 1000 + 250 * i} for i in range(count)]
        )
    async with db.transaction() as conn:
        for v in variants:
            await inventory.receive(conn, v, WAREHOUSE, units)
    return product_id, variants


async def real_order(
    db: Database,
    provider: SandboxProvider,
    *,
    user_id: str | None = "usr_test",
    email: str = "shopper@example.com",
    quantities: tuple[int, ...] = (2, 1),
    capture: bool = False,
) -> RealOrder:
    """What a checkout leaves behind: stock reserved and committed under the checkout id, the
    payment authorized (and captured when asked) on the sandbox, the order placed."""
    product_id, variants = await stocked_variants(db, len(quantities))
    checkout_id = new_id("chk")
    async with db.transaction() as conn:
        await inventory.reserve(conn, checkout_id, list(zip(variants, quantities, strict=True)))
    specs = [
        LineSpec(v, product_id, q, 1000 + 250 * i, f"SKU-{i}")
        for i, (v, q) in enumerate(zip(variants, quantities, strict=True))
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
    assert outcome.ok, outcome
    if capture:
        captured = await payments.capture(
            db, provider, outcome.intent_id, None, f"cap:{checkout_id}"
        )
        assert captured.ok
    draft = replace(draft, payment_intent_id=outcome.intent_id)
    async with db.transaction() as conn:
        await inventory.commit(conn, checkout_id)
        order = await service.create_order(conn, draft)
    return RealOrder(order, variants, list(quantities), checkout_id, outcome.intent_id)


async def on_hand(db: Database, variant_id: str) -> tuple[int, int]:
    """(on_hand, reserved) of a variant in the test warehouse."""
    async with db.transaction() as conn:
        levels = await inventory.stock_for_variant(conn, variant_id)
    level = next(s for s in levels if s.warehouse_code == WAREHOUSE)
    return level.on_hand, level.reserved


async def ledger_clean(db: Database) -> None:
    async with db.transaction() as conn:
        assert await inventory.check_ledger(conn) == []


async def intent_ops(db: Database, intent_id: str) -> list[tuple[str, str, str]]:
    """(operation, idempotency key, outcome) of every operation on a payment intent."""
    async with db.transaction() as conn:
        return [
            (e.operation, e.idempotency_key, e.outcome)
            for e in await payments.intent_events(conn, intent_id)
        ]


# -- people ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shopper:
    id: str
    email: str
    headers: dict[str, str]


async def shopper(app: FastAPI, email: str, role: str = "customer") -> Shopper:
    runtime = rt(app)
    async with runtime.db.transaction() as session:
        user = await identity.create_user(
            session, email=email, password=TEST_PASSWORD, role=role, name=email.split("@")[0]
        )
        token = await identity.issue_token(session, user.id, runtime.settings.token_ttl_seconds)
    return Shopper(user.id, user.email, {"Authorization": f"Bearer {token}"})


# -- what was written ------------------------------------------------------------------------------


async def snapshot(db: Database) -> dict[str, Any]:
    """The orders tables and the outbox: to prove a refused request wrote nothing."""
    found: dict[str, Any] = {}
    async with db.transaction() as conn:
        for table in (ORDERS, LINES, HISTORY):
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            found[table.name] = [tuple(r) for r in rows]
        found["outbox"] = await conn.scalar(select(func.count()).select_from(OutboxEvent))
    return found


async def events_of(db: Database, order_id: str, event_type: str | None = None) -> list[Any]:
    """The order's outbox events (type, payload), oldest first."""
    query = select(OutboxEvent.type, OutboxEvent.payload).where(
        OutboxEvent.aggregate_id == order_id
    )
    if event_type is not None:
        query = query.where(OutboxEvent.type == event_type)
    async with db.transaction() as conn:
        return [(r.type, r.payload) for r in await conn.execute(query.order_by(OutboxEvent.seq))]


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body


# -- what the worker does --------------------------------------------------------------------------

LATER = timedelta(hours=1)


async def recover_later(runtime: Runtime) -> int:
    """The worker's ``workflows.recover`` once every wait and lease has passed."""
    return await workflows.recover(runtime, now=utcnow() + LATER)


async def completed_cancellations(runtime: Runtime) -> int:
    async with runtime.db.transaction() as uow:
        counts = await workflows.count_by_status(uow, service.CANCELLATION_WORKFLOW)
    return counts.get("completed", 0)


async def finish_cancellations(runtime: Runtime) -> int:
    """What the worker does for cancellations left unfinished (before: the job
    ``orders.finish_cancellations``): orders moved to ``cancelled`` without their workflow are
    taken over from the outbox, and waiting runs are resumed. Returns how many cancellations
    are now complete that were not before."""
    before = await completed_cancellations(runtime)
    await dispatcher.dispatch_once(runtime, only=[CANCELLATION_CONSUMER])
    await recover_later(runtime)
    return await completed_cancellations(runtime) - before
