"""The issue's rush: 5,000 buyers (each a distinct customer, a concurrent client of the ASGI app)
for 100 units, limit one each, on PostgreSQL + Redis. Exactly 100 orders by 100 customers,
everyone else told ``sold_out``, the sale's counters, the gate, the stock ledger and the
processor's charges agree, no 5xx; and the shop's other pages and its regular checkout keep
answering while the crowd is in the waiting room.

PostgreSQL only: on SQLite the same rules hold (the rest of this directory checks them on both
backends) and the crowd would only measure a single writer."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mercato.catalog import service as catalog
from mercato.checkout import flash
from mercato.flashsale import service as flashsale
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.payments import service as payments
from mercato.ratelimit import Rate
from mercato.runtime import Runtime
from mercato.search import service as search
from tests.checkout.conftest import (
    ADDRESS,
    BODY,
    FAST_HASHER,
    Customer,
    make_customers,
    make_variant,
)
from tests.flashsale.conftest import make_keeper
from tests.flashsale.test_checkout import a_sale, sale_orders

BUYERS = 5000
UNITS = 100
ARRIVAL_SECONDS = 5.0
IN_FLIGHT = 64
"""Requests in flight at once, as a server's connection limit would have it."""


async def _buyer(
    client: httpx.AsyncClient,
    sale_id: str,
    buyer: Customer,
    at: float,
    statuses: Counter[int],
    gate: asyncio.Semaphore,
) -> str:
    """Arrive at ``at`` seconds, join, poll as told until admitted or sold out, check out
    and follow the purchase."""
    base = f"/api/flash-sales/{sale_id}"

    async def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**buyer.headers, **kwargs.pop("headers", {})}
        async with gate:
            response = await client.request(method, url, headers=headers, **kwargs)
        statuses[response.status_code] += 1
        return response

    await asyncio.sleep(at)
    state = (await call("POST", f"{base}/queue")).json()
    while state.get("state") == "waiting":
        await asyncio.sleep(float(state["poll_after_seconds"]))
        state = (await call("GET", f"{base}/queue/me")).json()
    if state.get("state") != "admitted":
        return str(state.get("state") or state.get("code"))
    body = {
        "admission_token": state["admission_token"],
        "shipping_address": ADDRESS,
        "payment_token": "tok_visa",
    }
    key = {"Idempotency-Key": f"rush-{buyer.user.id}"}
    queued = await call("POST", f"{base}/checkout", json=body, headers=key)
    if queued.status_code != 202:
        return f"checkout {queued.status_code}"
    while True:
        await asyncio.sleep(0.2)
        found = (await call("GET", queued.json()["poll"])).json()
        if found["status"] in ("completed", "failed"):
            return "ordered" if found["status"] == "completed" else "failed"


async def _worker(runtime: Runtime, done: asyncio.Event) -> None:
    while not done.is_set():
        if not await flash.drain_purchases(runtime):
            await asyncio.sleep(0.05)


async def _the_rest_of_the_shop(
    client: httpx.AsyncClient, product_id: str, shopper: Customer, regular_variant: str
) -> list[int]:
    """A product page, a search and a regular checkout, asked while the crowd is waiting."""
    await asyncio.sleep(1.0)
    answers = [
        (await client.get(f"/api/products/{product_id}")).status_code,
        (await client.get("/api/search", params={"q": "rush"})).status_code,
    ]
    added = await client.post(
        "/api/cart/items",
        json={"variant_id": regular_variant, "quantity": 1},
        headers=shopper.headers,
    )
    answers.append(added.status_code)
    placed = await client.post(
        "/api/checkout",
        json=BODY,
        headers={**shopper.headers, "Idempotency-Key": "regular-during-the-rush"},
    )
    answers.append(placed.status_code)
    return answers


@pytest.mark.slow
async def test_five_thousand_buyers_for_a_hundred_units(
    backend: str, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("the rush runs on the production backend")
    monkeypatch.setattr(identity, "PASSWORD_HASHER", FAST_HASHER)
    runtime: Runtime = app.state.runtime
    sale_id, variant = await a_sale(runtime, UNITS)
    # Every client comes from one address here, and an admission pass runs at most twice a
    # second per process, as in production. One process plays all 5,000 buyers and its polls
    # queue behind each other on a busy machine, which real buyers' browsers do not: places
    # are kept for half an hour so that lapsing (tested in test_queue.py) cannot decide here.
    keeper = make_keeper(
        runtime,
        admit_every=0.5,
        ip_rate=Rate.per_minute(100_000_000),
        grace=timedelta(minutes=30),
    )
    runtime.extras["flashsale.keeper"] = keeper
    async with runtime.db.transaction() as uow:
        product_id = (await catalog.get_variants(uow, [variant]))[variant].product_id
    regular_variant = await make_variant(runtime.db, price=1500, stock=5)
    await search.reindex(runtime)
    shopper, *buyers = await make_customers(runtime.db, BUYERS + 1, prefix="rush")

    statuses: Counter[int] = Counter()
    in_flight = asyncio.Semaphore(IN_FLIGHT)
    spacing = ARRIVAL_SECONDS / BUYERS
    done = asyncio.Event()
    worker = asyncio.create_task(_worker(runtime, done))
    try:
        rest, *outcomes = await asyncio.gather(
            _the_rest_of_the_shop(client, product_id, shopper, regular_variant),
            *(
                _buyer(client, sale_id, b, i * spacing, statuses, in_flight)
                for i, b in enumerate(buyers)
            ),
        )
    finally:
        done.set()
        await worker

    assert all(s < 500 for s in statuses), statuses
    assert rest == [200, 200, 201, 201], rest
    counted = Counter(outcomes)
    assert counted == {"ordered": UNITS, "sold_out": BUYERS - UNITS}, counted
    placed = await sale_orders(runtime.db)
    async with runtime.db.transaction() as uow:
        counters = await flashsale.sale_counters(uow, keeper.gate, sale_id)
        assert await inventory.check_ledger(uow) == []
        processor = await payments.sandbox_charge_summary(uow)
    assert len(placed) == len({o.user_id for o in placed}) == UNITS
    assert counters.sale.sold == UNITS == sum(v.sold for v in counters.sale.variants)
    assert counters.purchased == UNITS and counters.admitted == 0
    assert counters.sale.held == 0 and counters.gate_remaining == 0
    assert processor.charges == UNITS + 1  # and the regular checkout's
