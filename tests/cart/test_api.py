"""The cart API: guest and customer carts, edits, the view's price and stock flags, bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mercato.cart import service
from tests.cart.conftest import (
    archive,
    assert_problem,
    counts,
    new_variant,
    rt,
    set_price,
    set_stock,
)


async def add(
    client: httpx.AsyncClient, variant_id: str, quantity: int = 1, **kwargs: Any
) -> httpx.Response:
    return await client.post(
        "/api/cart/items", json={"variant_id": variant_id, "quantity": quantity}, **kwargs
    )


def line_for(cart: dict[str, Any], variant_id: str) -> dict[str, Any]:
    (line,) = [ln for ln in cart["lines"] if ln["variant_id"] == variant_id]
    found: dict[str, Any] = line
    return found


async def test_empty_cart_for_a_new_guest_creates_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    r = await client.get("/api/cart")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] is None and body["cart_token"] is None
    assert body["lines"] == [] and body["item_count"] == 0 and body["subtotal"] == "0.00"
    assert "mercato_cart" not in r.headers.get("set-cookie", "")
    assert await counts(app) == (0, 0, 0)


async def test_guest_first_add_creates_cart_cookie_and_token(
    app: FastAPI, client: httpx.AsyncClient, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    variant = await new_variant(app, price=1999, stock=10)
    r = await add(client, variant, 2)
    assert r.status_code == 201, r.text
    cart = r.json()
    assert cart["id"].startswith("crt_")
    assert cart["cart_token"]
    assert cart["currency"] == "EUR"
    (line,) = cart["lines"]
    assert line["id"].startswith("cl_")
    assert line["quantity"] == 2
    assert line["unit_price"] == line["unit_price_seen"] == "19.99"
    assert line["line_total"] == "39.98"
    assert line["price_changed"] is False
    assert line["stock_status"] == "in_stock" and line["available"] is None
    assert line["sku"] and line["product_title"] == "Test kettle"
    assert cart["subtotal"] == "39.98" and cart["item_count"] == 2 and cart["notices"] == []

    cookie = r.headers["set-cookie"].lower()
    assert "mercato_cart=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    # The browser client sends the cookie back ...
    again = await client.get("/api/cart")
    assert again.json()["id"] == cart["id"]
    assert again.json()["lines"] == cart["lines"]
    # ... and an API client on another device uses the header.
    other = make_client()
    via_header = await other.get("/api/cart", headers={"X-Cart-Token": cart["cart_token"]})
    assert via_header.status_code == 200
    assert via_header.json()["id"] == cart["id"]
    assert await counts(app) == (1, 1, 2)


async def test_adding_again_grows_the_line(app: FastAPI, client: httpx.AsyncClient) -> None:
    variant = await new_variant(app, stock=10)
    await add(client, variant, 2)
    r = await add(client, variant, 3)
    assert r.status_code == 201
    (line,) = r.json()["lines"]
    assert line["quantity"] == 5
    assert await counts(app) == (1, 1, 5)


async def test_patch_delete_and_empty(app: FastAPI, client: httpx.AsyncClient) -> None:
    a = await new_variant(app, price=1000, stock=10)
    b = await new_variant(app, price=250, stock=10)
    await add(client, a, 1)
    cart = (await add(client, b, 2)).json()
    assert cart["subtotal"] == "15.00" and cart["item_count"] == 3

    r = await client.patch(f"/api/cart/items/{line_for(cart, a)['id']}", json={"quantity": 4})
    assert r.status_code == 200, r.text
    assert line_for(r.json(), a)["quantity"] == 4
    assert r.json()["subtotal"] == "45.00"

    r = await client.delete(f"/api/cart/items/{line_for(cart, b)['id']}")
    assert r.status_code == 200
    assert [ln["variant_id"] for ln in r.json()["lines"]] == [a]

    r = await client.delete("/api/cart")
    assert r.status_code == 200
    assert r.json()["lines"] == [] and r.json()["id"] == cart["id"]
    assert await counts(app) == (1, 0, 0)
    # The emptied cart stays usable with the same token.
    assert (await add(client, b, 1)).json()["id"] == cart["id"]


async def test_customer_cart_is_keyed_by_user(
    app: FastAPI, client: httpx.AsyncClient, customer_headers: dict[str, str]
) -> None:
    variant = await new_variant(app, stock=5)
    empty = await client.get("/api/cart", headers=customer_headers)
    assert empty.status_code == 200 and empty.json()["id"] is None
    assert await counts(app) == (0, 0, 0)

    r = await add(client, variant, 1, headers=customer_headers)
    assert r.status_code == 201
    assert r.json()["cart_token"] is None
    assert "mercato_cart" not in r.headers.get("set-cookie", "")
    r = await add(client, variant, 1, headers=customer_headers)
    assert r.json()["lines"][0]["quantity"] == 2
    assert await counts(app) == (1, 1, 2)


async def test_lines_of_another_cart_are_not_found(
    app: FastAPI, client: httpx.AsyncClient, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    variant = await new_variant(app, stock=10)
    mine = (await add(client, variant, 2)).json()
    line_id = mine["lines"][0]["id"]
    other = make_client()
    await add(other, variant, 1)
    before = await counts(app)

    assert_problem(
        await other.patch(f"/api/cart/items/{line_id}", json={"quantity": 5}), 404, "not_found"
    )
    assert_problem(await other.delete(f"/api/cart/items/{line_id}"), 404, "not_found")
    # A guest without any cart has no lines at all.
    assert_problem(await make_client().delete(f"/api/cart/items/{line_id}"), 404, "not_found")
    assert await counts(app) == before
    assert (await client.get("/api/cart")).json()["lines"][0]["quantity"] == 2


async def test_forged_or_stale_tokens_are_refused(
    app: FastAPI, client: httpx.AsyncClient, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    variant = await new_variant(app, stock=10)
    cart = (await add(client, variant, 1)).json()
    real = cart["cart_token"]
    before = await counts(app)
    forged = [
        "garbage",
        real[:-2] + ("AA" if not real.endswith("AA") else "BB"),
        service.sign_cart_token("some-other-secret", cart["id"]),
        service.sign_cart_token("test-secret-key", "crt_unknowncart"),  # well signed, no such cart
        "x" * 5000,
    ]
    for token in forged:
        for method, url, body in (
            ("GET", "/api/cart", None),
            ("POST", "/api/cart/items", {"variant_id": variant, "quantity": 1}),
            ("DELETE", "/api/cart", None),
        ):
            c = make_client()
            r = await c.request(method, url, json=body, headers={"X-Cart-Token": token})
            assert_problem(r, 400, "invalid_cart_token")
    assert await counts(app) == before

    # A cookie naming a cart that is gone is refused and cleared, so the browser recovers.
    browser = make_client()
    browser.cookies.set("mercato_cart", forged[3])
    r = await browser.get("/api/cart")
    assert_problem(r, 400, "invalid_cart_token")
    assert "mercato_cart=" in r.headers["set-cookie"]
    assert "max-age=0" in r.headers["set-cookie"].lower()
    assert await counts(app) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": -3}, "quantity"),
        ({"quantity": 100}, "quantity"),  # one past the default maximum of 99
        ({"quantity": 10**30}, "quantity"),
        ({"quantity": "2"}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"variant_id": None}, "variant_id"),
        ({"variant_id": ""}, "variant_id"),
        ({"variant_id": "v" * 41}, "variant_id"),
    ],
)
async def test_invalid_add_bodies_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    variant = await new_variant(app, stock=1000)
    await add(client, variant, 1)
    before = await counts(app)
    r = await client.post("/api/cart/items", json={"variant_id": variant, "quantity": 1, **body})
    # Past the shop's limit (a setting) is a well-formed quantity refused by a rule.
    over = type(body.get("quantity")) is int and body["quantity"] > 99
    problem = assert_problem(r, 422, "quantity_limit" if over else "validation_error")
    assert field in [e["field"] for e in problem["errors"]]  # type: ignore[attr-defined]
    assert await counts(app) == before


async def test_bad_add_targets_change_nothing(app: FastAPI, client: httpx.AsyncClient) -> None:
    kept = await new_variant(app, stock=10)
    await add(client, kept, 1)
    archived = await new_variant(app, stock=10)
    await archive(app, archived)
    inactive = await new_variant(app, stock=10, active=False)
    draft = await new_variant(app, stock=10, status="draft")
    sold_out = await new_variant(app, stock=0)
    scarce = await new_variant(app, stock=3)
    before = await counts(app)

    assert_problem(await add(client, "var_doesnotexist"), 422, "unknown_variant")
    for variant in (archived, inactive, draft):
        assert_problem(await add(client, variant), 422, "variant_unavailable")
    body = assert_problem(await add(client, sold_out), 409, "out_of_stock")
    assert body["available"] == 0
    body = assert_problem(await add(client, scarce, 5), 409, "out_of_stock")
    assert body["available"] == 3
    # Growing an existing line past the stock is refused the same way.
    assert (await add(client, scarce, 2)).status_code == 201
    before = await counts(app)
    body = assert_problem(await add(client, scarce, 2), 409, "out_of_stock")
    assert body["available"] == 3
    r = await client.post(
        "/api/cart/items", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(r, 400, "malformed_json")
    assert await counts(app) == before


async def test_quantity_limit_on_a_growing_line(app: FastAPI, client: httpx.AsyncClient) -> None:
    variant = await new_variant(app, stock=1000)
    await add(client, variant, 60)
    before = await counts(app)
    body = assert_problem(await add(client, variant, 40), 422, "quantity_limit")
    assert body["max_quantity"] == 99
    assert await counts(app) == before
    assert (await add(client, variant, 39)).json()["lines"][0]["quantity"] == 99


async def test_patch_bounds_and_stock(app: FastAPI, client: httpx.AsyncClient) -> None:
    variant = await new_variant(app, stock=5)
    cart = (await add(client, variant, 2)).json()
    url = f"/api/cart/items/{cart['lines'][0]['id']}"
    before = await counts(app)
    for bad in (0, -1, 100, 10**20):
        r = await client.patch(url, json={"quantity": bad})
        problem = assert_problem(r, 422, "quantity_limit" if bad > 99 else "validation_error")
        assert problem["errors"][0]["field"] == "quantity"  # type: ignore[index]
    body = assert_problem(await client.patch(url, json={"quantity": 6}), 409, "out_of_stock")
    assert body["available"] == 5
    assert_problem(await client.patch(url, json={}), 422, "validation_error")
    assert await counts(app) == before
    # Lowering is always allowed, even when the line is short.
    await set_stock(app, variant, 1)
    r = await client.patch(url, json={"quantity": 1})
    assert r.status_code == 200 and r.json()["lines"][0]["quantity"] == 1


async def test_cart_line_count_limit(app: FastAPI, client: httpx.AsyncClient) -> None:
    rt(app).settings.cart_max_lines = 2
    variants = [await new_variant(app, stock=5) for _ in range(3)]
    await add(client, variants[0])
    await add(client, variants[1])
    before = await counts(app)
    assert_problem(await add(client, variants[2]), 422, "cart_full")
    assert await counts(app) == before
    # Growing an existing line is still fine.
    assert (await add(client, variants[0])).status_code == 201


async def test_currency_mismatch(app: FastAPI, client: httpx.AsyncClient) -> None:
    eur = await new_variant(app, stock=5)
    usd = await new_variant(app, stock=5, currency="USD")
    await add(client, eur)
    before = await counts(app)
    assert_problem(await add(client, usd), 422, "currency_mismatch")
    assert await counts(app) == before
    await client.delete("/api/cart")
    r = await add(client, usd)
    assert r.status_code == 201 and r.json()["currency"] == "USD"


async def test_price_change_is_flagged(app: FastAPI, client: httpx.AsyncClient) -> None:
    variant = await new_variant(app, price=1999, stock=10)
    other = await new_variant(app, price=500, stock=10)
    await add(client, variant, 2)
    await add(client, other, 1)
    await set_price(app, variant, 2499)

    cart = (await client.get("/api/cart")).json()
    line = line_for(cart, variant)
    assert line["price_changed"] is True
    assert line["unit_price_seen"] == "19.99"
    assert line["unit_price"] == "24.99"
    assert line["line_total"] == "49.98"
    assert line_for(cart, other)["price_changed"] is False
    assert cart["subtotal"] == "54.98"
    assert any("19.99" in n and "24.99" in n for n in cart["notices"])

    # Adding it again: the shopper has now seen the new price.
    cart = (await add(client, variant, 1)).json()
    assert line_for(cart, variant)["price_changed"] is False
    assert line_for(cart, variant)["unit_price_seen"] == "24.99"


async def test_stock_flags(app: FastAPI, client: httpx.AsyncClient) -> None:
    variant = await new_variant(app, stock=50)
    await add(client, variant, 4)
    line = (await client.get("/api/cart")).json()["lines"][0]
    assert line["stock_status"] == "in_stock" and line["available_hint"] is None

    await set_stock(app, variant, 5)  # low: at the threshold
    cart = (await client.get("/api/cart")).json()
    assert cart["lines"][0]["stock_status"] == "in_stock"
    assert cart["lines"][0]["available_hint"] and "5" in cart["lines"][0]["available_hint"]

    await set_stock(app, variant, 3)
    cart = (await client.get("/api/cart")).json()
    line = cart["lines"][0]
    assert line["stock_status"] == "short" and line["available"] == 3
    assert any("3" in n for n in cart["notices"])

    await set_stock(app, variant, 0)
    cart = (await client.get("/api/cart")).json()
    line = cart["lines"][0]
    assert line["stock_status"] == "out_of_stock" and line["available"] == 0
    assert any("out of stock" in n for n in cart["notices"])
    assert line["quantity"] == 4  # the cart keeps the line; checkout decides


async def test_archived_after_adding(app: FastAPI, client: httpx.AsyncClient) -> None:
    gone = await new_variant(app, price=1000, stock=5)
    kept = await new_variant(app, price=300, stock=5)
    await add(client, gone, 1)
    await add(client, kept, 1)
    await archive(app, gone)
    cart = (await client.get("/api/cart")).json()
    line = line_for(cart, gone)
    assert line["purchasable"] is False and line["stock_status"] == "out_of_stock"
    assert cart["subtotal"] == "3.00"
    assert any("no longer available" in n for n in cart["notices"])
    # It can be removed or lowered, not raised.
    r = await client.patch(f"/api/cart/items/{line['id']}", json={"quantity": 2})
    assert_problem(r, 422, "variant_unavailable")
