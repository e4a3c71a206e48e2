"""Buying from several sellers at once: one checkout, one authorization, one part per seller,
each seller's units held in its own warehouse, and each seller part a sale in the ledger."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from mercato.checkout import service as checkout
from mercato.events import dispatcher
from mercato.inventory import service as inventory
from mercato.marketplace import service
from mercato.marketplace.events import SALES_CONSUMER
from mercato.orders import service as orders
from tests.checkout.conftest import ADDRESS
from tests.conftest import user_headers
from tests.marketplace.conftest import Shop, approved_seller, make_shop, runtime_of

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
async def shop(app: FastAPI) -> Shop:
    db = runtime_of(app).db
    made = await make_shop(db)
    async with db.transaction() as uow:
        [zone] = await checkout.list_zones(uow)
        await checkout.create_shipping_method(
            uow, zone_id=zone.id, code="standard", name="Standard", kind="flat", amount=490,
            currency="EUR",
        )  # fmt: skip
    return made


async def test_one_checkout_three_sellers_three_parts(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop, staff_headers: dict[str, str]
) -> None:
    a = await approved_seller(client, app, staff_headers, "Alpha")
    b = await approved_seller(client, app, staff_headers, "Beta")
    for seller, price, fee in ((a, "18.00", "3.00"), (b, "19.00", "4.50")):
        r = await client.post(
            "/api/seller/offers",
            headers=seller.headers,
            json={"sku": shop.sku, "price": price, "quantity": 5, "shipping": fee},
        )
        assert r.status_code == 201, r.text
    buyer = await user_headers(app, "customer", "buyer@example.com")
    for body in (
        {"variant_id": shop.variant_id, "quantity": 2},
        {"variant_id": shop.variant_id, "seller_id": a.seller_id, "quantity": 1},
        {"variant_id": shop.variant_id, "seller_id": b.seller_id, "quantity": 3},
    ):
        r = await client.post("/api/cart/items?country=DE", headers=buyer, json=body)
        assert r.status_code == 201, r.text
    lines = r.json()["lines"]
    assert [(x["seller_id"], x["quantity"], x["unit_price"]) for x in lines] == [
        (None, 2, "20.00"),
        (a.seller_id, 1, "18.00"),
        (b.seller_id, 3, "19.00"),
    ]
    assert lines[2]["seller_name"] == "Beta"

    r = await client.post(
        "/api/checkout",
        headers={**buyer, "Idempotency-Key": "split-1"},
        json={
            "shipping_address": ADDRESS,
            "shipping_method": "standard",
            "payment_token": "tok_visa",
        },
    )
    assert r.status_code == 201, r.text
    order_id = r.json()["order_id"]
    runtime = runtime_of(app)
    async with runtime.db.transaction() as uow:
        order = await orders.get_order(uow, order_id)
        assert order is not None
        held = await inventory.list_reservations(
            uow, state="committed", owner=order.checkout_id, limit=100
        )
    assert {p.seller_id for p in order.parts} == {service.HOUSE_SELLER_ID, a.seller_id, b.seller_id}
    assert sum(p.total for p in order.parts) == order.total
    by_seller = {p.seller_id: p for p in order.parts}
    assert by_seller[a.seller_id].shipping >= 300 and by_seller[b.seller_id].shipping >= 450
    assert sorted((r.warehouse_code, r.quantity) for r in held) == sorted(
        [("BER", 2), (a.warehouse_code, 1), (b.warehouse_code, 3)]
    )

    await dispatcher.dispatch_once(runtime, only=[SALES_CONSUMER])
    await dispatcher.dispatch_once(runtime, only=[SALES_CONSUMER])  # again: nothing more
    async with runtime.db.transaction() as uow:
        sale_a = await service.get_sale(uow, by_seller[a.seller_id].id)
        sale_b = await service.get_sale(uow, by_seller[b.seller_id].id)
        house = await service.get_sale(uow, by_seller[service.HOUSE_SELLER_ID].id)
        assert await service.check_ledger(uow) == []
    assert house is None
    assert sale_a is not None and sale_a.gross == by_seller[a.seller_id].total
    assert sale_b is not None and sale_b.gross == by_seller[b.seller_id].total
