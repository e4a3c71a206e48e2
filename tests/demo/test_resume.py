"""The demo history in parts: stopped between two steps and continued from its journal (even by
a new process), it ends as an uninterrupted run with the same seed does; and while the shop is
live, a shopper holding the last units a planned order wanted, or cancelling a demo order
before it ships, makes the history adapt or skip a step, never stop."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from mercato.catalog.demo import seed_catalog
from mercato.checkout.demo import seed_checkout
from mercato.demo_history import History, HistoryCounts
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.inventory.demo import seed_inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD
from tests.demo.test_history import every_order

pytestmark = pytest.mark.slow  # long: scheduled first (tests/conftest.py)

PRODUCTS = 30
CUSTOMERS = 12
ORDERS = 40
SEED = 23
STOP_AFTER = 15

Fingerprint = list[tuple[timedelta, str, int, int, int]]


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        identity, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


async def shop(runtime: Runtime) -> None:
    currency = runtime.settings.currency
    variant_ids = await seed_catalog(runtime.db, PRODUCTS, 3, currency=currency)
    await seed_inventory(runtime.db, variant_ids, 3)
    await seed_checkout(runtime.db, currency=currency)


async def prepare(runtime: Runtime, journal: Path) -> History:
    return await History.prepare(
        runtime,
        customers=CUSTOMERS,
        orders_count=ORDERS,
        seed=SEED,
        password=TEST_PASSWORD,
        journal=journal,
    )


async def fingerprint(runtime: Runtime, history: History) -> Fingerprint:
    """Every order, by its moment in the plan: its state, total, refund and lines."""
    async with runtime.db.transaction() as uow:
        infos = await every_order(uow)
    return sorted(
        (o.created_at - history.planned, o.status, o.total, o.refunded_total, len(o.lines))
        for o in infos
    )


async def run_stopping_after(history: History, orders_tried: int) -> HistoryCounts | None:
    """Run until a stop is asked for once ``orders_tried`` orders were tried (as Ctrl-C would,
    between two steps)."""
    stop = asyncio.Event()

    def advance(_n: int) -> None:
        if history.orders_done >= orders_tried:
            stop.set()

    return await history.run(stop=stop, advance=advance)


async def test_a_stopped_history_continues_to_the_uninterrupted_result(
    runtime: Runtime, second_runtime: Runtime, tmp_path: Path
) -> None:
    await shop(runtime)
    whole = await prepare(runtime, tmp_path / "whole.jsonl")
    expected = await whole.run()
    assert expected is not None and expected.orders > ORDERS * 0.8

    await shop(second_runtime)
    journal = tmp_path / "parts.jsonl"
    first = await prepare(second_runtime, journal)
    assert await run_stopping_after(first, STOP_AFTER) is None
    assert not first.finished and first.orders_done == STOP_AFTER
    first.close()
    # A restart: the plan and every step so far come back from the journal, whatever the
    # arguments now say.
    again = await History.prepare(
        second_runtime, customers=3, orders_count=5, seed=99, password="x", journal=journal
    )
    assert again.orders_done == STOP_AFTER and again.total_orders == whole.total_orders
    assert again.planned == first.planned
    assert await again.run(until_orders=STOP_AFTER) is None  # nothing more before serving
    counts = await again.run()

    assert counts == expected
    assert await fingerprint(second_runtime, again) == await fingerprint(runtime, whole)
    finished = await History.prepare(
        second_runtime, customers=1, orders_count=1, seed=1, password="x", journal=journal
    )
    assert finished.finished  # a third start has nothing left to do


async def test_the_history_adapts_to_the_live_shop(runtime: Runtime, tmp_path: Path) -> None:
    await shop(runtime)
    history = await prepare(runtime, tmp_path / "history.jsonl")
    assert await run_stopping_after(history, STOP_AFTER) is None

    # A shopper's checkout holds every unit left of what the next orders want ...
    coming = [p for p in history.plans if p.order_id is None][:5]
    wanted = sorted({variant for plan in coming for variant, _p, _u in plan.lines})
    async with runtime.db.transaction() as uow:
        levels = await inventory.stock_for_variants(uow, wanted)
        for variant in wanted:
            for level in levels[variant]:
                if level.available > 0:
                    await inventory.reserve(
                        uow,
                        f"shopper-checkout-{variant}-{level.warehouse_code}",
                        [(variant, level.available)],
                        warehouse=level.warehouse_code,
                        ttl_seconds=3600,
                    )
    # ... and a customer cancels an order the history means to ship.
    to_ship = next(
        p
        for p in history.plans
        if p.order_id is not None and p.shipment_id is None and p.fate == "delivered"
    )
    assert to_ship.order_id is not None
    customer = history.users[to_ship.customer]
    await orders.cancel_order(
        runtime, to_ship.order_id, actor=customer.id, user_id=customer.id, reason="Found it cheaper"
    )

    counts = await history.run()

    assert counts is not None and history.finished
    assert counts.orders + counts.not_placed == history.total_orders
    assert counts.orders > ORDERS * 0.8  # the warehouse restocked what the shopper held
    async with runtime.db.transaction() as uow:
        assert await inventory.check_ledger(uow) == []
        cancelled = await orders.get_order(uow, to_ship.order_id)
        summary = await payments.sandbox_charge_summary(uow)
        infos = await every_order(uow)
        levels = await inventory.stock_for_variants(uow, wanted)
        restocked = await uow.scalar(
            select(func.count())
            .select_from(inventory.MOVEMENTS)
            .where(
                inventory.MOVEMENTS.c.reference == "demo restock",
                inventory.MOVEMENTS.c.variant_id.in_(wanted),
            )
        )
    assert restocked  # the orders that found nothing left had the warehouse restock it
    assert cancelled is not None and cancelled.status == "cancelled"
    assert to_ship.shipment_id is None  # its shipping, delivery and reviews were skipped
    kept = [o for o in infos if o.status != "cancelled"]
    assert summary.amount_authorized == sum(o.total for o in kept)
    assert summary.amount_refunded == sum(o.refunded_total for o in kept)
    assert all(level.available >= 0 and level.reserved >= 0 for v in wanted for level in levels[v])
