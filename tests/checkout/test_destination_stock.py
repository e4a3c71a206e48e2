"""Stock for where the shopper's goods would go: a variant stocked only in Lyon is available
for France and not for Germany on the product, the availability answer, the cart and the
quote; a checkout to Germany refuses it before any payment; moving stock changes the answer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mercato.checkout.demo import seed_checkout
from mercato.db import Database
from mercato.inventory import service as inventory
from mercato.payments.models import Intent
from tests.checkout.conftest import (
    BODY,
    assert_problem,
    cart_lines,
    fill_cart,
    make_customer,
    post_checkout,
    stock,
)
from tests.factories import make_product

FRANCE = {**BODY["shipping_address"], "city": "Lyon", "postal_code": "69001", "country": "FR"}


@pytest.fixture
async def lyon_only(db: Database) -> tuple[str, str]:
    """The demo's three warehouses (narrowed), and a product whose one variant only Lyon has."""
    async with db.transaction() as uow:
        for code, name, countries in (
            ("BER", "Berlin", ["AT", "DE"]),
            ("LYO", "Lyon", ["ES", "FR", "IT"]),
            ("LDN", "London", ["GB", "IE"]),
        ):
            await inventory.create_warehouse(uow, code=code, name=name, countries=countries)
        product_id, [variant_id] = await make_product(uow, variants=[{"price": 1999}])
    async with db.transaction() as uow:
        await inventory.receive(uow, variant_id, "LYO", 10)
    await seed_checkout(db, currency="EUR")
    return product_id, variant_id


async def _variant(client: httpx.AsyncClient, product_id: str, country: str) -> dict[str, Any]:
    r = await client.get(f"/api/products/{product_id}", params={"country": country})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["country"] == country.upper()
    return {**body["variants"][0], "product_in_stock": body["in_stock"]}


async def test_product_and_availability_answer_per_destination(
    client: httpx.AsyncClient, lyon_only: tuple[str, str]
) -> None:
    product_id, variant_id = lyon_only
    fr = await _variant(client, product_id, "FR")
    assert (fr["in_stock"], fr["available_elsewhere"], fr["product_in_stock"]) == (
        True,
        False,
        True,
    )
    de = await _variant(client, product_id, "de")
    assert (de["in_stock"], de["available_elsewhere"], de["product_in_stock"]) == (
        False,
        True,
        False,
    )
    # Without a country: the shop's default (Germany).
    r = await client.get(f"/api/products/{product_id}")
    assert r.json()["country"] == "DE" and r.json()["available_elsewhere"] is True

    url = "/api/inventory/availability"
    r = await client.get(url, params={"variant_ids": variant_id, "country": "FR"})
    assert r.json()[variant_id] == {
        "in_stock": True,
        "available_hint": None,
        "available_elsewhere": False,
    }
    r = await client.get(url, params={"variant_ids": variant_id, "country": "DE"})
    assert r.json()[variant_id]["in_stock"] is False
    assert r.json()[variant_id]["available_elsewhere"] is True


@pytest.mark.parametrize(
    ("country", "code"),
    [("US", "country_not_served"), ("ZZ", "unknown_country"), ("D1", "validation_error")],
)
async def test_a_country_not_served_or_malformed_is_a_problem(
    client: httpx.AsyncClient, lyon_only: tuple[str, str], country: str, code: str
) -> None:
    product_id, variant_id = lyon_only
    for url, params in (
        (f"/api/products/{product_id}", {"country": country}),
        ("/api/inventory/availability", {"variant_ids": variant_id, "country": country}),
        ("/api/cart", {"country": country}),
    ):
        r = await client.get(url, params=params)
        body = assert_problem(r, 422, code)
        if code == "country_not_served":
            assert "Germany" not in body["detail"] and "DE" in body["detail"]
            assert "DE" in body["served_countries"] and "US" not in body["served_countries"]


