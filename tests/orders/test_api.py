"""The customer and staff order APIs: isolation, detail, keyset pages, search, manual moves."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from mercato.db import Database
from mercato.orders import service
from mercato.orders.service import ORDERS
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from tests.orders.conftest import (
    Shopper,
    assert_problem,
    make_draft,
    move,
    place,
    shopper,
    snapshot,
)


async def set_created(db: Database, order_id: str, when: datetime) -> None:
    async with db.transaction() as conn:
        await conn.execute(update(ORDERS).where(ORDERS.c.id == order_id).values(created_at=when))


async def page_through(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], limit: int, between: Any = None
) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        r = await client.get(url, headers=headers, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= limit
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
        if between is not None:
            await between()


async def test_customers_see_only_their_own_orders(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: Database,
    provider: SandboxProvider,
    staff_headers: dict[str, str],
) -> None:
    ada = await shopper(app, "ada@example.com")
    bob = await shopper(app, "bob@example.com")
    draft = make_draft(user_id=ada.id, email=ada.email)
    auth = await payments.authorize(
        db,
        provider,
        owner=draft.checkout_id,
        amount=draft.total,
        currency="EUR",
        token="tok_visa",
        idempotency_key=f"auth:{draft.checkout_id}",
    )
    first = await place(db, make_draft(user_id=ada.id, email=ada.email))
    second = await place(db, replace(draft, payment_intent_id=auth.intent_id))
    bobs = await place(db, make_draft(user_id=bob.id, email=bob.email))

    r = await client.get("/api/orders", headers=ada.headers)
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["id"] for i in items] == [second.id, first.id]
    assert items[0] == {
        "id": second.id,
        "status": "paid",
        "currency": "EUR",
        "total": "90.43",
        "refunded": "0.00",
        "item_count": 3,
        "created_at": items[0]["created_at"],
    }

    r = await client.get(f"/api/orders/{second.id}", headers=ada.headers)
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["totals"] == {
        "currency": "EUR",
        "subtotal": "85.48",
        "shipping": "4.95",
        "discount": "0.00",
        "tax": "0.00",
        "total": "90.43",
        "refunded": "0.00",
    }
    assert [
        (ln["sku"], ln["quantity"], ln["unit_price"], ln["total"]) for ln in detail["lines"]
    ] == [
        ("SKU-A", 2, "19.99", "39.98"),
        ("SKU-B", 1, "45.50", "45.50"),
    ]
    assert detail["payment"] == {
        "status": "authorized",
        "card_brand": "visa",
        "card_last4": "4242",
        "currency": "EUR",
        "authorized": "90.43",
        "captured": "0.00",
        "refunded": "0.00",
    }
    assert detail["shipments"] == []
    assert [(t["from_status"], t["to_status"], t["actor"]) for t in detail["timeline"]] == [
        (None, "paid", "checkout"),
    ]
    assert detail["can_cancel"] is True and detail["cancellation"] is None
    assert "user_id" not in detail and "checkout_id" not in detail

    for order_id in (bobs.id, "ord_does_not_exist"):
        r = await client.get(f"/api/orders/{order_id}", headers=ada.headers)
        assert_problem(r, 404, "not_found")
    assert_problem(await client.get("/api/orders"), 401, "unauthorized")
    assert_problem(await client.get("/api/admin/orders", headers=ada.headers), 403, "forbidden")

    r = await client.get(f"/api/admin/orders/{bobs.id}", headers=staff_headers)
    assert r.status_code == 200
    staff_view = r.json()
    assert staff_view["user_id"] == bob.id and staff_view["email"] == "bob@example.com"
    assert staff_view["next_statuses"] == ["cancelled", "fulfilling", "shipped"]
    assert staff_view["payment"] is None  # this test order has no payment intent
    assert staff_view["timeline"][0]["actor"].startswith("checkout:")
    assert_problem(
        await client.get("/api/admin/orders/ord_nope", headers=staff_headers), 404, "not_found"
    )


async def test_shipments_come_from_registered_readers(
    app: FastAPI, client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = await shopper(app, "ada@example.com")
    order = await place(db, make_draft(user_id=ada.id, email=ada.email))

    async def reader(_executor: Any, info: service.OrderInfo) -> list[dict[str, Any]]:
        return [{"id": f"shp_{info.id}", "carrier": "DHL", "tracking": "JD0001"}]

    monkeypatch.setattr(service, "shipment_readers", [reader])
    r = await client.get(f"/api/orders/{order.id}", headers=ada.headers)
    assert r.json()["shipments"] == [
        {"id": f"shp_{order.id}", "carrier": "DHL", "tracking": "JD0001"}
    ]


async def test_keyset_pages_never_repeat_or_skip_while_orders_arrive(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    ada = await shopper(app, "ada@example.com")
    bob = await shopper(app, "bob@example.com")
    existing = [
        (await place(db, make_draft(user_id=ada.id, email=ada.email))).id for _ in range(17)
    ]
    await place(db, make_draft(user_id=bob.id, email=bob.email))
    # Several orders placed in the same instant: the id breaks the tie.
    tie = datetime(2026, 1, 5, 12, 0, 0, 123456, tzinfo=UTC)
    for order_id in existing[3:8]:
        await set_created(db, order_id, tie)
    arrived: list[str] = []

    async def new_order() -> None:
        arrived.append((await place(db, make_draft(user_id=ada.id, email=ada.email))).id)

    seen = await page_through(client, "/api/orders", ada.headers, 4, between=new_order)

    assert len(seen) == len(set(seen)), "an order was shown twice"
    assert set(seen) == set(existing), "an order was skipped (or a newer one slipped in)"
    assert arrived  # orders did arrive meanwhile; they sit before the first page
    again = await page_through(client, "/api/orders", ada.headers, 100)
    assert again[: len(arrived)] == arrived[::-1]
    assert again[len(arrived) :] == seen


async def test_bad_cursors_and_limits(
    app: FastAPI, client: httpx.AsyncClient, db: Database, staff_headers: dict[str, str]
) -> None:
    ada = await shopper(app, "ada@example.com")
    for _ in range(3):
        await place(db, make_draft(user_id=ada.id, email=ada.email))
    r = await client.get("/api/orders", headers=ada.headers, params={"limit": 1})
    cursor = r.json()["next_cursor"]
    assert cursor
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    for bad in (tampered, "not-a-cursor"):
        r = await client.get("/api/orders", headers=ada.headers, params={"cursor": bad})
        assert_problem(r, 400, "invalid_cursor")
    staff_page = await client.get("/api/admin/orders", headers=staff_headers, params={"limit": 1})
    staff_cursor = staff_page.json()["next_cursor"]
    r = await client.get("/api/orders", headers=ada.headers, params={"cursor": staff_cursor})
    assert_problem(r, 400, "invalid_cursor")
    for limit in (0, 101):
        r = await client.get("/api/orders", headers=ada.headers, params={"limit": limit})
        assert_problem(r, 422, "validation_error")


async def test_staff_search_filters(
    app: FastAPI, client: httpx.AsyncClient, db: Database, staff_headers: dict[str, str]
) -> None:
    ada = await shopper(app, "ada@example.com")
    bob = await shopper(app, "bob@example.com")
    jan = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    feb = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
    mar = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    made: dict[str, str] = {}
    for name, who, when, statuses in (
        ("ada_jan_shipped", ada, jan, ("shipped",)),
        ("ada_feb_paid", ada, feb, ()),
        ("ada_mar_cancelled", ada, mar, ("cancelled",)),
        ("bob_feb_shipped", bob, feb + timedelta(hours=1), ("fulfilling", "shipped")),
        ("bob_mar_paid", bob, mar, ()),
    ):
        order = await place(db, make_draft(user_id=who.id, email=who.email))
        await set_created(db, order.id, when)
        if statuses:
            await move(db, order.id, *statuses)
        made[order.id] = name

    async def search(**params: Any) -> list[str]:
        r = await client.get("/api/admin/orders", headers=staff_headers, params=params)
        assert r.status_code == 200, r.text
        return [made[item["id"]] for item in r.json()["items"]]

    assert await search() == [
        "bob_mar_paid",
        "ada_mar_cancelled",
        "bob_feb_shipped",
        "ada_feb_paid",
        "ada_jan_shipped",
    ]
    assert await search(status="shipped") == ["bob_feb_shipped", "ada_jan_shipped"]
    assert await search(email="ADA@example.com ") == [
        "ada_mar_cancelled",
        "ada_feb_paid",
        "ada_jan_shipped",
    ]
    feb_only = {"created_from": "2026-02-01T00:00:00Z", "created_to": "2026-03-01T00:00:00Z"}
    assert await search(**feb_only) == ["bob_feb_shipped", "ada_feb_paid"]
    assert await search(**feb_only, email="bob@example.com", status="shipped") == [
        "bob_feb_shipped"
    ]
    assert await search(created_from="2026-03-10T09:00:00") == ["bob_mar_paid", "ada_mar_cancelled"]
    assert await search(status="refunded") == []

    paged = await page_through(client, "/api/admin/orders", staff_headers, 2)
    assert [made[i] for i in paged] == await search()
    r = await client.get("/api/admin/orders", headers=staff_headers, params={"limit": 2})
    item = r.json()["items"][0]
    assert item["email"] == "bob@example.com" and item["user_id"] == bob.id

    for params, field, code in (
        ({"status": "lost"}, "status", "validation_error"),
        (
            {"created_from": "2026-03-01T00:00:00Z", "created_to": "2026-02-01T00:00:00Z"},
            None,
            "invalid_range",
        ),
        ({"created_from": "yesterday"}, "created_from", "validation_error"),
    ):
        r = await client.get("/api/admin/orders", headers=staff_headers, params=params)
        body = assert_problem(r, 422, code)
        if field is not None:
            assert [e["field"] for e in body["errors"]] == [field]


async def test_staff_moves_an_order_by_hand(
    app: FastAPI, client: httpx.AsyncClient, db: Database, staff_headers: dict[str, str]
) -> None:
    ada: Shopper = await shopper(app, "ada@example.com")
    order = await place(db, make_draft(user_id=ada.id, email=ada.email))
    url = f"/api/admin/orders/{order.id}/transition"

    r = await client.post(url, headers=staff_headers, json={"to": "fulfilling", "reason": "picked"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "fulfilling" and body["version"] == 2
    assert body["timeline"][-1]["reason"] == "picked"
    assert body["next_statuses"] == ["cancelled", "shipped"]

    before = await snapshot(db)
    r = await client.post(url, headers=staff_headers, json={"to": "refunded"})
    problem = assert_problem(r, 409, "invalid_transition")
    assert (problem["from"], problem["to"]) == ("fulfilling", "refunded")
    assert problem["allowed"] == ["cancelled", "shipped"]
    assert problem["type"].startswith("https://")
    assert_problem(
        await client.post(url, headers=staff_headers, json={"to": "lost"}), 422, "validation_error"
    )
    assert_problem(await client.post(url, headers=staff_headers, json={}), 422, "validation_error")
    r = await client.post(
        "/api/admin/orders/ord_nope/transition", headers=staff_headers, json={"to": "shipped"}
    )
    assert_problem(r, 404, "not_found")
    assert_problem(
        await client.post(url, headers=ada.headers, json={"to": "shipped"}), 403, "forbidden"
    )
    assert await snapshot(db) == before

    r = await client.post(url, headers=staff_headers, json={"to": "cancelled", "reason": "fraud"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["cancellation"] == {"stock_returned": True, "payment_released": True}
