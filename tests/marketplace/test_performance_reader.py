"""A seller's performance counted from what happened to its order parts: shipped on time, late,
cancelled by staff and by the buyer, returned broken, reviewed; the figures match the rates
worked out by hand, and a seller over the late-shipment threshold loses the buy box."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from mercato.checkout import service as checkout
from mercato.events import dispatcher
from mercato.fulfilment.service import SHIPMENTS
from mercato.marketplace import service
from mercato.orders import service as orders
from mercato.returns import service as returns
from tests.checkout.conftest import ADDRESS
from tests.conftest import user_headers
from tests.marketplace.conftest import Shop, approved_seller, make_shop, runtime_of

pytestmark = pytest.mark.usefixtures("backend")

THRESHOLDS = service.Thresholds()


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


async def test_figures_from_real_parts_and_the_buy_box_follows(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop, staff_headers: dict[str, str]
) -> None:
    runtime = runtime_of(app)
    staff = staff_headers
    alpha = await approved_seller(client, app, staff, "Alpha")
    r = await client.post(
        "/api/seller/offers",
        headers=alpha.headers,
        json={"sku": shop.sku, "price": "18.00", "quantity": 20, "shipping": "3.00",
              "handling_days": 2},
    )  # fmt: skip
    assert r.status_code == 201, r.text

    async def buy(n: int) -> tuple[dict[str, str], orders.OrderInfo]:
        buyer = await user_headers(app, "customer", f"buyer{n}@example.com")
        r = await client.post(
            "/api/cart/items?country=DE",
            headers=buyer,
            json={"variant_id": shop.variant_id, "seller_id": alpha.seller_id, "quantity": 1},
        )
        assert r.status_code == 201, r.text
        r = await client.post(
            "/api/checkout",
            headers={**buyer, "Idempotency-Key": f"perf-{n}"},
            json={"shipping_address": ADDRESS, "shipping_method": "standard",
                  "payment_token": "tok_visa"},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        await dispatcher.dispatch_once(runtime)
        async with runtime.db.transaction() as uow:
            order = await orders.get_order(uow, r.json()["order_id"])
        assert order is not None
        return buyer, order

    async def ship(order: orders.OrderInfo, *, late: bool = False, deliver: bool = True) -> None:
        r = await client.post(
            f"/api/admin/orders/{order.id}/shipments", json={"carrier": "sandbox"}, headers=staff
        )
        assert r.status_code == 201, r.text
        shipment_id = r.json()["id"]
        if late:  # test setup: it left a day after the two handling days
            async with runtime.db.transaction() as uow:
                await uow.execute(
                    update(SHIPMENTS)
                    .where(SHIPMENTS.c.id == shipment_id)
                    .values(shipped_at=order.parts[0].created_at + timedelta(days=3))
                )
        if deliver:
            r = await client.post(f"/api/admin/shipments/{shipment_id}/deliver", headers=staff)
            assert r.status_code == 200, r.text

    async def review(buyer: dict[str, str], stars: int) -> None:
        r = await client.post(
            f"/api/products/{shop.product_id}/reviews", headers=buyer, json={"rating": stars}
        )
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "approved", r.text

    async def refresh() -> service.SellerInfo:
        async with runtime.db.transaction() as uow:
            await service.refresh_performance(uow, THRESHOLDS)
            seller = await service.get_seller(uow, alpha.seller_id)
        assert seller is not None
        return seller

    async def featured() -> str:
        async with runtime.db.transaction() as uow:
            offer = await service.featured_offer(uow, shop.variant_id, "DE")
        assert offer is not None
        return offer.seller_id

    assert await featured() == alpha.seller_id

    # Six orders while the seller sells (out of the buy box, its offers cannot be bought).
    (b1, o1), (_, o2), (_, o3), (b4, o4), (b5, o5), (b6, o6) = [await buy(n) for n in range(1, 7)]

    # 1 on time (and 5 stars), 2 late: half the shipments late, over 4 %: out of the buy box.
    await ship(o1)
    await review(b1, 5)
    await ship(o2, late=True, deliver=False)
    seller = await refresh()
    assert seller.performance.late_shipment_rate_bp == 5000
    assert (seller.performance.defect_rate_bp, seller.performance.cancel_rate_bp) == (0, 0)
    assert not seller.performance.eligible
    assert await featured() == service.HOUSE_SELLER_ID

    # 3 cancelled by staff (counted), 6 by its buyer (not the seller's doing).
    r = await client.post(f"/api/admin/orders/{o3.id}/cancel", headers=staff, json={})
    assert r.status_code == 200, r.text
    r = await client.post(f"/api/orders/{o6.id}/cancel", headers=b6, json={})
    assert r.status_code == 200, r.text
    # 4 on time, came back broken (written off, refunded) and got 4 stars: defective.
    await ship(o4)
    await review(b4, 4)
    r = await client.post(
        f"/api/orders/{o4.id}/returns",
        headers=b4,
        json={"lines": [{"order_line_id": o4.lines[0].id, "quantity": 1}], "reason": "Cracked"},
    )
    assert r.status_code == 201, r.text
    return_id = r.json()["id"]
    r = await client.post(f"/api/admin/returns/{return_id}/approve", headers=staff, json={})
    assert r.status_code == 200, r.text
    receipt = {"lines": [{"order_line_id": o4.lines[0].id, "disposition": "write_off"}]}
    r = await client.post(f"/api/admin/returns/{return_id}/receive", headers=staff, json=receipt)
    assert r.status_code == 200 and r.json()["status"] == "refunded", r.text
    # 5 on time and one star: defective.
    await ship(o5)
    await review(b5, 1)

    async with runtime.db.transaction() as uow:
        counts = await returns.seller_performance(uow, seller, o1.created_at - timedelta(1))
    assert counts == service.PerformanceCounts(
        orders=6,
        defective_orders=2,  # 4 and 5
        shipments=4,  # 1, 2, 4, 5
        late_shipments=1,  # 2
        cancelled_before_fulfilment=1,  # 3
        rating_total=5 + 4 + 1,
        rating_count=3,
    )
    seller = await refresh()
    figures = seller.performance
    assert (figures.orders_counted, figures.defect_rate_bp, figures.cancel_rate_bp) == (
        6,
        3333,
        1667,
    )
    assert (figures.late_shipment_rate_bp, figures.rating_x100, figures.rating_count) == (
        2500,
        333,
        3,
    )
    assert not figures.eligible