async def test_cart_and_quote_flag_a_line_that_cannot_reach_the_destination(
    db: Database, client: httpx.AsyncClient, lyon_only: tuple[str, str]
) -> None:
    _, variant_id = lyon_only
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant_id, 2))

    r = await client.get("/api/cart", params={"country": "FR"}, headers=buyer.headers)
    assert r.json()["country"] == "FR"
    assert r.json()["lines"][0]["stock_status"] == "in_stock"
    r = await client.get("/api/cart", params={"country": "DE"}, headers=buyer.headers)
    line = r.json()["lines"][0]
    assert (line["stock_status"], line["available"]) == ("not_deliverable", 0)
    assert any("not available for delivery to Germany" in n for n in r.json()["notices"])

    async def quote(country: str) -> dict[str, Any]:
        body = {"shipping_address": {"country": country}, "shipping_method": "standard"}
        r = await client.post("/api/checkout/quote", json=body, headers=buyer.headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    assert (await quote("FR"))["not_deliverable"] == []
    flagged = await quote("DE")
    assert flagged["country"] == "DE"
    assert [x["variant_id"] for x in flagged["not_deliverable"]] == [variant_id]
    r = await client.post(
        "/api/checkout/quote",
        json={"shipping_address": {"country": "US"}, "shipping_method": "standard"},
        headers=buyer.headers,
    )
    assert_problem(r, 422, "country_not_served")


async def _count(db: Database, table: Any) -> int:
    async with db.transaction() as uow:
        return int(await uow.scalar(select(func.count()).select_from(table)) or 0)


async def test_checkout_to_germany_refuses_before_any_payment(
    db: Database, client: httpx.AsyncClient, lyon_only: tuple[str, str]
) -> None:
    _, variant_id = lyon_only
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant_id, 2))
    before = (
        await stock(db, variant_id),
        await _count(db, inventory.RESERVATIONS),
        await _count(db, inventory.MOVEMENTS),
    )

    r = await post_checkout(client, buyer, "to-germany")
    body = assert_problem(r, 409, "not_deliverable")
    assert body["country"] == "DE" and "Germany" in body["detail"]
    assert body["lines"] == [
        {"variant_id": variant_id, "requested": 2, "available": 0, "available_elsewhere": True}
    ]
    # Nothing held, moved or charged; the cart is as it was.
    assert (
        await stock(db, variant_id),
        await _count(db, inventory.RESERVATIONS),
        await _count(db, inventory.MOVEMENTS),
    ) == before
    assert await _count(db, Intent.__table__) == 0
    assert await cart_lines(db, buyer.id) == [(variant_id, 2)]
    # The same key answers the same refusal.
    again = await post_checkout(client, buyer, "to-germany")
    assert_problem(again, 409, "not_deliverable")

    # To France the same cart goes through.
    r = await post_checkout(client, buyer, "to-france", {**BODY, "shipping_address": FRANCE})
    assert r.status_code == 201, r.text


async def test_moving_stock_changes_the_answer(
    db: Database, client: httpx.AsyncClient, lyon_only: tuple[str, str]
) -> None:
    product_id, variant_id = lyon_only
    assert (await _variant(client, product_id, "DE"))["in_stock"] is False
    # Two units move from Lyon to Berlin.
    async with db.transaction() as uow:
        await inventory.adjust(uow, variant_id, "LYO", -2, "moved to Berlin")
        await inventory.receive(uow, variant_id, "BER", 2)
    de = await _variant(client, product_id, "DE")
    assert (de["in_stock"], de["stock_hint"], de["available_elsewhere"]) == (
        True,
        "Only 2 left",
        False,
    )
    # And all of Lyon's go: France is out of reach, Germany still has Berlin's.
    async with db.transaction() as uow:
        await inventory.adjust(uow, variant_id, "LYO", -8, "moved to Berlin")
        await inventory.receive(uow, variant_id, "BER", 8)
    fr = await _variant(client, product_id, "FR")
    assert (fr["in_stock"], fr["available_elsewhere"]) == (False, True)
