"""The demo's history: made through the real services, in every state asked for, with the
stock ledger and the processor's charges agreeing with the orders, the same for the same seed;
and the dashboard's daily figures equal to a count of the orders themselves."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from mercato.catalog.demo import seed_catalog
from mercato.checkout.demo import seed_checkout
from mercato.db import UnitOfWork, clock_override, utcnow
from mercato.demo_history import HistoryCounts, generate_history
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.inventory.demo import seed_inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.recommendations import service as recommendations
from mercato.reviews import service as reviews
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.slow  # long: scheduled first (tests/conftest.py)

PRODUCTS = 40
CUSTOMERS = 20
ORDERS = 70
SEED = 11


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        identity, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


async def every_order(uow: UnitOfWork) -> list[orders.OrderInfo]:
    """Every order, read one by one (the brute force the figures are checked against)."""
    ids = (await uow.execute(select(orders.ORDERS.c.id))).scalars().all()
    found = [await orders.get_order(uow, order_id) for order_id in ids]
    return [o for o in found if o is not None]


async def history(runtime: Runtime, seed: int = SEED) -> HistoryCounts:
    currency = runtime.settings.currency
    variant_ids = await seed_catalog(runtime.db, PRODUCTS, 3, currency=currency)
    await seed_inventory(runtime.db, variant_ids, 3)
    await seed_checkout(runtime.db, currency=currency)
    return await generate_history(
        runtime, customers=CUSTOMERS, orders_count=ORDERS, seed=seed, password=TEST_PASSWORD
    )


async def test_the_history_has_every_fate_and_the_ledgers_agree(runtime: Runtime) -> None:
    before = utcnow()
    counts = await history(runtime)

    assert counts.customers == CUSTOMERS
    assert counts.orders + counts.not_placed <= ORDERS
    assert counts.orders >= ORDERS * 0.9
    statuses = counts.by_status
    assert sum(statuses.values()) == counts.orders
    for status in ("paid", "shipped", "delivered", "cancelled", "refunded"):
        assert statuses.get(status, 0) > 0, statuses
    assert statuses["delivered"] > counts.orders / 2  # most orders arrived
    assert counts.returns_refunded == statuses["refunded"]
    assert counts.reviews == sum(counts.reviews_by_state.values()) > 0
    assert counts.reviews_by_state.get("approved", 0) > counts.reviews / 2

    async with runtime.db.transaction() as uow:
        assert await inventory.check_ledger(uow) == []
        infos = await every_order(uow)
        # The customers share one password hash, and sign in with the password.
        customer = await identity.authenticate_credentials(
            uow, "customer0001@example.com", TEST_PASSWORD
        )
        assert customer is not None and customer.role == "customer"
        assert customer.created_at < before - timedelta(days=90)
        summary = await payments.sandbox_charge_summary(uow)
        written = list(await uow.execute(select(reviews.REVIEWS.c.created_at)))
        # The recommendations are built from the whole history, not left to the worker's hour.
        built = await recommendations.last_build(uow)

    # Every order sold (not cancelled, not wholly returned) is in the built lists.
    sold = [o for o in infos if o.status not in ("cancelled", "refunded")]
    placed = sum(1 for o in infos if o.status != "cancelled")
    assert built is not None and len(sold) <= built[1] <= placed, built

    # The past is in the past: ninety days of orders, none from the future.
    moments = [o.created_at for o in infos]
    assert min(moments) >= before - timedelta(days=91)
    assert max(moments) <= utcnow()
    assert max(moments) - min(moments) > timedelta(days=60)
    assert all(row[0] <= utcnow() for row in written)

    # The processor agrees with the orders.
    assert len(infos) == counts.orders
    kept = [o for o in infos if o.status != "cancelled"]
    assert summary.charges == len(kept)
    assert summary.amount_authorized == sum(o.total for o in kept)
    assert summary.amount_captured == sum(o.total for o in kept if o.status != "paid")
    assert summary.amount_refunded == sum(o.refunded_total for o in kept) > 0


async def test_the_same_seed_makes_the_same_history(
    runtime: Runtime, second_runtime: Runtime
) -> None:
    first = await history(runtime)
    second = await history(second_runtime)
    assert first == second


async def test_the_daily_figures_are_the_orders_counted_one_by_one(runtime: Runtime) -> None:
    await history(runtime, seed=5)
    end = datetime.combine(utcnow().date() + timedelta(days=1), datetime.min.time(), UTC)
    start = end - timedelta(days=30)
    async with runtime.db.transaction() as uow:
        daily = await orders.daily_sales(uow, start, end)
        top = await orders.top_products_between(uow, start, end, limit=5)
        infos = await every_order(uow)
    expected_orders: Counter[date] = Counter()
    expected_revenue: Counter[date] = Counter()
    units: Counter[str] = Counter()
    for o in infos:
        if o.status == "cancelled" or not start <= o.created_at < end:
            continue
        day = o.created_at.astimezone(UTC).date()
        expected_orders[day] += 1
        expected_revenue[day] += o.total - o.refunded_total
        for line in o.lines:
            units[line.product_id] += line.quantity - line.quantity_returned
    assert {d.day: d.orders for d in daily} == dict(expected_orders)
    assert {d.day: d.revenue for d in daily} == dict(expected_revenue)
    assert sum(expected_orders.values()) > 10
    ranked = sorted((-n, pid) for pid, n in units.items() if n > 0)[:5]
    assert [(-p.units, p.product_id) for p in top] == ranked


def test_the_clock_override_stays_in_its_context() -> None:
    moment = datetime(2020, 2, 29, 12, tzinfo=UTC)
    with clock_override(lambda: moment):
        assert utcnow() == moment
    assert utcnow() > moment
