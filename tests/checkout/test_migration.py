"""The checkout's schema, and migration 0014: checkouts kept as saga rows by the earlier version
become workflow runs that answer replays as before and are finished or undone by recovery.

The saga rows are made from real checkouts (made by this version, then written back as the
earlier version kept them), so that their stock, promo uses, payments and orders are real.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, delete, func, insert, select

from mercato import workflows
from mercato.checkout import service
from mercato.checkout.workflow import CHECKOUT
from mercato.db import Base, Database, utcnow
from mercato.migrate import alembic_config, upgrade
from mercato.modules import load_models
from mercato.payments import service as payments
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.workflows import RUNS, RunInfo
from tests.checkout.conftest import (
    ADDRESS,
    Customer,
    Shop,
    cart_lines,
    check_invariants,
    fill_cart,
    make_customer,
    make_variant,
    stock,
)
from tests.support.crashes import SimulatedCrash, crash_at

migration = importlib.import_module("mercato.migrations.versions.0014_checkout_workflow")
SAGAS = migration.sagas

REQUEST = service.CheckoutRequest(
    shipping_address=ADDRESS,
    shipping_method="standard",
    payment_token="tok_visa",
    promo_code="WELCOME10",
)


def _checkout_diff(conn: Connection) -> list[Any]:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return bool(name and name.startswith("checkout_"))
        table = getattr(obj, "table", None)
        return table is None or str(table.name).startswith("checkout_")

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_make_the_schema_the_models_describe(db: Database) -> None:
    load_models()
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(_checkout_diff)
    assert diff == []  # the saga table included: it is gone


# --------------------------------------------------------------------------------------------
# From saga rows to runs


async def migrate_to(db: Database, revision: str) -> None:
    """Move the test's database to ``revision`` (every pooled connection dropped first and
    after: the schema changes under them)."""
    await db.engine.dispose()
    if revision == "head":
        upgrade(db.url)
    else:
        await asyncio.to_thread(command.downgrade, alembic_config(db.url), revision)
    await db.engine.dispose()


async def all_runs(db: Database) -> list[RunInfo]:
    async with db.transaction() as uow:
        ids = (await uow.execute(select(RUNS.c.id).order_by(RUNS.c.created_at))).scalars()
        found = [await workflows.get_run(uow, run_id) for run_id in list(ids)]
    return [r for r in found if r is not None]


def saga_row(run: RunInfo, status: str, step: str, intent_id: str | None) -> dict[str, Any]:
    """The row the earlier version kept for this checkout."""
    state = run.state
    user_id, _, key = run.key.partition(":")
    return {
        "id": state["checkout_id"],
        "user_id": user_id,
        "idempotency_key": key,
        "request_fingerprint": run.fingerprint,
        "status": status,
        "step": step,
        "cart_id": state["cart_id"],
        "currency": state["currency"],
        "request": {
            "shipping_address": state["shipping_address"],
            "shipping_method": state["shipping_method"],
            "promo_code": state["promo_code"],
            "email": state["email"],
        },
        "cart_snapshot": state["items"],
        "pricing": state["pricing"],
        "promo_id": state["promo_id"],
        "order_id": state["order_id"],
        "payment_intent_id": intent_id,
        "error": run.error,
        "response": run.result,
        "attempts": run.attempts,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
    }


async def intent_of(db: Database, checkout_id: str) -> str | None:
    async with db.transaction() as uow:
        intent = await payments.find_intent_by_owner(uow, checkout_id)
    return intent.id if intent is not None else None


async def back_to_sagas(db: Database, legacy: dict[str, tuple[str, str]]) -> None:
    """Rewrite the database as the earlier version kept it: ``legacy`` maps an Idempotency-Key
    to the (status, step) its saga row had."""
    runs = await all_runs(db)
    intents = {r.id: await intent_of(db, r.state["checkout_id"]) for r in runs}
    await migrate_to(db, "0013_workflows")
    rows = []
    for run in runs:
        status, step = legacy[run.key.partition(":")[2]]
        rows.append(saga_row(run, status, step, intents[run.id]))
    async with db.transaction() as uow:
        await uow.execute(delete(RUNS))
        await uow.execute(insert(SAGAS), rows)
    await migrate_to(db, "head")


async def checkout_with_crash(runtime: Runtime, buyer: Customer, key: str, boundary: str) -> None:
    with crash_at(runtime.db, CHECKOUT, boundary), pytest.raises(SimulatedCrash):
        await service.checkout(runtime, buyer.user, key, REQUEST)


async def buyer_with_cart(db: Database, name: str, variant: str, quantity: int = 1) -> Customer:
    buyer = await make_customer(db, name)
    await fill_cart(db, buyer.id, (variant, quantity))
    return buyer


async def test_every_saga_becomes_a_run_that_answers_or_is_recovered(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, price=3000, stock=20)
    # A placed order, a declined card, a placed order whose cart was not emptied yet (rows of
    # an earlier version still), a payment made before the process died, and checkouts that
    # died before the payment, at each of the statuses such a saga could have.
    declined_card = replace(REQUEST, payment_token="tok_chargeDeclined")
    done = await buyer_with_cart(db, "done", variant)
    assert (await service.checkout(runtime, done.user, "done", REQUEST))["status"] == "paid"
    declined = await buyer_with_cart(db, "declined", variant, 2)
    with pytest.raises(Problem):
        await service.checkout(runtime, declined.user, "declined", declined_card)
    uncleared = await buyer_with_cart(db, "uncleared", variant, 3)
    await service.checkout(runtime, uncleared.user, "uncleared", REQUEST)
    paid = await buyer_with_cart(db, "paid", variant, 4)
    await checkout_with_crash(runtime, paid, "paid", "after:authorize")
    died: dict[str, Customer] = {}
    for status in ("started", "reserved", "priced", "compensating"):
        died[status] = await buyer_with_cart(db, status, variant)
        await checkout_with_crash(runtime, died[status], status, "after:reserve")
    await fill_cart(db, uncleared.id, (variant, 3))
    assert await stock(db, variant) == (16, 8)  # 1 + 3 sold; 4 + 4 x 1 held

    await back_to_sagas(
        db,
        {
            "done": ("completed", "done"),
            "declined": ("failed", "failed"),
            "uncleared": ("completed", "clear_cart"),
            "paid": ("authorized", "order"),
            "started": ("started", "price"),
            "reserved": ("reserved", "price"),
            "priced": ("priced", "authorize"),
            "compensating": ("compensating", "void"),
        },
    )
    async with db.transaction() as uow:
        assert await uow.scalar(select(func.count()).select_from(RUNS)) == 8
        assert await service.count_by_status(uow) == {
            "completed": 2,
            "failed": 1,
            "running": 2,
            "compensating": 3,
        }
    # The legacy row's order was placed: its cart is emptied by the migration itself.
    assert await cart_lines(db, uncleared.id) == []

    # Recovery finishes what was paid for and undoes what was not.
    assert await workflows.recover(runtime, now=utcnow() + timedelta(minutes=1)) == 5
    totals = await check_invariants(db)
    assert totals.checkouts == {"completed": 3, "failed": 5}
    assert totals.orders == 3 and totals.live_charges == 3 and totals.active_reservations == 0
    assert await stock(db, variant) == (12, 0)
    assert await cart_lines(db, paid.id) == []
    for key, buyer in died.items():
        assert await cart_lines(db, buyer.id) == [(variant, 1)]
        with pytest.raises(Problem) as caught:
            await service.checkout(runtime, buyer.user, key, REQUEST)
        assert caught.value.code == "checkout_interrupted"

    # Replays answer as before the migration.
    again = await service.checkout(runtime, done.user, "done", REQUEST)
    assert again["status"] == "paid" and again["checkout_id"].startswith("chk_")
    async with db.transaction() as uow:
        seen = await service.checkout_status(uow, again["checkout_id"], done.id)
    assert seen is not None and seen.status == "completed" and seen.order_id == again["order_id"]
    with pytest.raises(Problem) as refused:
        await service.checkout(runtime, declined.user, "declined", declined_card)
    assert refused.value.code == "payment_declined"
    with pytest.raises(Problem) as conflict:
        await service.checkout(runtime, done.user, "done", replace(REQUEST, promo_code=None))
    assert conflict.value.code == "idempotency_conflict"
    paid_again = await service.checkout(runtime, paid.user, "paid", REQUEST)
    assert paid_again["status"] == "paid" and paid_again["payment"]["card_last4"] == "4242"
