"""Moderation and what shoppers do with published reviews: auto-approval of star-only reviews,
the abuse filter sending reviews to staff, approve / reject / respond, helpful votes and
reports, the product's figures and event after each decision, sorts, star filters and keyset
pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mercato.db import Database, utcnow
from mercato.events import OutboxEvent
from mercato.identity import service as identity
from mercato.payments.sandbox import SandboxProvider
from mercato.reviews import service as reviews
from tests.reviews.conftest import (
    Shopper,
    assert_problem,
    client_at,
    received,
    shopper,
    snapshot,
    staff_post,
    stocked_product,
    stored,
    truth,
    write,
)

pytestmark = pytest.mark.usefixtures("warehouse")


async def _rating_events(db: Database, product_id: str) -> list[dict[str, Any]]:
    async with db.transaction() as uow:
        rows = await uow.execute(
            select(OutboxEvent.payload)
            .where(
                OutboxEvent.type == reviews.PRODUCT_RATING_CHANGED,
                OutboxEvent.aggregate_id == product_id,
            )
            .order_by(OutboxEvent.seq)
        )
        # Without the request id the stored payload carries (metadata no consumer sees).
        return [{k: v for k, v in r.payload.items() if k != "_request_id"} for r in rows]


async def test_moderation_feedback_and_the_products_figures(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    product = await stocked_product(adb)
    product_id = product[0]
    bob = await shopper(app, "bob@example.com")
    cy = await shopper(app, "cy@example.com")
    for who in (ada, bob, cy):
        await received(client, adb, sandbox, who, staff, product)

    # Star-only from a verified buyer: published at once (the shop's default).
    r = await write(client, bob, product_id, rating=5)
    assert r.json()["state"] == "approved"
    bob_review = r.json()["id"]
    assert [e["count"] for e in await _rating_events(adb, product_id)] == [1]
    # With text: staff read it first; with a link: flagged as well.
    r = await write(client, ada, product_id, rating=2, title="Leaks", body="Water everywhere.")
    ada_review = r.json()["id"]
    assert r.json()["state"] == "pending"
    r = await write(client, cy, product_id, rating=1, body="Buy a better one at www.example.com")
    cy_review = r.json()["id"]
    assert r.json()["state"] == "pending"
    r = await client.get("/api/admin/reviews", params={"flagged": "true"}, headers=staff.headers)
    assert [(x["id"], x["flags"]) for x in r.json()["items"]] == [(cy_review, ["link"])]

    # Staff: approve, reject (a reason is required), respond.
    before = await snapshot(adb)
    assert_problem(
        await staff_post(client, staff, ada_review, "reject", {}), 422, "validation_error"
    )
    assert_problem(await staff_post(client, bob, ada_review, "approve"), 403, "forbidden")
    assert_problem(await staff_post(client, staff, "rev_missing", "approve"), 404, "not_found")
    assert await snapshot(adb) == before
    r = await staff_post(client, staff, ada_review, "approve")
    assert r.status_code == 200 and r.json()["state"] == "approved"
    assert_problem(
        await staff_post(client, staff, ada_review, "approve"), 409, "invalid_transition"
    )
    r = await staff_post(client, staff, cy_review, "reject", {"reason": "Advertising"})
    assert (r.json()["state"], r.json()["reject_reason"]) == ("rejected", "Advertising")
    assert r.json()["flagged"] is False  # staff have looked at it
    r = await staff_post(
        client, staff, ada_review, "respond", {"text": "Sorry! Write to us for a replacement."}
    )
    assert r.json()["response"]["text"] == "Sorry! Write to us for a replacement."

    figures = await stored(adb, product_id)
    assert figures == await truth(adb, product_id)
    assert (figures.count, figures.rounded, figures.histogram) == (2, 3.5, (0, 1, 0, 0, 1))
    assert (await _rating_events(adb, product_id))[-1] == {
        "product_id": product_id,
        "average": 3.5,
        "count": 2,
        "histogram": {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1},
    }
    r = await client.get(f"/api/products/{product_id}")
    assert r.json()["rating"]["average"] == 3.5

    # Helpful votes and reports: once each, never one's own, published reviews only.
    r = await client.post(f"/api/reviews/{bob_review}/helpful", headers=ada.headers)
    assert r.json() == {"review_id": bob_review, "helpful_count": 1}
    before = await snapshot(adb)
    for who, review_id, status, code in (
        (ada, bob_review, 409, "already_voted"),
        (bob, bob_review, 403, "own_review"),
        (ada, cy_review, 404, "not_found"),  # rejected: not published
    ):
        r = await client.post(f"/api/reviews/{review_id}/helpful", headers=who.headers)
        assert_problem(r, status, code)
    r = await client.post(
        f"/api/reviews/{ada_review}/report", json={"reason": "rude"}, headers=bob.headers
    )
    assert [e["field"] for e in assert_problem(r, 422, "validation_error")["errors"]] == ["reason"]
    assert await snapshot(adb) == before
    r = await client.post(
        f"/api/reviews/{ada_review}/report", json={"reason": "off_topic"}, headers=bob.headers
    )
    assert r.status_code == 201 and r.json()["reason"] == "off_topic"
    r = await client.post(
        f"/api/reviews/{ada_review}/report", json={"reason": "spam"}, headers=bob.headers
    )
    assert_problem(r, 409, "already_reported")
    r = await client.get("/api/admin/reviews", params={"flagged": "true"}, headers=staff.headers)
    assert [(x["id"], x["report_count"]) for x in r.json()["items"]] == [(ada_review, 1)]

    # The public list: published only, sorted, filtered by stars.
    async def listed(**params: Any) -> list[str]:
        r = await client.get(f"/api/products/{product_id}/reviews", params=params)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["items"]]

    assert await listed() == [bob_review, ada_review]  # most helpful first
    assert await listed(sort="lowest") == [ada_review, bob_review]
    assert await listed(sort="newest") == [ada_review, bob_review]
    assert await listed(stars=5) == [bob_review]
    assert await listed(stars=3) == []
    r = await client.get(f"/api/products/{product_id}/reviews", params={"sort": "best"})
    assert_problem(r, 422, "validation_error")
    r = await client.get(f"/api/products/{product_id}/reviews", params={"cursor": "forged"})
    assert_problem(r, 400, "invalid_cursor")
    public = (await client.get(f"/api/products/{product_id}/reviews")).json()["items"][0]
    assert "flags" not in public and "user_id" not in public and "state" not in public


async def test_keyset_pages_visit_every_review_once_in_each_sort(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    staff: Shopper,
) -> None:
    product = await stocked_product(adb)
    ratings = [3, 5, 3, 1, 5, 4, 3]
    for n, stars in enumerate(ratings):
        who = await shopper(app, f"c{n}@example.com")
        await received(client, adb, sandbox, who, staff, product)
        async with client_at(app, f"10.0.0.{n}") as own:
            assert (await write(own, who, product[0], rating=stars)).json()["state"] == "approved"
    for sort in reviews.SORTS:
        seen: list[tuple[int, str]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"sort": sort, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            body = (await client.get(f"/api/products/{product[0]}/reviews", params=params)).json()
            seen += [(x["rating"], x["id"]) for x in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert len(seen) == len(ratings) and len(set(seen)) == len(ratings)
        newest_first = sorted(seen, key=lambda x: x[1], reverse=True)
        expected = {
            "helpful": newest_first,
            "newest": newest_first,
            "highest": sorted(newest_first, key=lambda x: -x[0]),
            "lowest": sorted(newest_first, key=lambda x: x[0]),
        }[sort]
        assert seen == expected, sort


async def test_the_abuse_filter_sends_suspicious_reviews_to_staff(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    staff: Shopper,
) -> None:
    """Repeated text, a burst from one customer, and a new account giving extreme ratings:
    flagged and pending, however star-only."""
    products = [await stocked_product(adb, f"Kettle {n}") for n in range(4)]
    old = await shopper(app, "old@example.com")
    async with adb.transaction() as uow:  # an account from last year: not "new"
        await uow.execute(
            identity.User.__table__.update()  # type: ignore[attr-defined]
            .where(identity.User.__table__.c.id == old.id)  # type: ignore[attr-defined]
            .values(created_at=utcnow() - timedelta(days=365))
        )
    newbie = await shopper(app, "new@example.com")
    copycat = await shopper(app, "copy@example.com")
    for p in products:
        await received(client, adb, sandbox, old, staff, p)
        await received(client, adb, sandbox, newbie, staff, p)
    await received(client, adb, sandbox, copycat, staff, products[0])

    text = "Absolutely the best kettle I have ever owned!!!"
    home, elsewhere = client_at(app, "10.0.0.1"), client_at(app, "10.0.0.3")
    async with home, elsewhere:
        states = []
        for p in products:
            body = text if p is products[0] else None
            states.append((await write(home, old, p[0], rating=3, body=body)).json()["state"])
        # The text waits for staff; two star-only reviews pass; the fourth in an hour from
        # one customer (and one address) is a burst.
        assert states == ["pending", "approved", "approved", "pending"]
        # The same text again, from the busy address.
        r = await write(home, copycat, products[0][0], rating=3, body=text.upper())
        assert r.json()["state"] == "pending"
        # A brand-new account: 5 stars, 5 stars, then the third extreme rating is flagged.
        found = [
            (await write(elsewhere, newbie, p[0], rating=5)).json()["state"] for p in products[:3]
        ]
        assert found == ["approved", "approved", "pending"]

    r = await client.get(
        "/api/admin/reviews", params={"flagged": "true", "limit": 50}, headers=staff.headers
    )
    flags = sorted(tuple(x["flags"]) for x in r.json()["items"])
    assert flags == [
        ("burst_customer", "burst_ip"),
        ("new_account_extreme",),
        ("repeated_text", "burst_ip"),
    ]
