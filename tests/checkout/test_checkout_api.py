"""POST /api/checkout: the happy path, every payment outcome, bad input, replays."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mercato.db import Database
from mercato.inventory import service as inventory
from mercato.payments import service as payments
from mercato.runtime import Runtime
from tests.checkout.conftest import (
    ADDRESS,
    BODY,
    Shop,
    assert_problem,
    cart_lines,
    check_invariants,
    checkout_runs,
    fill_cart,
    make_customer,
    make_variant,
    post_checkout,
    set_price,
    stock,
)


async def checkout_count(db: Database) -> int:
    """How many checkouts were recorded (a run each)."""
    return len(await checkout_runs(db))


async def charges(db: Database) -> payments.SandboxSummary:
    async with db.transaction() as uow:
        return await payments.sandbox_charge_summary(uow)


async def test_happy_path(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    kettle = await make_variant(db, price=1999, stock=10)
    book = await make_variant(db, price=1250, stock=10, tax_class="reduced")
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (kettle, 2), (book, 1))

    response = await post_checkout(client, buyer)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["order_id"].startswith("ord_") and body["checkout_id"].startswith("chk_")
    assert body["status"] == "paid"
    assert body["currency"] == "EUR"
    # Prices include VAT (the demo setting); 52.48 of goods ships free (over 50.00).
    assert body["subtotal"] == "52.48" and body["shipping"] == "0.00"
    assert body["discount"] == "0.00" and body["total"] == "52.48"
    # 39.98 incl. 19 % -> 6.38; 12.50 incl. 7 % -> 0.82.
    assert body["tax"] == "7.20"
    assert [(x["variant_id"], x["quantity"], x["tax"]) for x in body["lines"]] == [
        (kettle, 2, "6.38"),
        (book, 1, "0.82"),
    ]
    assert body["payment"]["card_last4"] == "4242"
    assert body["shipping_address"]["country"] == "DE"

    assert await cart_lines(db, buyer.id) == []
    assert await stock(db, kettle) == (8, 0)
    assert await stock(db, book) == (9, 0)
    totals = await check_invariants(db)
    assert totals.orders == 1 and totals.live_charges == 1
    summary = await charges(db)
    assert summary.amount_authorized == 5248


async def test_anonymous_checkout_is_refused(client: httpx.AsyncClient, shop: Shop) -> None:
    response = await client.post("/api/checkout", json=BODY, headers={"Idempotency-Key": "k"})
    assert_problem(response, 401, "unauthorized")


async def test_a_bad_token_is_refused_before_the_key_is_looked_at(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (await make_variant(db), 1))
    for headers in ({"Idempotency-Key": "k"}, {}):
        response = await client.post(
            "/api/checkout", json=BODY, headers={"Authorization": "Bearer nope", **headers}
        )
        assert_problem(response, 401, "unauthorized")
    assert await checkout_count(db) == 0
    assert (await post_checkout(client, buyer)).status_code == 201


async def test_empty_cart(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    buyer = await make_customer(db)
    assert_problem(await post_checkout(client, buyer), 422, "cart_empty")
    assert await checkout_count(db) == 0


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        ("tok_chargeDeclined", 402, "payment_declined"),
        ("tok_chargeDeclinedInsufficientFunds", 402, "insufficient_funds"),
    ],
)
async def test_declined_payment_keeps_the_cart_and_releases_the_stock(
    client: httpx.AsyncClient, db: Database, shop: Shop, token: str, status: int, code: str
) -> None:
    variant = await make_variant(db, stock=5)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 2))

    response = await post_checkout(client, buyer, body={**BODY, "payment_token": token})

    assert_problem(response, status, code)
    assert await cart_lines(db, buyer.id) == [(variant, 2)]
    assert await stock(db, variant) == (5, 0)
    totals = await check_invariants(db)
    assert totals.orders == 0 and totals.checkouts == {"failed": 1}
    # The same key replays the same answer without charging again.
    again = await post_checkout(client, buyer, body={**BODY, "payment_token": token})
    assert_problem(again, status, code)
    assert (await charges(db)).failed == 1


@pytest.mark.parametrize("token", ["tok_processingError", "tok_timeoutAfterCharge"])
async def test_transient_processor_trouble_still_makes_one_order_and_one_charge(
    client: httpx.AsyncClient, db: Database, shop: Shop, token: str
) -> None:
    variant = await make_variant(db, stock=5)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 1))

    response = await post_checkout(client, buyer, body={**BODY, "payment_token": token})

    assert response.status_code == 201, response.text
    totals = await check_invariants(db)
    assert totals.orders == 1 and totals.live_charges == 1
    assert await stock(db, variant) == (4, 0)


async def test_changed_price_stops_checkout_before_anything_is_held(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, price=1000, stock=5)
    other = await make_variant(db, price=500, stock=5)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 1), (other, 1))
    await set_price(db, variant, 1200)

    body = assert_problem(await post_checkout(client, buyer), 409, "price_changed")

    assert [(x["variant_id"], x["unit_price_seen"], x["unit_price"]) for x in body["lines"]] == [
        (variant, "10.00", "12.00")
    ]
    assert await stock(db, variant) == (5, 0)
    assert await checkout_count(db) == 0


async def test_missing_or_oversized_idempotency_key(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (await make_variant(db), 1))
    assert_problem(await post_checkout(client, buyer, key=None), 400, "idempotency_key_required")
    for key in ("k" * 256, "tab\tinside"):
        assert_problem(await post_checkout(client, buyer, key=key), 400, "invalid_idempotency_key")
    assert await checkout_count(db) == 0


@pytest.mark.parametrize(
    ("address", "field"),
    [
        ({**ADDRESS, "country": "DEU"}, "shipping_address.country"),
        ({**ADDRESS, "country": "D1"}, "shipping_address.country"),
        ({k: v for k, v in ADDRESS.items() if k != "city"}, "shipping_address.city"),
        ({**ADDRESS, "line1": ""}, "shipping_address.line1"),
    ],
)
async def test_bad_address_names_the_field(
    client: httpx.AsyncClient, db: Database, shop: Shop, address: dict[str, Any], field: str
) -> None:
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (await make_variant(db), 1))
    response = await post_checkout(client, buyer, body={**BODY, "shipping_address": address})
    body = assert_problem(response, 422, "validation_error")
    assert field in [e["field"] for e in body["errors"]]
    assert await checkout_count(db) == 0


async def test_card_numbers_are_refused_as_tokens(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (await make_variant(db), 1))
    for token in ("4242424242424242", "tok_4242424242424242"):
        response = await post_checkout(client, buyer, body={**BODY, "payment_token": token})
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["field"] == "payment_token"
    assert await checkout_count(db) == 0


async def test_unknown_shipping_method_or_country(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (await make_variant(db), 1))
    response = await post_checkout(client, buyer, body={**BODY, "shipping_method": "teleport"})
    assert_problem(response, 422, "unknown_shipping_method")
    # A country the shop does not deliver to is named, with the ones it does.
    nowhere = {**BODY, "shipping_address": {**ADDRESS, "country": "JP"}}
    refused = assert_problem(
        await post_checkout(client, buyer, body=nowhere), 422, "country_not_served"
    )
    assert "Japan" in refused["detail"] and "DE" in refused["served_countries"]
    assert refused["errors"][0]["field"] == "shipping_address.country"
    assert await checkout_count(db) == 0


@pytest.mark.parametrize(("code", "reason"), [("NOPE", "unknown"), ("OLD", "expired")])
async def test_unknown_or_expired_promo_code(
    client: httpx.AsyncClient, db: Database, shop: Shop, code: str, reason: str
) -> None:
    from datetime import timedelta

    from mercato.checkout import service
    from mercato.db import utcnow

    async with db.transaction() as uow:
        await service.create_promo_code(
            uow,
            code="OLD",
            kind="percent",
            value=1000,
            starts_at=utcnow() - timedelta(days=10),
            ends_at=utcnow() - timedelta(days=1),
        )
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (await make_variant(db), 1))
    response = await post_checkout(client, buyer, body={**BODY, "promo_code": code})
    body = assert_problem(response, 422, "invalid_promo_code")
    assert body["reason"] == reason and body["errors"][0]["field"] == "promo_code"
    assert await checkout_count(db) == 0


async def test_promo_codes_discount_the_order(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, price=2000, stock=5)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 2))
    # SAVE5 needs 30.00 of goods: 40.00 - 5.00 = 35.00, plus 4.90 shipping (under 50.00).
    response = await post_checkout(client, buyer, body={**BODY, "promo_code": "save5"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["discount"], body["shipping"], body["total"]) == ("5.00", "4.90", "39.90")
    assert body["promo_code"] == "SAVE5"
    await check_invariants(db)

    # Under the minimum the code is refused.
    await fill_cart(db, buyer.id, (variant, 1))
    response = await post_checkout(client, buyer, "key-2", {**BODY, "promo_code": "SAVE5"})
    assert assert_problem(response, 422, "invalid_promo_code")["reason"] == "min_subtotal"


async def test_per_customer_limit(client: httpx.AsyncClient, db: Database, shop: Shop) -> None:
    variant = await make_variant(db, price=2000, stock=5)
    buyer = await make_customer(db)
    body = {**BODY, "promo_code": "WELCOME10"}  # once per customer
    await fill_cart(db, buyer.id, (variant, 1))
    assert (await post_checkout(client, buyer, "k1", body)).status_code == 201
    await fill_cart(db, buyer.id, (variant, 1))
    response = await post_checkout(client, buyer, "k2", body)
    assert assert_problem(response, 422, "invalid_promo_code")["reason"] == "customer_limit"
    assert await stock(db, variant) == (4, 0)
    await check_invariants(db)


async def test_same_key_and_body_return_the_same_order(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, stock=5)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 1))
    first = await post_checkout(client, buyer)
    second = await post_checkout(client, buyer)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()

    other_body = {**BODY, "shipping_method": "express"}
    assert_problem(await post_checkout(client, buyer, body=other_body), 422, "idempotency_conflict")
    totals = await check_invariants(db)
    assert totals.orders == 1 and totals.live_charges == 1
    assert await stock(db, variant) == (4, 0)


async def test_out_of_stock_is_a_clean_problem(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, stock=3)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 3))
    async with db.transaction() as uow:
        await inventory.adjust(uow, variant, "BER", -2, "damaged")
    body = assert_problem(await post_checkout(client, buyer), 409, "out_of_stock")
    assert body["lines"] == [{"variant_id": variant, "requested": 3, "available": 1}]
    assert await cart_lines(db, buyer.id) == [(variant, 3)]
    totals = await check_invariants(db)
    assert totals.checkouts == {"failed": 1} and totals.active_reservations == 0


async def test_a_refusal_stays_the_answer_to_its_key(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, stock=2)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 2))
    async with db.transaction() as uow:  # one unit breaks after it went into the cart
        await inventory.adjust(uow, variant, "BER", -1, "damaged")
    first = assert_problem(await post_checkout(client, buyer, "k"), 409, "out_of_stock")
    async with db.transaction() as uow:  # the stock arrives afterwards
        await inventory.receive(uow, variant, "BER", 5)
    assert assert_problem(await post_checkout(client, buyer, "k"), 409, "out_of_stock") == first
    assert (await post_checkout(client, buyer, "k2")).status_code == 201  # a new attempt
    totals = await check_invariants(db)
    assert totals.checkouts == {"failed": 1, "completed": 1} and totals.orders == 1


async def test_checkout_status_for_its_owner_only(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    buyer = await make_customer(db)
    stranger = await make_customer(db, "stranger")
    await fill_cart(db, buyer.id, (await make_variant(db), 1))
    placed = (await post_checkout(client, buyer)).json()
    seen = await client.get(f"/api/checkout/{placed['checkout_id']}", headers=buyer.headers)
    assert seen.status_code == 200
    assert seen.json()["status"] == "completed" and seen.json()["order_id"] == placed["order_id"]
    hidden = await client.get(f"/api/checkout/{placed['checkout_id']}", headers=stranger.headers)
    assert_problem(hidden, 404, "not_found")


async def test_shipping_methods_and_quote(
    client: httpx.AsyncClient, db: Database, runtime: Runtime, shop: Shop
) -> None:
    listed = await client.get("/api/checkout/shipping-methods", params={"country": "fr"})
    assert listed.status_code == 200
    methods = {m["code"]: m for m in listed.json()["methods"]}
    assert set(methods) == {"standard", "express"}
    assert methods["standard"]["price"] == "4.90" and methods["standard"]["free_over"] == "50.00"
    assert methods["express"]["weight_bands"][0] == {"up_to_grams": 1000, "price": "9.90"}
    bad = await client.get("/api/checkout/shipping-methods", params={"country": "FRA"})
    assert_problem(bad, 422, "validation_error")

    variant = await make_variant(db, price=1000, stock=5, weight_grams=800)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 2))
    quote = await client.post(
        "/api/checkout/quote",
        json={"shipping_address": {"country": "FR"}, "shipping_method": "express"},
        headers=buyer.headers,
    )
    assert quote.status_code == 200, quote.text
    q = quote.json()
    # 1.6 kg by express: 14.90; FR VAT 20 % inside 20.00 -> 3.33 and inside 14.90 -> 2.48.
    assert (q["subtotal"], q["shipping"], q["total"], q["tax"]) == (
        "20.00",
        "14.90",
        "34.90",
        "5.81",
    )
    assert q["price_changes"] == []
    # A quote has no side effects.
    assert await stock(db, variant) == (5, 0)
    assert await checkout_count(db) == 0


async def test_guests_get_a_quote_for_their_cart(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, price=6000, stock=5)
    added = await client.post("/api/cart/items", json={"variant_id": variant, "quantity": 1})
    assert added.status_code == 201, added.text
    token = added.json()["cart_token"]
    quote = await client.post(
        "/api/checkout/quote",
        json={"shipping_address": {"country": "DE"}, "promo_code": "WELCOME10"},
        headers={"X-Cart-Token": token},
    )
    assert quote.status_code == 200, quote.text
    q = quote.json()
    # 60.00 - 10 % = 54.00, still over 50.00: standard shipping is free.
    assert (q["discount"], q["shipping"], q["total"]) == ("6.00", "0.00", "54.00")
    assert [line["discount"] for line in q["lines"]] == ["6.00"]
    client.cookies.clear()
    nothing = await client.post("/api/checkout/quote", json={"shipping_address": {"country": "DE"}})
    assert_problem(nothing, 422, "cart_empty")


async def test_the_api_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/openapi.json")).json()
    assert {"/api/checkout", "/api/checkout/quote", "/api/checkout/shipping-methods"} <= set(
        spec["paths"]
    )


async def test_a_quote_lists_what_every_shipping_method_would_cost(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, price=2000, stock=5, weight_grams=800)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 2))
    quote = await client.post(
        "/api/checkout/quote",
        json={"shipping_address": {"country": "DE"}, "shipping_method": "standard"},
        headers=buyer.headers,
    )
    assert quote.status_code == 200, quote.text
    # 40.00 of goods: standard is 4.90 (free from 50.00); 1.6 kg by express is 14.90.
    assert [(o["code"], o["price"]) for o in quote.json()["shipping_options"]] == [
        ("standard", "4.90"),
        ("express", "14.90"),
    ]
    assert quote.json()["shipping"] == "4.90"
