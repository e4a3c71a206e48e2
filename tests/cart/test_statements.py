"""What an add-to-cart costs in SQL, and that its answer is the cart a fresh read shows.

The add answers from what the change itself read and wrote (the locked cart row, its lines, the
upserted line, the added variant and its stock); these tests keep both the statement count and
the answer's equality with ``GET /api/cart`` from drifting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from mercato.cart import service
from tests.cart.conftest import new_variant, rt, set_price, set_stock
from tests.conftest import user_headers


@contextmanager
def statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app sends meanwhile (SQLite's ``BEGIN IMMEDIATE`` left out, so
    both backends count the same)."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            sent.append(" ".join(statement.split()))

    engine = rt(app).db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def add(
    client: httpx.AsyncClient, variant_id: str, quantity: int = 1, **kwargs: Any
) -> httpx.Response:
    r = await client.post(
        "/api/cart/items", json={"variant_id": variant_id, "quantity": quantity}, **kwargs
    )
    assert r.status_code == 201, r.text
    return r


async def test_add_to_an_empty_customer_cart_takes_six_statements(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await user_headers(app, "customer", "six@example.com")
    first = await new_variant(app, stock=10)
    second = await new_variant(app, stock=10)
    await add(client, first, 1, headers=headers)
    emptied = await client.delete("/api/cart", headers=headers)
    assert emptied.status_code == 200 and emptied.json()["lines"] == []

    with statements(app) as sent:
        r = await add(client, second, 2, headers=headers)
    # Token check; the destination (the countries warehouses ship to and zones cover, the
    # customer's default address); variant, its stock, the cart's version bump, its lines, the
    # line upsert.
    assert len(sent) == 9, "\n".join(sent)
    assert [line["variant_id"] for line in r.json()["lines"]] == [second]

    # A cart with another line reads that line's variant and stock for the answer too.
    with statements(app) as sent:
        r = await add(client, first, 1, headers=headers)
    assert len(sent) == 11, "\n".join(sent)
    assert [line["variant_id"] for line in r.json()["lines"]] == [second, first]


async def test_first_add_of_a_customer_creates_the_cart_in_seven_statements(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await user_headers(app, "customer", "seven@example.com")
    variant = await new_variant(app, stock=10)
    with statements(app) as sent:
        r = await add(client, variant, 1, headers=headers)
    # Token, the destination's three, variant, stock, bump (no cart), create, bump, upsert: a
    # new cart has no lines to read.
    assert len(sent) == 10, "\n".join(sent)
    assert r.json()["id"].startswith("crt_") and r.json()["item_count"] == 1


async def test_reading_a_cart_with_its_lines_is_one_statement(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await user_headers(app, "customer", "one@example.com")
    a = await new_variant(app, stock=10)
    b = await new_variant(app, stock=10)
    cart_id = (await add(client, a, 1, headers=headers)).json()["id"]
    await add(client, b, 3, headers=headers)
    user_id = (await client.get("/api/me", headers=headers)).json()["id"]

    async with rt(app).db.transaction() as session:
        with statements(app) as sent:
            by_owner = await service.get_cart_for(session, user_id, None)
        assert len(sent) == 1
        with statements(app) as sent:
            by_id = await service.get_cart(session, cart_id)
        assert len(sent) == 1
        assert await service.get_cart_for(session, "usr_nobody", None) is None
        assert await service.get_cart(session, "crt_nothing") is None
    assert by_owner is not None and by_owner == by_id
    assert [(line.variant_id, line.quantity) for line in by_owner.lines] == [(a, 1), (b, 3)]


async def test_emptied_cart_reads_without_lines(app: FastAPI, client: httpx.AsyncClient) -> None:
    variant = await new_variant(app, stock=10)
    cart_id = (await add(client, variant, 1)).json()["id"]
    assert (await client.delete("/api/cart")).status_code == 200
    async with rt(app).db.transaction() as session:
        cart = await service.get_cart(session, cart_id)
    assert cart is not None and cart.id == cart_id and cart.lines == ()


@pytest.mark.parametrize("shopper", ["customer", "guest"])
async def test_add_answer_equals_a_fresh_read(
    app: FastAPI, client: httpx.AsyncClient, shopper: str
) -> None:
    headers = (
        await user_headers(app, "customer", "fresh@example.com") if shopper == "customer" else {}
    )
    repriced = await new_variant(app, price=1000, stock=10, title="Repriced kettle")
    short = await new_variant(app, price=2500, stock=5, title="Scarce kettle")
    plain = await new_variant(app, price=300, stock=50, title="Plain kettle")
    added = await new_variant(app, price=799, stock=3, title="Newly added kettle")

    r = await add(client, repriced, 2, headers=headers)
    if shopper == "guest":
        headers = {"X-Cart-Token": r.json()["cart_token"]}
    await add(client, short, 4, headers=headers)
    await add(client, plain, 1, headers=headers)
    await set_price(app, repriced, 1250)  # a price change since the line was added
    await set_stock(app, short, 2)  # fewer left than the cart holds

    async def check(answer: httpx.Response) -> dict[str, Any]:
        fresh = await client.get("/api/cart", headers=headers)
        assert fresh.status_code == 200
        assert answer.json() == fresh.json()
        body: dict[str, Any] = fresh.json()
        return body

    # A new line, added to a cart with a repriced and a short line.
    cart = await check(await add(client, added, 2, headers=headers))
    by_variant = {line["variant_id"]: line for line in cart["lines"]}
    assert [line["variant_id"] for line in cart["lines"]] == [repriced, short, plain, added]
    assert by_variant[repriced]["price_changed"] is True
    assert by_variant[repriced]["unit_price"] == "12.50"
    assert by_variant[short]["stock_status"] == "short" and by_variant[short]["available"] == 2
    assert by_variant[added]["available_hint"] == "Only 3 left"
    assert cart["subtotal"] == "143.98" and cart["item_count"] == 9
    assert len(cart["notices"]) == 2
    assert (cart["cart_token"] is None) == (shopper == "customer")

    # Adding to an existing line (which takes the current price as seen).
    cart = await check(await add(client, repriced, 1, headers=headers))
    assert [line["variant_id"] for line in cart["lines"]] == [repriced, short, plain, added]
    assert {line["variant_id"]: line for line in cart["lines"]}[repriced]["price_changed"] is False

    # Setting a quantity answers from the change as well.
    line_id = {line["variant_id"]: line["id"] for line in cart["lines"]}[plain]
    changed = await client.patch(
        f"/api/cart/items/{line_id}", json={"quantity": 4}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    await check(changed)
    lowered = await client.patch(
        f"/api/cart/items/{line_id}", json={"quantity": 2}, headers=headers
    )
    assert lowered.status_code == 200, lowered.text
    await check(lowered)
