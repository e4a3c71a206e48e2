"""Staff setup of shipping, tax, promo codes and the price setting; the demo seed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mercato.checkout import service
from mercato.checkout.demo import seed_checkout
from mercato.checkout.models import methods, promo_codes, tax_rates, zones
from mercato.db import Database
from mercato.inventory.demo import DEMO_WAREHOUSES
from tests.checkout.conftest import (
    Shop,
    assert_problem,
    fill_cart,
    make_customer,
    make_variant,
    staff_headers_for,
)

ADMIN = "/api/admin/checkout"


async def table_sizes(db: Database) -> tuple[int, ...]:
    async with db.transaction() as uow:
        return tuple(
            [
                int(await uow.scalar(select(func.count()).select_from(t)) or 0)
                for t in (zones, methods, tax_rates, promo_codes)
            ]
        )


async def test_staff_set_up_shipping_tax_and_promos(
    client: httpx.AsyncClient, db: Database
) -> None:
    staff = await staff_headers_for(db)
    zone = await client.post(
        f"{ADMIN}/zones", json={"name": "Nordics", "countries": ["se", "DK"]}, headers=staff
    )
    assert zone.status_code == 201, zone.text
    assert zone.json()["countries"] == ["DK", "SE"]
    method = await client.post(
        f"{ADMIN}/shipping-methods",
        json={
            "zone_id": zone.json()["id"],
            "code": "express",
            "name": "Express",
            "kind": "weight_band",
            "currency": "EUR",
            "weight_bands": [
                {"up_to_grams": 2000, "price": "9.90"},
                {"up_to_grams": None, "price": "19.90"},
            ],
        },
        headers=staff,
    )
    assert method.status_code == 201, method.text
    assert method.json()["weight_bands"][1] == {"up_to_grams": None, "price": "19.90"}
    listed = await client.get(f"{ADMIN}/shipping-methods", headers=staff)
    assert [m["code"] for m in listed.json()] == ["express"]
    public = await client.get("/api/checkout/shipping-methods", params={"country": "SE"})
    assert [m["code"] for m in public.json()["methods"]] == ["express"]

    rate = await client.put(
        f"{ADMIN}/tax-rates",
        json={"country": "se", "tax_class": "standard", "rate": "25"},
        headers=staff,
    )
    assert rate.status_code == 200, rate.text
    assert rate.json()["rate"] == "25.00"
    replaced = await client.put(
        f"{ADMIN}/tax-rates",
        json={"country": "SE", "tax_class": "standard", "rate": "12.5"},
        headers=staff,
    )
    assert replaced.json()["rate"] == "12.50" and replaced.json()["id"] == rate.json()["id"]
    rates = await client.get(f"{ADMIN}/tax-rates", params={"country": "SE"}, headers=staff)
    assert len(rates.json()) == 1

    promo = await client.post(
        f"{ADMIN}/promo-codes",
        json={
            "code": "spring-15",
            "kind": "percent",
            "value": "15",
            "usage_limit": 10,
            "ends_at": "2099-01-01T00:00:00Z",
        },
        headers=staff,
    )
    assert promo.status_code == 201, promo.text
    assert promo.json()["code"] == "SPRING-15" and promo.json()["value"] == "15.00"
    fixed = await client.post(
        f"{ADMIN}/promo-codes",
        json={"code": "TENOFF", "kind": "fixed", "value": "10.00", "currency": "EUR"},
        headers=staff,
    )
    assert fixed.status_code == 201 and fixed.json()["value"] == "10.00"
    codes = await client.get(f"{ADMIN}/promo-codes", headers=staff)
    assert [p["code"] for p in codes.json()] == ["SPRING-15", "TENOFF"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (
            "/promo-codes",
            {"code": "X1", "kind": "percent", "value": "101"},
            422,
            "validation_error",
        ),
        ("/promo-codes", {"code": "X1", "kind": "fixed", "value": "5.00"}, 422, "validation_error"),
        (
            "/promo-codes",
            {"code": "X1", "kind": "percent", "value": "5", "starts_at": "2030-01-01T00:00:00"},
            422,
            "validation_error",
        ),
        ("/promo-codes", {"code": "X1", "kind": "percent", "value": 5}, 422, "validation_error"),
        (
            "/promo-codes",
            {"code": "WELCOME10", "kind": "percent", "value": "5"},
            409,
            "promo_code_exists",
        ),
        (
            "/shipping-methods",
            {"zone_id": "shz_nope", "code": "x", "name": "X", "kind": "flat", "currency": "EUR"},
            422,
            "unknown_zone",
        ),
        (
            "/shipping-methods",
            {
                "zone_id": "shz_nope",
                "code": "x",
                "name": "X",
                "kind": "flat",
                "price": 4.9,
                "currency": "EUR",
            },
            422,
            "validation_error",
        ),
        (
            "/tax-rates",
            {"country": "DE", "tax_class": "standard", "rate": "19.001"},
            422,
            "validation_error",
        ),
        ("/zones", {"name": "Nowhere", "countries": []}, 422, "validation_error"),
    ],
)
async def test_bad_staff_input_writes_nothing(
    client: httpx.AsyncClient,
    db: Database,
    shop: Shop,
    path: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    staff = await staff_headers_for(db)
    before = await table_sizes(db)
    response = await client.request(
        "PUT" if path == "/tax-rates" else "POST", ADMIN + path, json=body, headers=staff
    )
    assert_problem(response, status, code)
    assert await table_sizes(db) == before


async def test_only_staff_may_change_the_setup(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    customer = await make_customer(db)
    assert_problem(await client.get(f"{ADMIN}/promo-codes"), 401, "unauthorized")
    response = await client.post(
        f"{ADMIN}/promo-codes",
        json={"code": "FREE", "kind": "percent", "value": "100"},
        headers=customer.headers,
    )
    assert_problem(response, 403, "forbidden")


async def test_switching_to_tax_exclusive_prices(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    staff = await staff_headers_for(db)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (await make_variant(db, price=1000, stock=5), 1))
    quote_body = {"shipping_address": {"country": "DE"}}

    inclusive = await client.post("/api/checkout/quote", json=quote_body, headers=buyer.headers)
    assert (inclusive.json()["tax"], inclusive.json()["total"]) == ("2.38", "14.90")

    put = await client.put(f"{ADMIN}/settings", json={"prices_include_tax": False}, headers=staff)
    assert put.status_code == 200 and put.json() == {"prices_include_tax": False}
    exclusive = await client.post("/api/checkout/quote", json=quote_body, headers=buyer.headers)
    # 10.00 + 19 % = 11.90; shipping 4.90 + 19 % = 5.83.
    assert (exclusive.json()["tax"], exclusive.json()["total"]) == ("2.83", "17.73")
    got = await client.get(f"{ADMIN}/settings", headers=staff)
    assert got.json() == {"prices_include_tax": False}


async def test_demo_seed_ships_everywhere_the_warehouses_do(db: Database) -> None:
    await seed_checkout(db, currency="EUR")
    first = await table_sizes(db)
    await seed_checkout(db, currency="EUR")
    assert await table_sizes(db) == first  # seeding again changes nothing
    countries = {c for w in DEMO_WAREHOUSES for c in w["countries"]}
    async with db.transaction() as uow:
        for country in sorted(countries):
            found = await service.shipping_methods_for(uow, country)
            assert {m.code for m in found} == {"standard", "express"}, country
            table = await service.tax_table_for(uow, country)
            assert table.rate_for(country, None, "standard") > 0, country
        assert await service.prices_include_tax(uow) is True
        assert {p.code for p in await service.list_promo_codes(uow)} >= {
            "WELCOME10",
            "SAVE5",
            "LIMITED",
        }


async def test_a_new_promo_code_is_checked_once_for_every_field(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    staff = await staff_headers_for(db)
    body = {
        "code": "BROKEN",
        "kind": "fixed",
        "value": "5.00",
        "min_subtotal": "1.005",
        "ends_at": "2030-01-01T00:00:00",
    }
    response = await client.post(f"{ADMIN}/promo-codes", json=body, headers=staff)
    problem = assert_problem(response, 422, "validation_error")
    assert [e["field"] for e in problem["errors"]] == ["currency", "min_subtotal", "ends_at"]
