"""POST /api/checkout for a guest: a cart token and an e-mail, no account. The same guarantees as
a customer's checkout (idempotency, stock, payment), bad input refused with nothing written, and
guests racing customers for the last units."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx

from mercato.cart import service as cart_service
from mercato.db import Database
from mercato.orders import service as orders
from tests.checkout.conftest import (
    BODY,
    Shop,
    assert_problem,
    check_invariants,
    checkout_runs,
    fill_cart,
    make_customers,
    make_variant,
    post_checkout,
    stock,
)

SECRET = "test-secret-key"  # the test settings' secret key


async def guest_cart(db: Database, *lines: tuple[str, int]) -> str:
    """A guest cart holding ``lines``; returns the signed token a guest holds for it."""
    cart_id = ""
    async with db.transaction() as uow:
        owner = cart_service.CartOwner()
        for variant_id, quantity in lines:
            change = await cart_service.add_item(
                uow, owner, variant_id, quantity, limits=cart_service.CartLimits()
            )
            cart_id = change.cart_id
            owner = cart_service.CartOwner(guest_cart_id=cart_id)
    return cart_service.sign_cart_token(SECRET, cart_id)


async def post_guest(
    client: httpx.AsyncClient,
    token: str | None,
    email: str | None = "Guest@Example.com",
    key: str | None = "guest-key-1",
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    headers: dict[str, str] = {}
    if token is not None:
        headers[cart_service.CART_HEADER] = token
    if key is not None:
        headers["Idempotency-Key"] = key
    sent = dict(body or BODY)
    if email is not None:
        sent["email"] = email
    return await client.post("/api/checkout", json=sent, headers=headers)


async def order_of(db: Database, order_id: str) -> orders.OrderInfo:
    async with db.transaction() as uow:
        found = await orders.get_order(uow, order_id)
    assert found is not None
    return found


async def test_a_guest_checks_out_with_a_cart_token_and_an_email(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    kettle = await make_variant(db, price=1999, stock=10)
    token = await guest_cart(db, (kettle, 2))

    response = await post_guest(client, token, email="  Guest@Example.com ")

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "paid" and body["subtotal"] == "39.98"
    order = await order_of(db, body["order_id"])
    # No customer; the e-mail spelled as accounts' are (NFKC, case-folded, trimmed).
    assert order.user_id is None and order.email == "guest@example.com"
    assert await stock(db, kettle) == (8, 0)
    async with db.transaction() as uow:
        cart = await cart_service.get_cart_for(
            uow, None, cart_service.read_cart_token(SECRET, token)
        )
    assert cart is None or not cart.lines
    totals = await check_invariants(db)
    assert totals.orders == 1 and totals.live_charges == 1


async def test_a_guest_replay_returns_the_same_order_and_another_body_conflicts(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    kettle = await make_variant(db, stock=10)
    token = await guest_cart(db, (kettle, 1))

    first = await post_guest(client, token)
    again = await post_guest(client, token)
    other_email = await post_guest(client, token, email="someone.else@example.com")

    assert first.status_code == 201 and again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json()
    assert_problem(other_email, 422, "idempotency_conflict")
    totals = await check_invariants(db)
    assert totals.orders == 1 and totals.live_charges == 1
    assert await stock(db, kettle) == (9, 0)


async def test_two_guests_with_the_same_key_are_two_checkouts(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    kettle = await make_variant(db, stock=10)
    first = await post_guest(client, await guest_cart(db, (kettle, 1)), key="same")
    second = await post_guest(client, await guest_cart(db, (kettle, 1)), key="same")

    assert first.status_code == 201 and second.status_code == 201
    assert first.json()["order_id"] != second.json()["order_id"]


async def test_bad_guest_input_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    kettle = await make_variant(db, stock=10)
    token = await guest_cart(db, (kettle, 1))

    for email in ("not an e-mail", "ada@", "@example.com", "ada@example", "a" * 300 + "@x.io"):
        body = assert_problem(await post_guest(client, token, email=email), 422, "validation_error")
        assert [e["field"] for e in body["errors"]] == ["email"], body
    assert_problem(await post_guest(client, token, key=None), 400, "idempotency_key_required")
    assert_problem(await post_guest(client, None), 422, "cart_empty")
    assert_problem(await post_guest(client, "forged.token"), 400, "invalid_cart_token")
    # Without an account and without an e-mail, it is still a sign-in that is missing.
    assert_problem(await post_guest(client, token, email=None), 401, "unauthorized")

    assert await checkout_runs(db) == []
    assert await stock(db, kettle) == (10, 0)
    totals = await check_invariants(db)
    assert totals.orders == 0 and totals.live_charges == 0


async def test_a_declined_guest_card_places_nothing(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    kettle = await make_variant(db, stock=3)
    token = await guest_cart(db, (kettle, 1))

    declined = await post_guest(client, token, body={**BODY, "payment_token": "tok_chargeDeclined"})

    assert_problem(declined, 402, "payment_declined")
    assert await stock(db, kettle) == (3, 0)
    totals = await check_invariants(db)
    assert totals.orders == 0 and totals.live_charges == 0


async def test_guests_and_customers_racing_for_the_last_units_sell_exactly_the_stock(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, stock=12)
    customers = await make_customers(db, 20)
    for c in customers:
        await fill_cart(db, c.id, (variant, 1))
    tokens = [await guest_cart(db, (variant, 1)) for _ in range(20)]

    answers = await asyncio.gather(
        *(post_checkout(client, c, f"k-{c.id}") for c in customers),
        *(
            post_guest(client, t, email=f"guest{i}@example.com", key=f"g-{i}")
            for i, t in enumerate(tokens)
        ),
    )

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 12, 409: 28}, statuses
    for answer in answers:
        if answer.status_code == 409:
            assert_problem(answer, 409, "out_of_stock")
    assert await stock(db, variant) == (0, 0)
    # Every placed order is paid with one live charge each; the ledger balances.
    totals = await check_invariants(db)
    assert totals.orders == 12 and totals.live_charges == 12
    assert totals.active_reservations == 0
    placed = [a.json()["order_id"] for a in answers if a.status_code == 201]
    guests = [(await order_of(db, o)).user_id is None for o in placed]
    assert len(guests) == 12
