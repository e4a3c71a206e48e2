"""A shop configured in another currency (``MERCATO_CURRENCY=GBP``, or JPY, which has no
decimals) sells in it end to end: the demo catalog, the product listing and search with their
price filters and facets, the cart, shipping, the checkout and its order, promo codes, the
shop's pages and the back office's forms. Nothing falls back to euros."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mercato.money import to_minor
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.web.admin_helpers import HTML, api_login, place_order, stocked_variant
from tests.web.conftest import SHOPPER_EMAIL, STAFF_EMAIL


@dataclass(frozen=True)
class Case:
    symbol: str
    amount: str  # how an amount is written in the API
    zero: str
    shipping: tuple[str, str]  # the demo's standard delivery: its price, free from
    price_edges: tuple[str, ...]  # where the price facet's buckets may start and end
    floor: str  # a minimum price some demo products are above
    new_price: str
    inexact: str  # an amount with more decimals than the currency has
    promo_minimum: str


CASES = {
    "GBP": Case(
        symbol="£",
        amount=r"\d+\.\d{2}",
        zero="0.00",
        shipping=("4.90", "50.00"),
        price_edges=(
            *("0.00", "10.00", "25.00", "50.00", "100.00", "250.00", "500.00"),
            *("1000.00", "2500.00", "5000.00"),
        ),
        floor="20.00",
        new_price="15.00",
        inexact="15.001",
        promo_minimum="30.00",
    ),
    "JPY": Case(
        symbol="¥",
        amount=r"\d+",
        zero="0",
        shipping=("490", "5000"),
        price_edges=(
            *("0", "1000", "2500", "5000", "10000", "25000", "50000", "100000"),
            *("250000", "500000"),
        ),
        floor="2000",
        new_price="1500",
        inexact="1500.5",
        promo_minimum="3000",
    ),
}


@pytest.fixture(params=sorted(CASES))
def currency(request: pytest.FixtureRequest) -> str:
    code: str = request.param
    return code


@pytest.fixture
def settings(settings: Settings, currency: str) -> Settings:
    # Built (and so validated) as a process builds it from MERCATO_CURRENCY.
    return Settings(**{**settings.model_dump(), "currency": currency})


def _minor(amount: str, currency: str) -> int:
    return to_minor(amount, currency)


async def _signed_in(make_client: Any, email: str) -> httpx.AsyncClient:
    client: httpx.AsyncClient = make_client()
    await api_login(client, email)
    return client


async def test_the_api_sells_in_the_shops_currency(
    client: httpx.AsyncClient, shop: Runtime, make_client: Any, currency: str
) -> None:
    case = CASES[currency]
    assert shop.settings.currency == currency

    # The demo catalog, as the product listing answers it.
    r = await client.get("/api/products", params={"limit": 100})
    assert r.status_code == 200, r.text
    products = r.json()["items"]
    assert products
    for product in products:
        assert product["currency"] == currency
        for variant in product["variants"]:
            assert variant["currency"] == currency
            assert re.fullmatch(case.amount, variant["price"]), variant["price"]

    # Search: hits and price facets in the shop's currency, its steps suiting it.
    r = await client.get("/api/search", params={"facets": "price"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hits"] and {h["currency"] for h in body["hits"]} == {currency}
    buckets = body["facets"]["price"]
    assert sum(b["count"] for b in buckets) == body["total"]
    for bucket in buckets:
        assert bucket["from"] in case.price_edges
        assert bucket["to"] is None or bucket["to"] in case.price_edges

    # A price filter without a currency is in the shop's.
    floor = _minor(case.floor, currency)
    r = await client.get("/api/search", params={"min_price": case.floor, "limit": 100})
    assert r.status_code == 200, r.text
    above = r.json()
    assert above["total"] > 0
    assert all(_minor(h["min_price"], currency) >= floor for h in above["hits"])
    r = await client.get("/api/search", params={"min_price": case.floor, "currency": "EUR"})
    assert r.json()["total"] == 0  # nothing here is priced in euros
    r = await client.get("/api/products", params={"min_price": case.floor, "limit": 100})
    assert r.status_code == 200, r.text
    listed = r.json()["items"]
    assert listed and all(_minor(p["min_price"], currency) >= floor for p in listed)

    # Staff: a product and a promo code without a currency are in the shop's.
    staff = await _signed_in(make_client, STAFF_EMAIL)
    category = (await client.get("/api/categories")).json()["items"][0]["id"]
    product = {
        "title": "Currency kettle",
        "category_id": category,
        "variants": [{"sku": "CUR-KETTLE-1", "price": case.new_price}],
    }
    r = await staff.post("/api/admin/products", json=product)
    assert r.status_code == 201, r.text
    assert r.json()["currency"] == currency
    assert r.json()["variants"][0]["price"] == case.new_price
    inexact = {**product, "variants": [{"sku": "CUR-KETTLE-2", "price": case.inexact}]}
    r = await staff.post("/api/admin/products", json=inexact)
    assert r.status_code == 422, r.text
    promo = {"code": "TENOFF", "kind": "percent", "value": "10", "min_subtotal": case.inexact}
    r = await staff.post("/api/admin/checkout/promo-codes", json=promo)
    assert r.status_code == 422, r.text
    promo["min_subtotal"] = case.promo_minimum
    r = await staff.post("/api/admin/checkout/promo-codes", json=promo)
    assert r.status_code == 201, r.text
    assert r.json()["min_subtotal"] == case.promo_minimum and r.json()["currency"] is None

    # The shopper: an empty cart, shipping, a cart and an order, all in the shop's currency.
    shopper = await _signed_in(make_client, SHOPPER_EMAIL)
    r = await shopper.get("/api/cart")
    assert r.status_code == 200 and r.json()["subtotal"] == case.zero
    r = await shopper.get("/api/checkout/shipping-methods", params={"country": "DE"})
    methods = {m["code"]: m for m in r.json()["methods"]}
    assert {m["currency"] for m in methods.values()} == {currency}
    assert (methods["standard"]["price"], methods["standard"]["free_over"]) == case.shipping
    for band in methods["express"]["weight_bands"]:
        assert re.fullmatch(case.amount, band["price"])
    variant = await stocked_variant(shop)
    assert variant.currency == currency
    placed = await place_order(shopper, variant)
    assert placed["currency"] == currency
    assert _minor(placed["total"], currency) >= variant.price
    r = await shopper.get(f"/api/orders/{placed['order_id']}")
    assert r.status_code == 200, r.text
    totals, payment = r.json()["totals"], r.json()["payment"]
    assert totals["currency"] == currency and totals["total"] == placed["total"]
    assert re.fullmatch(case.amount, totals["shipping"])
    assert payment["currency"] == currency and payment["authorized"] == placed["total"]


async def test_pages_show_the_shops_currency(
    client: httpx.AsyncClient, shop: Runtime, make_client: Any, currency: str
) -> None:
    case = CASES[currency]

    def shows_only_the_shops(html: str) -> None:
        assert case.symbol in html
        assert "€" not in html

    r = await client.get("/", headers=HTML)
    assert r.status_code == 200
    shows_only_the_shops(r.text)
    r = await client.get("/search", headers=HTML)
    assert r.status_code == 200
    shows_only_the_shops(r.text)
    # The price facet's links and the chip of a price filter, in the shop's currency.
    first_edge = case.price_edges[1]
    assert f"Up to {case.symbol}" in r.text or f"{case.symbol}{first_edge} –" in r.text
    r = await client.get("/search", params={"min_price": case.floor}, headers=HTML)
    assert r.status_code == 200
    assert f"Price: {case.symbol}{case.floor} and up" in r.text

    variant = await stocked_variant(shop)
    r = await client.get(f"/p/{variant.product_id}", headers=HTML)
    assert r.status_code == 200
    shows_only_the_shops(r.text)

    shopper = await _signed_in(make_client, SHOPPER_EMAIL)
    r = await shopper.post("/api/cart/items", json={"variant_id": variant.id, "quantity": 1})
    assert r.status_code == 201, r.text
    subtotal = r.json()["subtotal"]
    r = await shopper.get("/cart", headers=HTML)
    assert r.status_code == 200
    shows_only_the_shops(r.text)
    assert f'data-testid="cart-subtotal">{case.symbol}{subtotal}<' in r.text

    # The back office offers the shop's currency for new products and shipping methods.
    staff = await _signed_in(make_client, STAFF_EMAIL)
    r = await staff.get("/admin/products/new", headers=HTML)
    assert r.status_code == 200
    assert re.search(rf'name="currency" type="text" value="{currency}"', r.text)
    r = await staff.get("/admin/shipping", headers=HTML)
    assert r.status_code == 200
    assert re.search(rf'name="currency" type="text" value="{currency}"', r.text)
    shows_only_the_shops(r.text)
    promo = {"code": "OVERMIN", "kind": "percent", "value": "5", "min_subtotal": case.floor}
    r = await staff.post("/api/admin/checkout/promo-codes", json=promo)
    assert r.status_code == 201, r.text
    r = await staff.get("/admin/promos", headers=HTML)
    assert r.status_code == 200
    assert f"{case.symbol}{case.floor}" in r.text
    assert "€" not in r.text
