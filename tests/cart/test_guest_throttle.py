"""Guests' writes are counted per client IP: every cart change and quote against one
allowance, the adds that create a cart against a slower one; past them a 429 with Retry-After
and nothing written. Customers are not counted. Small allowances here; the shop's defaults are
far above what the shoppers behind one address do."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from mercato.settings import Settings
from tests.cart.conftest import assert_problem, counts, new_variant
from tests.conftest import user_headers

WRITES = 6
CARTS = 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"guest_writes_per_ip_per_minute": WRITES, "guest_carts_per_ip_per_hour": CARTS}
    )


async def add(client: httpx.AsyncClient, variant: str, **kwargs: object) -> httpx.Response:
    return await client.post(
        "/api/cart/items",
        json={"variant_id": variant, "quantity": 1},
        **kwargs,  # type: ignore[arg-type]
    )


def assert_throttled(response: httpx.Response) -> None:
    assert_problem(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1


async def test_guest_carts_per_address_are_limited(
    app: FastAPI, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    variant = await new_variant(app, stock=50)
    for _ in range(CARTS):
        assert (await add(make_client(), variant)).status_code == 201
    assert_throttled(await add(make_client(), variant))
    assert (await counts(app)).carts == CARTS


async def test_guest_writes_per_address_are_limited_and_reads_are_not(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    variant = await new_variant(app, stock=50)
    added = await add(client, variant)
    assert added.status_code == 201
    line = added.json()["lines"][0]["id"]
    for quantity in range(2, WRITES):  # writes 2..WRITES-1
        changed = await client.patch(f"/api/cart/items/{line}", json={"quantity": quantity})
        assert changed.status_code == 200, changed.text
    quote = await client.post("/api/checkout/quote", json={"shipping_address": {"country": "DE"}})
    assert quote.status_code != 429  # the last write of the allowance (no shipping set up here)
    assert_throttled(await client.patch(f"/api/cart/items/{line}", json={"quantity": 9}))
    assert_throttled(await client.delete("/api/cart"))
    assert_throttled(
        await client.post("/api/checkout/quote", json={"shipping_address": {"country": "DE"}})
    )
    shown = await client.get("/api/cart")
    assert shown.status_code == 200 and shown.json()["lines"][0]["quantity"] == WRITES - 1


async def test_customers_are_not_counted_as_guests(app: FastAPI, client: httpx.AsyncClient) -> None:
    variant = await new_variant(app, stock=50)
    headers = await user_headers(app, "customer", "regular@example.com")
    for _ in range(WRITES * 2):
        assert (await add(client, variant, headers=headers)).status_code == 201


async def test_a_flood_of_new_guests_creates_exactly_the_allowed_carts(
    app: FastAPI, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    variant = await new_variant(app, stock=500)
    answers = await asyncio.gather(*(add(make_client(), variant) for _ in range(30)))
    assert Counter(a.status_code for a in answers) == {201: CARTS, 429: 30 - CARTS}
    assert (await counts(app)).carts == CARTS
