"""The database goes away once the card is charged: the shopper is answered 503
``database_unavailable``, the run is left where its row says (reserved, about to pay), and
recovery, or the shopper's retry with the same key, ends it: a paid order with its one charge,
or (the stock gone meanwhile) undone with the charge voided and the stock given back.

Two outages: every connection of the pool busy past ``db_pool_timeout`` (the overload a flash
crowd brings, on both backends), and the PostgreSQL server stopped. Two moments: right after
the authorize step (the order is the next transaction), and between the processor's answer and
the payments module's record of it. The request and recovery run in the same process, over one
pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from mercato import workflows
from mercato.checkout import workflow
from mercato.checkout.workflow import CHECKOUT
from mercato.db import Database, utcnow
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.runtime import Runtime
from mercato.settings import Settings
from mercato.workflows import RUNS
from tests.checkout.conftest import (
    Shop,
    assert_problem,
    cart_lines,
    check_invariants,
    checkout_runs,
    fill_cart,
    make_customer,
    make_variant,
    post_checkout,
    provider_of,
    stock,
)
from tests.support.crashes import at_boundary
from tests.support.servers import PostgresServer

POOL = 2
LATER = timedelta(hours=1)
OUTAGES = ("pool_timeout", "server_down")
MOMENTS = ("after:authorize", "before:payment_recorded")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A small pool with no overflow and a short wait: the bench's shape, quicker to exhaust.
    return settings.model_copy(
        update={"db_pool_size": POOL, "db_max_overflow": 0, "db_pool_timeout": 0.2}
    )


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    """The app's own runtime: the request, the checks and recovery share its pool."""
    found: Runtime = app.state.runtime
    return found


@pytest.fixture
def db(runtime: Runtime) -> Database:
    return runtime.db


@pytest.fixture(params=OUTAGES)
def outage(request: pytest.FixtureRequest, backend: str) -> str:
    kind: str = request.param
    if kind == "server_down" and backend != "postgresql":
        pytest.skip("a server to stop: PostgreSQL")
    return kind


