"""Delivery estimates through the API and the pages: the serving warehouse's handling time,
each method's transit days, the shop's cut-off and business days.

The shop: Berlin (BER) ships to Germany and France and dispatches in one business day; Lyon
(LYO) ships to France only and takes three. The demo's methods: standard (2 to 5 business days,
listed first) and express (1 to 2). 3 December 2026 is a Thursday; the shop is in Berlin
(UTC+1 in December) with a 14:00 cut-off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from mercato.checkout.demo import seed_checkout
from mercato.db import Database, clock_override
from mercato.inventory import service as inventory
from tests.checkout.conftest import (
    Customer,
    assert_problem,
    fill_cart,
    make_customer,
    staff_headers_for,
)
from tests.factories import make_product
from tests.web.shop_helpers import client_log_in

HTML = {"accept": "text/html"}
THURSDAY_MORNING = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # 10:00 in Berlin


@contextmanager
def shop_time(now: datetime) -> Iterator[None]:
    with clock_override(lambda: now):
        yield


@dataclass
class Item:
    product_id: str
    variant_id: str


@dataclass
class Shop:
    berlin: Item  # stocked in Berlin only
    lyon: Item  # stocked in Lyon only
    both: Item  # stocked in both, more in Lyon


async def _item(db: Database, stock: dict[str, int]) -> Item:
    async with db.transaction() as uow:
        product_id, [variant_id] = await make_product(uow, variants=[{"price": 1999}])
        for warehouse, units in stock.items():
            await inventory.receive(uow, variant_id, warehouse, units)
    return Item(product_id, variant_id)


@pytest.fixture
async def shop(db: Database) -> Shop:
    async with db.transaction() as uow:
        await inventory.create_warehouse(
            uow, code="BER", name="Berlin", countries=["DE", "FR"], handling_days=1
        )
        await inventory.create_warehouse(
            uow, code="LYO", name="Lyon", countries=["FR"], handling_days=3
        )
    await seed_checkout(db, currency="EUR")
    return Shop(
        berlin=await _item(db, {"BER": 10}),
        lyon=await _item(db, {"LYO": 10}),
        both=await _item(db, {"BER": 5, "LYO": 20}),
    )


def arrives(earliest: str, latest: str) -> dict[str, str]:
    return {"earliest": earliest, "latest": latest}


async def delivery(
    client: httpx.AsyncClient, item: Item, country: str, now: datetime = THURSDAY_MORNING
) -> dict[str, Any]:
    with shop_time(now):
        r = await client.get(
            f"/api/products/{item.product_id}/delivery", params={"country": country}
        )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# --------------------------------------------------------------------------------------------
# A product


async def test_the_serving_warehouse_decides_per_destination(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    # Berlin: counts from Thursday, leaves Friday.
    from_berlin = {
        "product_id": shop.berlin.product_id,
        "variant_id": shop.berlin.variant_id,
        "country": "DE",
        "arrives": arrives("2026-12-08", "2026-12-11"),
        "shipping_options": [
            {
                "code": "standard",
                "name": "Standard delivery",
                "delivery_days": {"min": 2, "max": 5},
                "arrives": arrives("2026-12-08", "2026-12-11"),
            },
            {
                "code": "express",
                "name": "Express delivery",
                "delivery_days": {"min": 1, "max": 2},
                "arrives": arrives("2026-12-07", "2026-12-08"),
            },
        ],
    }
    assert await delivery(client, shop.berlin, "DE") == from_berlin
    assert (await delivery(client, shop.berlin, "FR"))["arrives"] == from_berlin["arrives"]
    # Lyon takes three days to dispatch: leaves Tuesday.
    lyon_fr = await delivery(client, shop.lyon, "FR")
    assert lyon_fr["arrives"] == arrives("2026-12-10", "2026-12-15")
    assert lyon_fr["shipping_options"][1]["arrives"] == arrives("2026-12-09", "2026-12-10")
    # Lyon does not ship to Germany: no estimate.
    assert await delivery(client, shop.lyon, "DE") == {
        "product_id": shop.lyon.product_id,
        "variant_id": None,
        "country": "DE",
        "arrives": None,
        "shipping_options": [],
    }
    # Stock in both: Germany is served from Berlin, France from Lyon (the fuller).
    assert (await delivery(client, shop.both, "DE"))["arrives"] == arrives(
        "2026-12-08", "2026-12-11"
    )
    assert (await delivery(client, shop.both, "FR"))["arrives"] == arrives(
        "2026-12-10", "2026-12-15"
    )


async def test_the_cut_off_and_the_weekend(client: httpx.AsyncClient, shop: Shop) -> None:
    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 12, day, hour - 1, minute, tzinfo=UTC)  # Berlin wall time

    async def standard(now: datetime) -> dict[str, str]:
        found: dict[str, str] = (await delivery(client, shop.berlin, "DE", now))["arrives"]
        return found

    # Thursday before 14:00 counts from Thursday (leaves Friday); from 14:00 on, from Friday.
    assert await standard(at(3, 13, 59)) == arrives("2026-12-08", "2026-12-11")
    assert await standard(at(3, 14)) == arrives("2026-12-09", "2026-12-14")
    # Friday after the cut-off, Saturday and Sunday all count from Monday (leaves Tuesday).
    for now in (at(4, 14), at(5, 10), at(6, 23, 59)):
        assert await standard(now) == arrives("2026-12-10", "2026-12-15"), now


async def test_asking_for_a_variant_and_refusals(client: httpx.AsyncClient, shop: Shop) -> None:
    with shop_time(THURSDAY_MORNING):
        r = await client.get(
            f"/api/products/{shop.both.product_id}/delivery",
            params={"country": "fr", "variant": shop.both.variant_id},
        )
        assert r.status_code == 200
        assert r.json()["variant_id"] == shop.both.variant_id
        assert r.json()["country"] == "FR"
        url = f"/api/products/{shop.both.product_id}/delivery"
        assert_problem(await client.get(url, params={"variant": "var_nope"}), 404, "not_found")
        assert_problem(await client.get("/api/products/prd_nope/delivery"), 404, "not_found")
        r = await client.get(url, params={"country": "US"})
        body = assert_problem(r, 422, "country_not_served")
        assert body["served_countries"] == ["DE", "FR"]
        # Without a country: the shop's default, Germany.
        r = await client.get(url)
        assert r.json()["country"] == "DE"


# --------------------------------------------------------------------------------------------
# A cart


async def _quote(client: httpx.AsyncClient, customer: Customer, country: str) -> dict[str, Any]:
    body = {"shipping_address": {"country": country}, "shipping_method": "standard"}
    with shop_time(THURSDAY_MORNING):
        r = await client.post("/api/checkout/quote", json=body, headers=customer.headers)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def test_a_cart_from_two_warehouses_arrives_with_its_latest_line(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    customer = await make_customer(db)
    await fill_cart(db, customer.id, (shop.berlin.variant_id, 1))
    options = (await _quote(client, customer, "FR"))["shipping_options"]
    assert [o["arrives"] for o in options] == [
        arrives("2026-12-08", "2026-12-11"),
        arrives("2026-12-07", "2026-12-08"),
    ]
    # A line from Lyon: the parcel leaves when Lyon's line is ready.
    await fill_cart(db, customer.id, (shop.lyon.variant_id, 2))
    options = (await _quote(client, customer, "FR"))["shipping_options"]
    assert [(o["code"], o["arrives"]) for o in options] == [
        ("standard", arrives("2026-12-10", "2026-12-15")),
        ("express", arrives("2026-12-09", "2026-12-10")),
    ]
    # Germany cannot get the Lyon line: priced, but no date.
    options = (await _quote(client, customer, "DE"))["shipping_options"]
    assert [o["arrives"] for o in options] == [None, None]


async def test_a_line_larger_than_one_warehouse_holds_waits_for_the_slowest(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    customer = await make_customer(db)
    # 5 in Berlin, 20 in Lyon; 8 to Germany cannot be filled (Lyon does not ship there).
    await fill_cart(db, customer.id, (shop.both.variant_id, 8))
    assert (await _quote(client, customer, "FR"))["shipping_options"][0]["arrives"] == arrives(
        "2026-12-10", "2026-12-15"
    )
    assert (await _quote(client, customer, "DE"))["shipping_options"][0]["arrives"] is None


# --------------------------------------------------------------------------------------------
# Handling days: set by staff


async def test_staff_set_a_warehouses_handling_days(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    staff = await staff_headers_for(db)
    base = "/api/admin/inventory/warehouses"
    r = await client.post(
        base, json={"code": "HAM", "name": "Hamburg", "countries": ["DE"]}, headers=staff
    )
    assert r.status_code == 201 and r.json()["handling_days"] == 1
    r = await client.post(
        base,
        json={"code": "MUC", "name": "Munich", "countries": ["DE"], "handling_days": 0},
        headers=staff,
    )
    assert r.status_code == 201 and r.json()["handling_days"] == 0
    for bad in (-1, 31, 1.5, "2"):
        r = await client.patch(f"{base}/BER", json={"handling_days": bad}, headers=staff)
        assert_problem(r, 422, "validation_error")
    assert_problem(
        await client.patch(f"{base}/NOPE", json={"handling_days": 2}, headers=staff),
        404,
        "not_found",
    )
    assert (await client.patch(f"{base}/BER", json={"handling_days": 2})).status_code == 401

    r = await client.patch(f"{base}/ber", json={"handling_days": 0}, headers=staff)
    assert r.status_code == 200 and r.json()["handling_days"] == 0
    listed = {w["code"]: w["handling_days"] for w in (await client.get(base, headers=staff)).json()}
    assert listed == {"BER": 0, "HAM": 1, "LYO": 3, "MUC": 0}
    # Leaves the same Thursday now.
    assert (await delivery(client, shop.berlin, "DE"))["arrives"] == arrives(
        "2026-12-07", "2026-12-10"
    )


# --------------------------------------------------------------------------------------------
# The pages


async def test_pages_say_when_it_arrives(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    with shop_time(THURSDAY_MORNING):
        page = await client.get(f"/p/{shop.both.product_id}", headers=HTML)
        assert page.status_code == 200
        assert "Arrives Tue 8 – Fri 11 Dec" in page.text
        client.cookies.set("mercato_deliver_to", "FR")
        page = await client.get(f"/p/{shop.both.product_id}", headers=HTML)
        assert "Arrives Thu 10 – Tue 15 Dec" in page.text
        client.cookies.set("mercato_deliver_to", "DE")
        page = await client.get(f"/p/{shop.lyon.product_id}", headers=HTML)
        assert page.status_code == 200 and 'data-testid="arrives"' not in page.text

    customer = await make_customer(db, "pages")
    await fill_cart(db, customer.id, (shop.berlin.variant_id, 1), (shop.lyon.variant_id, 1))
    await client_log_in(client, customer.user.email)
    with shop_time(THURSDAY_MORNING):
        cart = await client.get("/cart", params={"country": "FR"}, headers=HTML)
        assert cart.status_code == 200
        assert "Arrives Thu 10 – Tue 15 Dec" in cart.text
        cart = await client.get("/cart", params={"country": "DE"}, headers=HTML)
        assert 'data-testid="arrives"' not in cart.text

        form = await client.get("/checkout/summary", params={"country": "FR"}, headers=HTML)
        assert form.status_code == 200
        assert "Arrives Thu 10 – Tue 15 Dec" in form.text  # standard
        assert "Arrives Wed 9 – Thu 10 Dec" in form.text  # express
