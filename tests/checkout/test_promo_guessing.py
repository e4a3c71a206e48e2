"""Guessing promo codes is slowed down: codes that do not apply are counted per cart and per
client IP (429 with Retry-After past the allowance, whatever the next code would have been), a
valid code never counts, and the same wrong code sent again is counted once. Small allowances
here; the shop's defaults are in settings."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mercato.checkout import service as checkout
from mercato.db import Database
from mercato.settings import Settings
from tests.checkout.conftest import (
    BODY,
    Shop,
    assert_problem,
    fill_cart,
    make_customer,
    make_variant,
    post_checkout,
)

PER_CART = 3
PER_IP = 5
QUOTE = "/api/checkout/quote"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "promo_failures_per_cart_per_hour": PER_CART,
            "promo_failures_per_ip_per_hour": PER_IP,
        }
    )


async def guest_cart(client: httpx.AsyncClient, variant: str) -> dict[str, str]:
    """A new guest cart holding ``variant``; the headers that name it."""
    added = await client.post("/api/cart/items", json={"variant_id": variant, "quantity": 1})
    assert added.status_code == 201, added.text
    client.cookies.clear()  # the token in the header names the cart, not a cookie
    return {"X-Cart-Token": added.json()["cart_token"]}


async def quote(client: httpx.AsyncClient, cart: dict[str, str], code: str) -> httpx.Response:
    body: dict[str, Any] = {"shipping_address": {"country": "DE"}, "promo_code": code}
    return await client.post(QUOTE, json=body, headers=cart)


def assert_throttled(response: httpx.Response) -> None:
    assert_problem(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1


async def test_guessing_from_one_guest_cart_is_refused_before_the_code_is_looked_up(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    cart = await guest_cart(client, await make_variant(db, price=6000))
    for i in range(PER_CART):
        assert_problem(await quote(client, cart, f"GUESS{i}"), 422, "invalid_promo_code")
    assert_throttled(await quote(client, cart, "GUESS9"))
    # A valid code is refused alike now: the answer says nothing about the code.
    assert_throttled(await quote(client, cart, "WELCOME10"))
    # Quotes without a code still work.
    plain = await client.post(QUOTE, json={"shipping_address": {"country": "DE"}}, headers=cart)
    assert plain.status_code == 200, plain.text


async def test_a_valid_code_never_counts_and_a_repeated_wrong_one_counts_once(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    cart = await guest_cart(client, await make_variant(db, price=6000))
    for _ in range(PER_CART * 3):  # the checkout page quotes again on every change
        answer = await quote(client, cart, "WELCOME10")
        assert answer.status_code == 200 and answer.json()["discount"] == "6.00"
    for _ in range(PER_CART * 3):  # a typo left in the field is sent with every change too
        assert_problem(await quote(client, cart, "WELCOM10"), 422, "invalid_promo_code")
    for i in range(PER_CART - 2):
        assert_problem(await quote(client, cart, f"OTHER{i}"), 422, "invalid_promo_code")
    # One failure left: the valid code still applies, and spends nothing.
    assert (await quote(client, cart, "welcome10")).status_code == 200
    assert (await quote(client, cart, "welcome10")).status_code == 200
    assert_problem(await quote(client, cart, "LAST"), 422, "invalid_promo_code")
    assert_throttled(await quote(client, cart, "ONEMORE"))


async def test_a_real_code_that_cannot_be_used_is_not_a_guess(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    """Shoppers racing for a code's last uses, or holding last year's, are not guessing."""
    async with db.transaction() as uow:
        await checkout.create_promo_code(
            uow, code="GONE", kind="percent", value=1000, usage_limit=0
        )
    cart = await guest_cart(client, await make_variant(db, price=6000))
    for _ in range(PER_CART + 2):
        used_up = assert_problem(await quote(client, cart, "GONE"), 422, "invalid_promo_code")
        assert used_up["reason"] == "used_up"
    assert (await quote(client, cart, "WELCOME10")).status_code == 200


async def test_the_address_allowance_spans_carts(
    make_client: Callable[[], httpx.AsyncClient], db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, price=6000)
    first, second, third = make_client(), make_client(), make_client()
    a = await guest_cart(first, variant)
    for i in range(PER_CART):
        assert_problem(await quote(first, a, f"A{i}"), 422, "invalid_promo_code")
    assert_throttled(await quote(first, a, "A9"))  # the cart's allowance; the IP keeps its own
    b = await guest_cart(second, variant)
    for i in range(PER_IP - PER_CART):
        assert_problem(await quote(second, b, f"B{i}"), 422, "invalid_promo_code")
    assert_throttled(await quote(second, b, "B9"))
    c = await guest_cart(third, variant)
    assert_throttled(await quote(third, c, "C0"))


async def test_checkout_counts_against_the_same_allowance(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (await make_variant(db, price=6000), 1))
    for i in range(PER_CART - 1):
        answer = await client.post(
            QUOTE,
            json={"shipping_address": {"country": "DE"}, "promo_code": f"Q{i}"},
            headers=buyer.headers,
        )
        assert_problem(answer, 422, "invalid_promo_code")
    wrong = await post_checkout(client, buyer, "k1", {**BODY, "promo_code": "NOPE"})
    assert_problem(wrong, 422, "invalid_promo_code")
    assert_throttled(await post_checkout(client, buyer, "k2", {**BODY, "promo_code": "WELCOME10"}))
    placed = await post_checkout(client, buyer, "k3", BODY)  # no code: checkout goes on
    assert placed.status_code == 201, placed.text


async def test_many_concurrent_guesses_get_exactly_the_allowance(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    """Fifty guesses at once on one cart: exactly PER_CART are looked up, the rest refused."""
    cart = await guest_cart(client, await make_variant(db, price=6000))
    answers = await asyncio.gather(*(quote(client, cart, f"RUSH{i}") for i in range(50)))
    assert Counter(a.status_code for a in answers) == {422: PER_CART, 429: 50 - PER_CART}