@pytest.fixture(params=MOMENTS)
def moment(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


class Outage:
    """The database unavailable from ``moment`` on, until :meth:`end`."""

    def __init__(
        self, kind: str, runtime: Runtime, request: pytest.FixtureRequest, moment: str
    ) -> None:
        self.kind = kind
        self.runtime = runtime
        self.db = runtime.db
        self.request = request
        self.moment = moment
        self.held: list[AsyncConnection] = []
        self.server: PostgresServer | None = None

    async def begin(self) -> None:
        if self.kind == "pool_timeout":
            # Other requests hold every connection: the next one waits past the pool timeout.
            pool: Any = self.db.engine.pool
            while pool.checkedout() < POOL:
                self.held.append(await self.db.engine.connect())
        else:
            self.server = self.request.getfixturevalue("pg_server")
            self.server.pause()

    @contextlib.contextmanager
    def armed(self) -> Iterator[list[str]]:
        """Begins the outage when the checkout reaches the moment; yields the moments reached."""
        if self.moment == "after:authorize":
            with at_boundary(self.db, CHECKOUT, self.moment, self.begin) as at_step:
                yield at_step
            return
        # The processor (the sandbox) has charged the card and answered; the payments module
        # has yet to record that answer.
        provider = provider_of(self.runtime)
        charge = provider.authorize
        reached: list[str] = []

        async def answered(**kwargs: Any) -> Any:
            result = await charge(**kwargs)
            if not reached:
                reached.append(self.moment)
                await self.begin()
            return result

        provider.authorize = answered  # type: ignore[method-assign]
        try:
            yield reached
        finally:
            del provider.authorize

    async def end(self) -> None:
        for conn in self.held:
            await conn.close()
        self.held.clear()
        if self.server is not None:
            self.server.resume()
            self.server = None


async def checkout_through_outage(
    client: httpx.AsyncClient, db: Database, buyer: Any, outage: Outage, key: str
) -> None:
    """POST /api/checkout with the database gone from the moment the payment is authorized:
    answered 503, and the charge made is not an order yet."""
    try:
        with outage.armed() as reached:
            response = await post_checkout(client, buyer, key)
    finally:
        await outage.end()
    assert reached == [outage.moment]
    assert_problem(response, 503, "database_unavailable")
    assert int(response.headers["retry-after"]) >= 1
    # A snapshot now: charged without an order, the run still running (not lost, not undone).
    assert [status for status, _ in await checkout_runs(db)] == ["running"]
    async with db.transaction() as uow:
        assert (await payments.sandbox_charge_summary(uow)).charges == 1
        assert sum((await orders.count_by_status(uow)).values()) == 0


async def started(db: Database, buyer_prefix: str = "buyer") -> tuple[Any, str]:
    variant = await make_variant(db, price=3000, stock=5)
    buyer = await make_customer(db, buyer_prefix)
    await fill_cart(db, buyer.id, (variant, 2))
    return buyer, variant


async def expire_lease(db: Database) -> None:
    """The request that ran the checkout is long gone (its lease has passed)."""
    async with db.transaction() as uow:
        await uow.execute(update(RUNS).values(lease_until=utcnow() - timedelta(seconds=1)))


@pytest.fixture
async def through_outage(
    client: httpx.AsyncClient,
    runtime: Runtime,
    db: Database,
    shop: Shop,
    outage: str,
    moment: str,
    request: pytest.FixtureRequest,
) -> tuple[Any, str]:
    """A shopper (and the variant in their cart) whose checkout under key ``k`` met the outage
    at the moment, and was answered 503."""
    buyer, variant = await started(db)
    await checkout_through_outage(client, db, buyer, Outage(outage, runtime, request, moment), "k")
    return buyer, variant


async def test_recovery_places_the_order_paid_before_the_outage(
    client: httpx.AsyncClient,
    runtime: Runtime,
    db: Database,
    through_outage: tuple[Any, str],
) -> None:
    buyer, variant = through_outage

    assert await workflows.recover(runtime) == 0  # the request's lease has not passed yet
    assert await workflows.recover(runtime, now=utcnow() + LATER) == 1
    totals = await check_invariants(db)  # live charges = paid orders, ledger balanced
    assert totals.checkouts == {"completed": 1}
    assert totals.orders == 1 and totals.live_charges == 1
    assert totals.active_reservations == 0
    assert await stock(db, variant) == (3, 0)
    assert await cart_lines(db, buyer.id) == []
    # The shopper's retry finds the order recovery placed.
    again = await post_checkout(client, buyer, "k")
    assert again.status_code == 201, again.text
    assert again.json()["status"] == "paid"
    assert (await check_invariants(db)).orders == 1
    assert await workflows.recover(runtime, now=utcnow() + 3 * LATER) == 0


async def test_recovery_voids_the_charge_when_the_stock_went_meanwhile(
    client: httpx.AsyncClient,
    runtime: Runtime,
    db: Database,
    through_outage: tuple[Any, str],
) -> None:
    buyer, variant = through_outage
    # The reservation expires and someone else buys every unit before recovery comes.
    async with db.transaction() as uow:
        await inventory.expire_due(uow, utcnow() + timedelta(days=1))
    async with db.transaction() as uow:
        await inventory.reserve(uow, "other-checkout", [(variant, 5)])
        await inventory.commit(uow, "other-checkout")

    assert await workflows.recover(runtime, now=utcnow() + LATER) == 1
    totals = await check_invariants(db)
    assert totals.checkouts == {"failed": 1}
    assert totals.orders == 0 and totals.live_charges == 0  # the authorization voided
    assert totals.active_reservations == 0
    assert await stock(db, variant) == (0, 0)  # sold to the other buyer, none held
    assert await cart_lines(db, buyer.id) == [(variant, 2)]
    again = await post_checkout(client, buyer, "k")
    assert_problem(again, 409, "out_of_stock")


async def test_the_shoppers_retry_with_the_same_key_places_one_order(
    client: httpx.AsyncClient,
    runtime: Runtime,
    db: Database,
    through_outage: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buyer, variant = through_outage

    # Retried at once: the failed request's lease still holds the run, which nobody may run
    # forward yet; the shopper is told to come back.
    monkeypatch.setattr(workflow, "CHECKOUT", replace(CHECKOUT, replay_wait_seconds=0.05))
    soon = await post_checkout(client, buyer, "k")
    assert_problem(soon, 409, "checkout_in_progress")
    # Retried once the lease has passed: the retry takes the run over and places the order.
    await expire_lease(db)
    placed = await post_checkout(client, buyer, "k")
    assert placed.status_code == 201, placed.text
    again = await post_checkout(client, buyer, "k")
    assert again.status_code == 201 and again.json() == placed.json()
    totals = await check_invariants(db)
    assert totals.checkouts == {"completed": 1}
    assert totals.orders == 1 and totals.live_charges == 1
    assert await stock(db, variant) == (3, 0)
    assert await workflows.recover(runtime, now=utcnow() + LATER) == 0  # nothing left


async def test_a_new_key_after_the_outage_is_a_second_order_and_charge(
    client: httpx.AsyncClient,
    runtime: Runtime,
    db: Database,
    shop: Shop,
    request: pytest.FixtureRequest,
) -> None:
    """What the bench's buyers do (a fresh key per POST): the first checkout still ends as its
    own order, so a new key is a second purchase, each with its one charge."""
    buyer, variant = await started(db)
    await checkout_through_outage(
        client, db, buyer, Outage("pool_timeout", runtime, request, "after:authorize"), "k1"
    )
    await fill_cart(db, buyer.id, (variant, 1))  # the cart still holds the first two
    second = await post_checkout(client, buyer, "k2")
    assert second.status_code == 201, second.text
    assert await workflows.recover(runtime, now=utcnow() + LATER) == 1
    totals = await check_invariants(db)
    assert totals.checkouts == {"completed": 2}
    assert totals.orders == 2 and totals.live_charges == 2
    assert await stock(db, variant) == (0, 0)
