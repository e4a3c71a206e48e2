"""Who may review what: only customers who received the product (a delivered order line), once
per product; their own review only (another customer's is "not found"); and bad input answered
with a problem naming the field, nothing written."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from mercato.db import Database
from mercato.payments.sandbox import SandboxProvider
from tests.reviews.conftest import (
    Shopper,
    assert_problem,
    deliver,
    placed,
    received,
    shipped,
    shopper,
    snapshot,
    stocked_product,
    write,
)

pytestmark = pytest.mark.usefixtures("warehouse")


async def test_only_a_customer_who_received_the_product_reviews_it_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    product = await stocked_product(adb)
    other = await stocked_product(adb, "Other kettle")
    product_id = product[0]
    before = await snapshot(adb)

    # Never bought it; bought it but it has not arrived; had another product delivered.
    assert_problem(await write(client, ada, product_id, rating=5), 403, "purchase_not_verified")
    order = await placed(adb, sandbox, ada, product)
    assert_problem(await write(client, ada, product_id, rating=5), 403, "purchase_not_verified")
    shipment = await shipped(client, staff, order.id)
    assert_problem(await write(client, ada, product_id, rating=5), 403, "purchase_not_verified")
    bob = await shopper(app, "bob@example.com")
    await received(client, adb, sandbox, bob, staff, other)
    assert_problem(await write(client, bob, product_id, rating=5), 403, "purchase_not_verified")
    after = await snapshot(adb)
    assert after["reviews_reviews"] == before["reviews_reviews"] == []

    # Delivered: a verified review, once.
    await deliver(client, staff, shipment)
    r = await write(client, ada, product_id, rating=4, title="Boils fast", body="Quiet, too.")
    assert r.status_code == 201, r.text
    review = r.json()
    assert review["verified_purchase"] is True
    assert review["state"] == "pending"  # it has text: staff read it first
    assert review["author"] == "ada" and review["rating"] == 4
    again = await snapshot(adb)
    assert_problem(await write(client, ada, product_id, rating=3), 409, "review_exists")
    assert await snapshot(adb) == again

    # Unknown products are not found; signed-out callers are asked who they are.
    assert_problem(await write(client, ada, "prd_missing", rating=5), 404, "not_found")
    r = await client.post(f"/api/products/{product_id}/reviews", json={"rating": 5})
    assert_problem(r, 401, "unauthorized")


async def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    product = await stocked_product(adb)
    await received(client, adb, sandbox, ada, staff, product)
    before = await snapshot(adb)
    cases: list[tuple[dict[str, object], str]] = [
        ({"rating": 0}, "rating"),
        ({"rating": 6}, "rating"),
        ({"rating": 4.5}, "rating"),
        ({"rating": "4"}, "rating"),
        ({"rating": True}, "rating"),
        ({}, "rating"),
        ({"rating": 5, "title": "t" * 121}, "title"),
        ({"rating": 5, "body": "b" * 5001}, "body"),
        ({"rating": 5, "stars": 5}, "stars"),
        ({"rating": 5, "title": "Nice\u202egnikcah"}, "title"),
        ({"rating": 5, "title": "two\nlines"}, "title"),
        ({"rating": 5, "body": "boils\x01fast"}, "body"),
        ({"rating": 5, "body": "\x1b[31mred"}, "body"),
    ]
    for body, field in cases:
        r = await write(client, ada, product[0], **body)
        problem = assert_problem(r, 422, "validation_error")
        assert [e["field"] for e in problem["errors"]] == [field], (body, problem)
    assert await snapshot(adb) == before


async def test_own_review_edited_and_deleted_another_customers_is_not_found(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    product = await stocked_product(adb)
    await received(client, adb, sandbox, ada, staff, product)
    r = await write(
        client, ada, product[0], rating=5, body="<b>Great</b> kettle, boils in a minute"
    )
    assert r.status_code == 201, r.text
    review_id = r.json()["id"]
    assert r.json()["body"] == "<b>Great</b> kettle, boils in a minute"  # plain text, kept as typed

    bob = await shopper(app, "bob@example.com")
    before = await snapshot(adb)
    r = await client.patch(f"/api/reviews/{review_id}", json={"rating": 1}, headers=bob.headers)
    assert_problem(r, 404, "not_found")
    assert_problem(
        await client.delete(f"/api/reviews/{review_id}", headers=bob.headers), 404, "not_found"
    )
    r = await client.patch(f"/api/reviews/{review_id}", json={"rating": 7}, headers=ada.headers)
    assert [e["field"] for e in assert_problem(r, 422, "validation_error")["errors"]] == ["rating"]
    r = await client.patch(f"/api/reviews/{review_id}", json={"rating": None}, headers=ada.headers)
    assert [e["field"] for e in assert_problem(r, 422, "validation_error")["errors"]] == ["rating"]
    assert await snapshot(adb) == before

    # Star-only after the edit (text cleared): the shop auto-approves it.
    r = await client.patch(
        f"/api/reviews/{review_id}", json={"rating": 4, "body": None}, headers=ada.headers
    )
    assert r.status_code == 200, r.text
    assert (r.json()["rating"], r.json()["body"], r.json()["state"]) == (4, None, "approved")
    r = await client.get(f"/api/products/{product[0]}")
    assert r.json()["rating"] == {
        "average": 4.0,
        "count": 1,
        "histogram": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0},
    }

    r = await client.delete(f"/api/reviews/{review_id}", headers=ada.headers)
    assert r.status_code == 204
    r = await client.get(f"/api/products/{product[0]}")
    assert r.json()["rating"]["count"] == 0 and r.json()["rating"]["average"] is None
    # Deleted: the customer may write a new one.
    assert (await write(client, ada, product[0], rating=2)).status_code == 201
