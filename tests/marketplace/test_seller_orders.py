"""Sellers ship their own parts of a split order: each parcel captures its part's share (the
part's last one its shipping too), the parts together capture exactly the order's total, and
nobody sees or ships another seller's part. Many buyers racing for two sellers' offers of one
variant buy exactly each seller's stock."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI

from mercato.checkout import service as checkout
from mercato.fulfilment import service as fulfilment
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.marketplace import service
from mercato.orders import service as orders
from mercato.payments import service as payments
from tests.checkout.conftest import ADDRESS, FAST_HASHER
from tests.conftest import user_headers
from tests.marketplace.conftest import (
    SellerAccount,
    Shop,
    approved_seller,
    make_shop,
    runtime_of,
)
from tests.web.admin_helpers import HTML, api_login, page_token

pytestmark = pytest.mark.usefixtures("backend")

ORDERS = "/api/seller/orders"


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "PASSWORD_HASHER", FAST_HASHER)


async def _shop(app: FastAPI, *, house_stock: int = 10) -> Shop:
    db = runtime_of(app).db
    made = await make_shop(db, house_stock=house_stock)
    async with db.transaction() as uow:
        [zone] = await checkout.list_zones(uow)
        await checkout.create_shipping_method(
            uow, zone_id=zone.id, code="standard", name="Standard", kind="flat", amount=490,
            currency="EUR",
        )  # fmt: skip
    return made


async def _offer(
    client: httpx.AsyncClient, seller: SellerAccount, shop: Shop, price: str, units: int, fee: str
) -> None:
    r = await client.post(
        "/api/seller/offers",
        headers=seller.headers,
        json={"sku": shop.sku, "price": price, "quantity": units, "shipping": fee},
    )
    assert r.status_code == 201, r.text


async def _buy(
    client: httpx.AsyncClient, buyer: dict[str, str], key: str, lines: list[dict[str, object]]
) -> httpx.Response:
    for body in lines:
        r = await client.post("/api/cart/items?country=DE", headers=buyer, json=body)
        if r.status_code != 201:
            return r
    return await client.post(
        "/api/checkout",
        headers={**buyer, "Idempotency-Key": key},
        json={
            "shipping_address": ADDRESS,
            "shipping_method": "standard",
            "payment_token": "tok_visa",
        },
    )


async def test_each_seller_ships_its_part_and_captures_its_share(
    client: httpx.AsyncClient, app: FastAPI, staff_headers: dict[str, str]
) -> None:
    shop = await _shop(app)
    a = await approved_seller(client, app, staff_headers, "Alpha")
    b = await approved_seller(client, app, staff_headers, "Beta")
    await _offer(client, a, shop, "18.00", 5, "3.00")
    await _offer(client, b, shop, "19.33", 5, "4.50")
    buyer = await user_headers(app, "customer", "buyer@example.com")
    r = await _buy(
        client,
        buyer,
        "split-ship",
        [
            {"variant_id": shop.variant_id, "quantity": 1},
            {"variant_id": shop.variant_id, "seller_id": a.seller_id, "quantity": 2},
            {"variant_id": shop.variant_id, "seller_id": b.seller_id, "quantity": 3},
        ],
    )
    assert r.status_code == 201, r.text
    order_id = r.json()["order_id"]
    runtime = runtime_of(app)
    async with runtime.db.transaction() as uow:
        order = await orders.get_order(uow, order_id)
    assert order is not None
    part = {p.seller_id: p for p in order.parts}
    r = await client.get(f"/api/orders/{order_id}", headers=buyer)
    assert r.status_code == 200, r.text
    shown = r.json()["parts"]
    names = {x["seller_id"]: x["seller_name"] for x in shown}
    assert shown[0]["seller_id"] == service.HOUSE_SELLER_ID and names[service.HOUSE_SELLER_ID]
    assert (names[a.seller_id], names[b.seller_id]) == ("Alpha", "Beta")
    assert sum(int(x["total"].replace(".", "")) for x in shown) == order.total
    assert {i for x in shown for i in x["line_ids"]} == {line.id for line in order.lines}

    # Who may see which part.
    r = await client.get(ORDERS, headers=a.headers)
    assert r.status_code == 200, r.text
    [mine] = r.json()["items"]
    assert (mine["part_id"], mine["order_id"], mine["seller_name"]) == (
        part[a.seller_id].id,
        order_id,
        "Alpha",
    )
    assert (mine["units"], mine["units_left"], mine["can_ship"]) == (2, 2, True)
    assert mine["shipping_address"]["city"] == "Berlin" and mine["shipments"] == []
    assert [(x["quantity"], x["quantity_left"]) for x in mine["lines"]] == [(2, 2)]
    theirs = part[b.seller_id].id
    assert (await client.get(f"{ORDERS}/{theirs}", headers=a.headers)).status_code == 404
    r = await client.post(
        f"{ORDERS}/{theirs}/shipments", headers=a.headers, json={"carrier": "sandbox"}
    )
    assert r.status_code == 404, r.text
    assert (await client.get(ORDERS, headers=buyer)).status_code == 403
    r = await client.post(
        f"{ORDERS}/{theirs}/shipments", headers=buyer, json={"carrier": "sandbox"}
    )
    assert r.status_code == 403
    assert (await client.get(ORDERS)).status_code == 401
    assert (
        await client.post(f"{ORDERS}/{theirs}/shipments", json={"carrier": "sandbox"})
    ).status_code == 401
    r = await client.get(ORDERS, headers=staff_headers, params={"seller_id": b.seller_id})
    assert [x["part_id"] for x in r.json()["items"]] == [theirs]
    r = await client.get(ORDERS, headers=staff_headers, params={"limit": 2})
    assert len(r.json()["items"]) == 2 and r.json()["next_before"]
    r = await client.get(
        ORDERS, headers=staff_headers, params={"limit": 2, "before": r.json()["next_before"]}
    )
    assert len(r.json()["items"]) == 1 and r.json()["next_before"] is None

    # Alpha ships one unit, then the rest; Beta everything; the staff the house's part.
    line_a = part[a.seller_id].line_ids[0]
    body = {"carrier": "sandbox", "lines": [{"order_line_id": line_a, "quantity": 1}]}
    shipped = [
        await client.post(
            f"{ORDERS}/{part[a.seller_id].id}/shipments", headers=a.headers, json=body
        )
    ]
    shipped.append(
        await client.post(
            f"{ORDERS}/{part[a.seller_id].id}/shipments",
            headers=a.headers,
            json={"carrier": "manual", "tracking_number": "ALPHA-2"},
        )
    )
    other_line = part[b.seller_id].line_ids[0]
    r = await client.post(
        f"{ORDERS}/{part[a.seller_id].id}/shipments",
        headers=a.headers,
        json={"carrier": "sandbox", "lines": [{"order_line_id": other_line, "quantity": 1}]},
    )
    assert r.status_code == 422 and r.json()["code"] == "unknown_order_line"
    shipped.append(
        await client.post(
            f"{ORDERS}/{theirs}/shipments", headers=b.headers, json={"carrier": "sandbox"}
        )
    )
    house = part[service.HOUSE_SELLER_ID].id
    shipped.append(
        await client.post(
            f"{ORDERS}/{house}/shipments", headers=staff_headers, json={"carrier": "sandbox"}
        )
    )
    for r in shipped:
        assert r.status_code == 201, r.text
    captured = [int(r.json()["captured"].replace(".", "")) for r in shipped]

    async with runtime.db.transaction() as uow:
        order = await orders.get_order(uow, order_id)
        assert order is not None
        intent = await payments.get_intent(uow, order.payment_intent_id)
    assert intent is not None
    lines = {x.id: x for x in order.lines}
    first_unit = fulfilment.unit_share(lines[line_a].total, 2, 1)
    assert captured == [
        first_unit,
        part[a.seller_id].total - first_unit,
        part[b.seller_id].total,
        part[service.HOUSE_SELLER_ID].total,
    ]
    assert sum(captured) == order.total == intent.amount_captured
    assert order.status == "shipped"
    assert {p.status for p in order.parts} == {"shipped"}

    r = await client.get(f"{ORDERS}/{part[a.seller_id].id}", headers=a.headers)
    got = r.json()
    assert (got["units_left"], got["can_ship"], got["status"]) == (0, False, "shipped")
    assert [s["tracking_number"] for s in got["shipments"]][1] == "ALPHA-2"
    r = await client.post(
        f"{ORDERS}/{theirs}/shipments", headers=b.headers, json={"carrier": "sandbox"}
    )
    assert r.status_code == 409 and r.json()["code"] in ("nothing_to_ship", "order_not_shippable")


STOCK = {"Alpha": 10, "Beta": 15}
BUYERS = 40


async def test_many_buyers_buy_exactly_each_sellers_stock(
    client: httpx.AsyncClient, app: FastAPI, staff_headers: dict[str, str]
) -> None:
    shop = await _shop(app, house_stock=0)
    sellers: list[SellerAccount] = []
    for name, units in STOCK.items():
        seller = await approved_seller(client, app, staff_headers, name)
        await _offer(client, seller, shop, "10.00", units, "2.00")
        sellers.append(seller)
    buyers = [await user_headers(app, "customer", f"b{n}@example.com") for n in range(BUYERS)]

    async def buy(n: int) -> str | None:
        seller = sellers[n % 2]
        r = await _buy(
            client,
            buyers[n],
            f"race-{n}",
            [{"variant_id": shop.variant_id, "seller_id": seller.seller_id, "quantity": 1}],
        )
        if r.status_code == 201:
            return seller.seller_id
        assert r.status_code in (409, 422), r.text
        assert r.json()["code"] in ("out_of_stock", "offer_unavailable", "insufficient_stock"), (
            r.text
        )
        return None

    sold = Counter(s for s in await asyncio.gather(*(buy(n) for n in range(BUYERS))) if s)
    assert {s.seller_id: sold[s.seller_id] for s in sellers} == {
        sellers[0].seller_id: 10,
        sellers[1].seller_id: 15,
    }
    async with runtime_of(app).db.transaction() as uow:
        levels = {
            s.warehouse_code: s for s in await inventory.stock_for_variant(uow, shop.variant_id)
        }
        for seller in sellers:
            level = levels[seller.warehouse_code]
            assert level.available == 0
        assert await inventory.check_ledger(uow) == []
        parts: Counter[str] = Counter()
        for seller in sellers:
            parts[seller.seller_id] = len(await orders.seller_part_ids(uow, seller.seller_id))
    assert parts == sold


async def test_the_orders_page_ships_a_sellers_own_part(
    client: httpx.AsyncClient, app: FastAPI, staff_headers: dict[str, str]
) -> None:
    shop = await _shop(app)
    a = await approved_seller(client, app, staff_headers, "Alpha")
    b = await approved_seller(client, app, staff_headers, "Beta")
    await _offer(client, a, shop, "18.00", 5, "3.00")
    await _offer(client, b, shop, "19.00", 5, "4.50")
    buyer = await user_headers(app, "customer", "buyer@example.com")
    r = await _buy(
        client,
        buyer,
        "page-ship",
        [
            {"variant_id": shop.variant_id, "seller_id": a.seller_id, "quantity": 2},
            {"variant_id": shop.variant_id, "seller_id": b.seller_id, "quantity": 1},
        ],
    )
    assert r.status_code == 201, r.text
    async with runtime_of(app).db.transaction() as uow:
        order = await orders.get_order(uow, r.json()["order_id"])
    assert order is not None
    part = {p.seller_id: p.id for p in order.parts}

    await api_login(client, "alpha@example.com")
    token = await page_token(client, "/seller/orders")
    r = await client.get("/seller/orders", headers=HTML)
    assert 'href="/seller/orders" aria-current="page"' in r.text
    assert re.findall(r'data-testid="order-part" data-part-id="([^"]+)"', r.text) == [
        part[a.seller_id]
    ]
    assert "Heidestrasse 17" in r.text and 'data-testid="units-left">2<' in r.text
    # The manual carrier needs a tracking number: refused, said on the page, nothing shipped.
    ship = f"/seller/orders/{part[a.seller_id]}/ship"
    r = await client.post(ship, data={"csrf_token": token, "carrier": "manual"})
    assert r.status_code == 303
    r = await client.get("/seller/orders", headers=HTML)
    assert "tracking_number" in r.text or "tracking number" in r.text
    assert 'data-testid="units-left">2<' in r.text
    r = await client.post(
        ship, data={"csrf_token": token, "carrier": "manual", "tracking_number": "AL-1"}
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/seller/orders")
    r = await client.get("/seller/orders", headers=HTML)
    assert "Shipped with manual, tracking number AL-1" in r.text
    assert 'data-testid="tracking-number">AL-1<' in r.text
    assert 'data-testid="units-left">0<' in r.text and 'data-testid="ship-form"' not in r.text
    # Beta's part does not exist for Alpha.
    r = await client.post(
        f"/seller/orders/{part[b.seller_id]}/ship", data={"csrf_token": token, "carrier": "sandbox"}
    )
    assert r.status_code == 404
