"""The sales rank from real orders: placed through the checkout, cancelled through the
cancellation workflow, returned and refunded through the returns workflow. After each step the
``orders.sales_rank`` job's figures equal a brute-force recount over the orders, and the index
(the ``best_selling`` sort, the listing, the default ranking, the home page's "Best sellers"
row) follows them. "Now" is handed to the job, so decay never depends on the wall clock."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from mercato import events
from mercato.catalog import service as catalog
from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.fulfilment.events import consume_outbox
from mercato.modules import wire
from mercato.orders import service as orders
from mercato.runtime import Runtime
from mercato.search import service as search
from mercato.search.engine import HASH_BITS, id_hash, sales_milli
from tests.checkout.conftest import (
    fill_cart,
    make_customers,
    make_shop,
    make_variant,
    post_checkout,
)
from tests.fulfilment.conftest import Shopper, ship
from tests.returns.conftest import ask_return

WINDOW = 90
HALF_LIFE = 14.0
Figures = dict[str, tuple[int, float]]


def rt(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def refresh(db: Database, now: datetime) -> list[str]:
    async with db.transaction() as uow:
        return await orders.refresh_sales_ranks(
            uow, now=now, window_days=WINDOW, half_life_days=HALF_LIFE
        )


async def stored(db: Database, product_ids: list[str]) -> Figures:
    async with db.transaction() as uow:
        _, found = await orders.sales_ranks(uow, product_ids)
    return {p: (s.units, s.score) for p, s in found.items()}


async def brute_force(db: Database, order_ids: list[str], now: datetime) -> Figures:
    """Every order line recounted: units of orders not cancelled less those returned, each
    weighted by its age in days."""
    units: defaultdict[str, int] = defaultdict(int)
    score: defaultdict[str, float] = defaultdict(float)
    async with db.transaction() as uow:
        for order_id in order_ids:
            order = await orders.get_order(uow, order_id)
            assert order is not None
            age = (now.date() - order.created_at.astimezone(UTC).date()).days
            if order.status == "cancelled" or age >= WINDOW:
                continue
            for line in order.lines:
                net = line.quantity - line.quantity_returned
                units[line.product_id] += net
                score[line.product_id] += net * 0.5 ** (age / HALF_LIFE)
    return {p: (n, round(score[p], 3)) for p, n in units.items() if n > 0}


async def sync_index(app: FastAPI) -> None:
    """The search share of a worker pass: deliver the outbox, then apply and commit."""
    wire()
    await events.dispatcher.dispatch_once(rt(app))
    await search.sync_index(rt(app), bootstrap=False)


def best_selling(figures: Figures, products: list[str]) -> list[str]:
    """Brute force: by sales rank, then (the keys' tie-break) by the id's hash."""
    low = (1 << HASH_BITS) - 1

    def key(p: str) -> tuple[int, int]:
        return sales_milli(figures.get(p, (0, 0.0))[1]), id_hash(p) & low

    return sorted(products, key=key, reverse=True)


async def index_order(client: httpx.AsyncClient) -> tuple[list[str], list[str], list[str]]:
    r = await client.get("/api/search", params={"sort": "best_selling", "limit": "100"})
    assert r.status_code == 200, r.text
    listing = await client.get("/api/products", params={"sort": "best_selling", "limit": "100"})
    assert listing.status_code == 200, listing.text
    home = await client.get("/")
    assert home.status_code == 200
    row = home.text.split('id="best-heading"', 1)[1].split("</section>", 1)[0]
    shown = list(dict.fromkeys(re.findall(r'href="/p/([^"]+)"', row)))
    searched = [hit["id"] for hit in r.json()["hits"]]
    return searched, [item["id"] for item in listing.json()["items"]], shown


async def assert_index_follows(
    app: FastAPI, client: httpx.AsyncClient, figures: Figures, products: list[str]
) -> None:
    await sync_index(app)
    expected = best_selling(figures, products)
    searched, listed, home_row = await index_order(client)
    assert searched == expected
    assert listed == expected
    assert home_row == expected  # fewer products than the row holds: all of them, in order


async def sales_events(db: Database) -> int:
    async with db.transaction() as uow:
        rows = await uow.execute(
            OutboxEvent.__table__.select().where(OutboxEvent.type == orders.SALES_RANKS_CHANGED)
        )
        return len(list(rows))


async def test_sales_rank_follows_orders_cancellations_and_returns(
    app: FastAPI, client: httpx.AsyncClient, adb: Database, staff: Shopper
) -> None:
    assert orders.SALES_RANKS_CHANGED == search.SALES_RANKS_CHANGED
    await make_shop(adb)
    kettle, mug, pot, lamp = [await make_variant(adb, price=1000 + i) for i in range(4)]
    async with adb.transaction() as uow:
        variants = await catalog.get_variants(uow, [kettle, mug, pot, lamp])
    product = {v: variants[v].product_id for v in (kettle, mug, pot, lamp)}
    products = list(product.values())
    await search.reindex(rt(app))
    await assert_index_follows(app, client, {}, products)

    buyers = await make_customers(adb, 3)
    baskets = [((kettle, 3), (mug, 1)), ((pot, 5),), ((mug, 1), (kettle, 1))]
    placed = []
    for buyer, basket in zip(buyers, baskets, strict=True):
        await fill_cart(adb, buyer.id, *basket)
        r = await post_checkout(client, buyer)
        assert r.status_code == 201, r.text
        placed.append(r.json()["order_id"])
    async with adb.transaction() as uow:
        created = [(await orders.get_order(uow, o)).created_at for o in placed]  # type: ignore[union-attr]
    now = max(created)

    # Orders: pot 5, kettle 4, mug 2, lamp none.
    changed = await refresh(adb, now)
    assert sorted(changed) == sorted(product[v] for v in (kettle, mug, pot))
    figures = await stored(adb, products)
    assert figures == await brute_force(adb, placed, now)
    assert {p: n for p, (n, _) in figures.items()} == {
        product[pot]: 5,
        product[kettle]: 4,
        product[mug]: 2,
    }
    await assert_index_follows(app, client, figures, products)
    # The default ranking (words that match every product alike): best sellers first.
    r = await client.get("/api/search", params={"q": "kettle", "limit": "10"})
    ranked = [h["id"] for h in r.json()["hits"]]
    assert set(ranked[:2]) == {product[pot], product[kettle]}
    assert ranked[2:] == [product[mug], product[lamp]]
    page = await client.get("/search", params={"q": "kettle", "sort": "best_selling"})
    assert page.status_code == 200
    shown = list(dict.fromkeys(re.findall(r'href="/p/([^"]+)"', page.text)))
    assert shown == best_selling(figures, products)

    # Nothing changed: the job writes and publishes nothing.
    before = await sales_events(adb)
    assert await refresh(adb, now) == []
    assert await sales_events(adb) == before

    # A cancellation takes the pot's units away.
    cancelled = await orders.cancel_order(rt(app), placed[1], actor=f"staff:{staff.id}")
    assert cancelled.status == "cancelled"
    assert await refresh(adb, now) == [product[pot]]
    figures = await stored(adb, products)
    assert figures == await brute_force(adb, placed, now)
    assert product[pot] not in figures
    await assert_index_follows(app, client, figures, products)

    # A return (received and refunded) takes two kettles away.
    first = placed[0]
    await consume_outbox(rt(app))  # allocation (the index sync above delivered it already)
    shipment = await ship(client, staff, first)
    assert shipment.status_code == 201, shipment.text
    done = await client.post(
        f"/api/admin/shipments/{shipment.json()['id']}/deliver", headers=staff.headers
    )
    assert done.status_code == 200, done.text
    async with adb.transaction() as uow:
        order = await orders.get_order(uow, first)
    assert order is not None
    kettles = next(line for line in order.lines if line.variant_id == kettle)
    buyer = buyers[0]
    made = await ask_return(
        client, Shopper(buyer.id, buyer.user.email, buyer.headers), first, [(kettles.id, 2)]
    )
    assert made.status_code == 201, made.text
    rma = made.json()["id"]
    r = await client.post(f"/api/admin/returns/{rma}/approve", headers=staff.headers)
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/admin/returns/{rma}/receive",
        json={"lines": [{"order_line_id": kettles.id, "disposition": "restock"}]},
        headers=staff.headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "refunded", r.text
    assert await refresh(adb, now) == [product[kettle]]
    figures = await stored(adb, products)
    assert figures == await brute_force(adb, placed, now)
    assert figures[product[kettle]][0] == 2
    await assert_index_follows(app, client, figures, products)

    # Decay: a half-life later every score is halved; past the window nothing counts.
    later = now + timedelta(days=HALF_LIFE)
    await refresh(adb, later)
    aged = await stored(adb, products)
    assert aged == await brute_force(adb, placed, later)
    for p, (units, score) in figures.items():
        assert aged[p][0] == units and aged[p][1] == pytest.approx(score / 2, abs=0.002)
    gone = await refresh(adb, now + timedelta(days=WINDOW))
    assert sorted(gone) == sorted(figures)
    assert await stored(adb, products) == {}
    await assert_index_follows(app, client, {}, products)
