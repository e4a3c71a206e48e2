"""Sellers, offers, the CSV import and the buy box through the API, and who may do what."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.db import Database
from mercato.inventory import service as inventory
from mercato.marketplace import service
from tests.conftest import user_headers
from tests.marketplace.conftest import Shop, approved_seller, make_shop, runtime_of

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
async def shop(app: FastAPI) -> Shop:
    return await make_shop(runtime_of(app).db)


async def _offer(
    client: httpx.AsyncClient, headers: dict[str, str], sku: str, **fields: Any
) -> httpx.Response:
    body = {"sku": sku, "price": "18.00", "quantity": 5, **fields}
    return await client.post("/api/seller/offers", headers=headers, json=body)


async def _offers_state(db: Database) -> tuple[int, int]:
    async with db.transaction() as uow:
        offers = await uow.scalar(select(func.count()).select_from(service_offers()))
        moves = await uow.scalar(select(func.count()).select_from(inventory.MOVEMENTS))
    return int(offers or 0), int(moves or 0)


def service_offers() -> Any:
    from mercato.marketplace.common import OFFERS

    return OFFERS


async def test_no_seller_means_the_house_sells_everything(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    r = await client.get(f"/api/products/{shop.product_id}/offers?country=DE")
    assert r.status_code == 200, r.text
    [first, second] = r.json()["variants"]
    assert first["featured"]["seller_id"] == service.HOUSE_SELLER_ID
    assert first["featured"]["price"] == "20.00"
    assert first["others"] == []
    assert second["featured"] is None  # no stock anywhere
    r = await client.get(f"/api/sellers/{service.HOUSE_SELLER_ID}")
    assert r.status_code == 200 and r.json()["is_house"] is True


async def test_authorization_matrix(
    client: httpx.AsyncClient,
    app: FastAPI,
    shop: Shop,
    staff_headers: dict[str, str],
    customer_headers: dict[str, str],
) -> None:
    a = await approved_seller(client, app, staff_headers, "Alpha")
    b = await approved_seller(client, app, staff_headers, "Beta")
    r = await _offer(client, a.headers, shop.sku)
    assert r.status_code == 201, r.text
    offer_a = r.json()["id"]
    r = await _offer(client, b.headers, shop.sku, price="19.00")
    assert r.status_code == 201, r.text
    offer_b = r.json()["id"]
    csv = b"sku,price,quantity\nKETTLE-1,17.00,3\n"

    # Seller A never sees nor changes B's offer: 404, as if it did not exist.
    assert (await client.get(f"/api/seller/offers/{offer_b}", headers=a.headers)).status_code == 404
    r = await client.patch(f"/api/seller/offers/{offer_b}", headers=a.headers, json={"quantity": 0})
    assert r.status_code == 404
    listed = (await client.get("/api/seller/offers", headers=a.headers)).json()
    assert [o["id"] for o in listed] == [offer_a]
    # Naming another seller in the list or import is ignored for a seller: its own scope wins.
    listed = (
        await client.get(f"/api/seller/offers?seller_id={b.seller_id}", headers=a.headers)
    ).json()
    assert [o["id"] for o in listed] == [offer_a]
    r = await client.post(
        f"/api/seller/offers/import?seller_id={b.seller_id}",
        headers={**a.headers, "content-type": "text/csv"},
        content=csv,
    )
    assert r.status_code == 200 and r.json()["updated"] == 1
    mine = (await client.get(f"/api/seller/offers/{offer_a}", headers=a.headers)).json()
    theirs = (await client.get(f"/api/seller/offers/{offer_b}", headers=b.headers)).json()
    assert (mine["price"], mine["quantity"]) == ("17.00", 3)
    assert (theirs["price"], theirs["quantity"]) == ("19.00", 5)

    # Customers: 403; anonymous: 401, on every seller endpoint; staff approve/suspend too.
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/seller/offers", {}),
        ("POST", "/api/seller/offers", {"json": {"sku": shop.sku, "price": "1.00"}}),
        ("GET", f"/api/seller/offers/{offer_a}", {}),
        ("PATCH", f"/api/seller/offers/{offer_a}", {"json": {"quantity": 1}}),
        ("POST", "/api/seller/offers/import", {"content": csv}),
        ("GET", "/api/admin/sellers", {}),
        ("POST", f"/api/admin/sellers/{a.seller_id}/approve", {}),
        ("POST", f"/api/admin/sellers/{a.seller_id}/suspend", {"json": {"reason": "x"}}),
    ]
    for method, url, extra in calls:
        anonymous = await client.request(method, url, **extra)
        assert anonymous.status_code == 401, (method, url, anonymous.text)
        customer = await client.request(method, url, headers=customer_headers, **extra)
        assert customer.status_code == 403, (method, url, customer.text)
    for method, url, extra in calls[-3:]:
        seller = await client.request(method, url, headers=a.headers, **extra)
        assert seller.status_code == 403, (method, url)

    # Staff see and change everyone's.
    listed = (await client.get("/api/seller/offers", headers=staff_headers)).json()
    assert {o["id"] for o in listed} == {offer_a, offer_b}
    r = await client.patch(
        f"/api/seller/offers/{offer_b}", headers=staff_headers, json={"price": "21.00"}
    )
    assert r.status_code == 200 and r.json()["price"] == "21.00"
    r = await _offer(client, staff_headers, shop.other_sku, seller_id=b.seller_id)
    assert r.status_code == 201 and r.json()["seller_id"] == b.seller_id
    assert (await _offer(client, staff_headers, shop.other_sku)).status_code == 422


async def test_bad_offers_write_nothing(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop, staff_headers: dict[str, str]
) -> None:
    a = await approved_seller(client, app, staff_headers, "Alpha")
    before = await _offers_state(runtime_of(app).db)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"price": "-1.00"}, "price"),
        ({"price": "1.005"}, "price"),
        ({"price": "0"}, "price"),
        ({"price": 18}, "price"),
        ({"quantity": -1}, "quantity"),
        ({"sku": "NO-SUCH-SKU"}, "sku"),
        ({"handling_days": 99}, "handling_days"),
    ]
    for fields, field in bad:
        r = await _offer(client, a.headers, fields.pop("sku", shop.sku), **fields)
        assert r.status_code == 422, (fields, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert any(field in e["field"] for e in r.json()["errors"]), r.json()
    assert await _offers_state(runtime_of(app).db) == before
    assert (await _offer(client, a.headers, shop.sku)).status_code == 201
    assert (await _offer(client, a.headers, shop.sku)).status_code == 409  # one per variant


async def test_payout_details_are_references_not_bank_numbers(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    headers = await user_headers(app, "customer", "iban@example.com")
    body = {
        "name": "Iban",
        "legal_name": "Iban AG",
        "email": "iban@example.com",
        "country": "DE",
        "ship_to": ["DE"],
        "payout_reference": "DE89370400440532013000",
    }
    r = await client.post("/api/sellers/apply", headers=headers, json=body)
    assert r.status_code == 422 and r.json()["code"] == "bank_number_refused"
    r = await client.post("/api/sellers/apply", json={**body, "payout_reference": "acct_1"})
    assert r.status_code == 401


async def test_csv_import_modes_and_row_report(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop, staff_headers: dict[str, str]
) -> None:
    a = await approved_seller(client, app, staff_headers, "Alpha")
    headers = {**a.headers, "content-type": "text/csv"}
    url = "/api/seller/offers/import"
    good_and_bad = (
        "sku,price,quantity,handling_days\n"
        "KETTLE-1,18.50,4,1\n"
        "KETTLE-2,-3,2,1\n"
        "NOPE,1.00,1,1\n"
        "KETTLE-1,18.00,4,1\n"
    )
    r = await client.post(url, headers=headers, content=good_and_bad.encode())
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["created"] == 1
    assert [(e["row"], e["column"]) for e in report["errors"]] == [
        (3, "price"),
        (4, "sku"),
        (5, "sku"),
    ]
    # Partial update: only the cells given change.
    r = await client.post(
        f"{url}?mode=partial_update", headers=headers, content=b"sku,quantity\nKETTLE-1,9\n"
    )
    assert r.json()["updated"] == 1 and r.json()["errors"] == []
    [offer] = (await client.get("/api/seller/offers", headers=a.headers)).json()
    assert (offer["price"], offer["quantity"], offer["handling_days"]) == ("18.50", 9, 1)
    # Partial update of an offer that does not exist: reported, not created.
    r = await client.post(
        f"{url}?mode=partial_update", headers=headers, content=b"sku,quantity\nKETTLE-2,9\n"
    )
    assert [(e["row"], e["column"]) for e in r.json()["errors"]] == [(2, "sku")]
    # Replace with a broken row: nothing at all is written.
    before = await _offers_state(runtime_of(app).db)
    r = await client.post(
        f"{url}?mode=replace",
        headers=headers,
        content=b"sku,price,quantity\nKETTLE-2,5.00,1\nKETTLE-1,abc,1\n",
    )
    assert r.status_code == 422 and r.json()["code"] == "import_rejected"
    assert [(e["row"], e["column"]) for e in r.json()["rows"]] == [(3, "price")]
    assert await _offers_state(runtime_of(app).db) == before
    # Replace, all good: KETTLE-2 offered, KETTLE-1 taken off sale.
    r = await client.post(
        f"{url}?mode=replace", headers=headers, content=b"sku,price,quantity\nKETTLE-2,5.00,1\n"
    )
    assert r.status_code == 200 and (r.json()["created"], r.json()["deactivated"]) == (1, 1)
    # Not UTF-8, no usable header, unknown mode.
    r = await client.post(url, headers=headers, content="sku,price\nKÉ,1\n".encode("latin-1"))
    assert r.status_code == 422 and r.json()["code"] == "invalid_encoding"
    r = await client.post(url, headers=headers, content=b"price,colour\n1,red\n")
    assert r.status_code == 422 and r.json()["code"] == "invalid_header"
    r = await client.post(f"{url}?mode=merge", headers=headers, content=b"sku\n")
    assert r.status_code == 422


async def test_buy_box_picks_by_score_and_changes_deterministically(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop, staff_headers: dict[str, str]
) -> None:
    db = runtime_of(app).db
    a = await approved_seller(client, app, staff_headers, "Alpha")
    b = await approved_seller(client, app, staff_headers, "Beta")

    async def featured(country: str = "DE") -> str | None:
        async with db.transaction() as uow:
            found = await service.featured_offer(uow, shop.variant_id, country)
        return None if found is None else found.seller_id

    # The house (20.00, no shipping method charges) is featured until a cheaper offer.
    assert await featured() == service.HOUSE_SELLER_ID
    r = await _offer(client, a.headers, shop.sku, price="18.00", shipping="1.00", handling_days=1)
    offer_a = r.json()["id"]
    assert await featured() == a.seller_id
    # The same landed price from B, but slower: A stays.
    await _offer(client, b.headers, shop.sku, price="18.50", shipping="0.50", handling_days=3)
    assert await featured() == a.seller_id
    # Exactly the same offer as A: the tie goes to the lower seller id, every time.
    [offer_b] = (await client.get("/api/seller/offers", headers=b.headers)).json()
    await client.patch(
        f"/api/seller/offers/{offer_b['id']}",
        headers=b.headers,
        json={"handling_days": 1},
    )
    winners = {await featured() for _ in range(3)}
    assert winners == {min(a.seller_id, b.seller_id)}
    # A sold out: B; A suspended: B; B over the defect threshold: the house.
    await client.patch(f"/api/seller/offers/{offer_a}", headers=a.headers, json={"quantity": 0})
    assert await featured() == b.seller_id
    await client.patch(f"/api/seller/offers/{offer_a}", headers=a.headers, json={"quantity": 2})
    r = await client.post(
        f"/api/admin/sellers/{a.seller_id}/suspend", headers=staff_headers, json={"reason": "late"}
    )
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    assert await featured() == b.seller_id
    async with db.transaction() as uow:
        seller = await service.get_seller(uow, b.seller_id)
        assert seller is not None
        counts = service.PerformanceCounts(orders=100, defective_orders=2)
        perf = await service.record_performance(uow, seller, counts, service.Thresholds())
    assert perf.defect_rate_bp == 200 and not perf.eligible
    assert await featured() == service.HOUSE_SELLER_ID
    # Other sellers sorted by landed price on the product page API.
    r = await client.get(f"/api/products/{shop.product_id}/offers?country=DE")
    assert r.json()["variants"][0]["featured"]["seller_id"] == service.HOUSE_SELLER_ID
    # A seller whose warehouse does not ship to the destination is not offered there.
    assert (await client.get(f"/api/sellers/{a.seller_id}")).status_code == 404


async def test_other_sellers_sorted_by_landed_price(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop, staff_headers: dict[str, str]
) -> None:
    a = await approved_seller(client, app, staff_headers, "Alpha")
    b = await approved_seller(client, app, staff_headers, "Beta", ship_to=("DE",))
    await _offer(client, a.headers, shop.sku, price="19.00", shipping="2.00", handling_days=0)
    await _offer(client, b.headers, shop.sku, price="15.00", shipping="0", handling_days=5)
    r = await client.get(f"/api/products/{shop.product_id}/offers?country=DE")
    variant = r.json()["variants"][0]
    assert variant["featured"]["seller_id"] == b.seller_id
    assert [o["landed_price"] for o in variant["others"]] == ["20.00", "21.00"]
    r = await client.get(f"/api/products/{shop.product_id}/offers?country=FR")
    assert r.json()["variants"][0]["featured"]["seller_id"] != b.seller_id  # B ships to DE only
    async with runtime_of(app).db.transaction() as uow:
        assert await service.featured_prices(uow, [shop.product_id]) == {shop.product_id: 1500}
        line = await service.offer_for_line(uow, shop.variant_id, b.seller_id, "DE")
        house = await service.offer_for_line(uow, shop.variant_id, None, "DE")
    assert line.warehouse_code == b.warehouse_code and line.price == 1500
    assert house.is_house and house.warehouse_code is None and house.price == 2000
