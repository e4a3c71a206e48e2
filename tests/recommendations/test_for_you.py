"""Recommended for you (API and home page), "Complete your order" in the cart, and the order
confirmation's suggestions: each from the shopper's own products, never what they already
have, and for their destination."""

from __future__ import annotations

from email import message_from_string, policy
from email.message import EmailMessage

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mercato import worker
from mercato.cart.service import CartOwner
from mercato.notifications.service import EMAILS
from mercato.orders import service as orders
from mercato.recommendations import personal, service
from mercato.recommendations.store import Item, of_items
from tests.cart.conftest import login, make_customer
from tests.fulfilment.conftest import assert_problem
from tests.orders.conftest import LineSpec, make_draft
from tests.recommendations.conftest import Shop, make_shop, runtime_of, sell_history


async def _buy(app: FastAPI, shop: Shop, user_id: str, *names: str) -> str:
    lines = [LineSpec(shop.variant[n], shop.product[n], 1, 1000, f"SKU-{n.upper()}") for n in names]
    async with runtime_of(app).db.transaction() as uow:
        order = await orders.create_order(
            uow, make_draft(user_id=user_id, email="ada@example.com", lines=lines)
        )
    return order.id


@pytest.fixture
async def shop(app: FastAPI) -> Shop:
    db = runtime_of(app).db
    shop = await make_shop(db)
    await sell_history(db, shop)
    await service.build(runtime_of(app))
    return shop


def test_blend_fuses_by_rank_and_never_suggests_what_is_owned() -> None:
    lists = of_items(
        1,
        [
            (("also_bought", "a"), [Item("x", 0.9), Item("y", 0.5), Item("b", 0.4)]),
            (("also_bought", "b"), [Item("y", 0.2), Item("z", 0.1)]),
            (("bought_together", "a"), [Item("z", 0.3, 0.6, 0.1, 2.0)]),
        ],
    )
    ranked = personal.blend(lists, personal.Seeds(bought=["a"], viewed=["b"]))
    by_id = {c.item.product_id: c for c in ranked}
    assert set(by_id) == {"x", "y", "z"}  # b is a seed: never suggested back
    # z: rank 0 of a's rules (1/10) + rank 1 of the viewed b's list (0.5/11) = 0.1455;
    # y: rank 1 of a's list (1/11) + rank 0 of b's (0.5/10) = 0.1409; x: rank 0 of a's, 0.1.
    assert [c.item.product_id for c in ranked] == ["z", "y", "x"]
    assert by_id["z"].score == pytest.approx(1 / 10 + 0.5 / 11)
    assert by_id["y"].because == "a" and by_id["y"].reason == "similar"
    # z's strongest contribution is the bought a's rule, not b's similar list.
    assert by_id["z"].reason == "rule" and by_id["z"].because == "a"
    assert by_id["z"].item.lift == pytest.approx(2.0)
    # Only bought seeds bring their rules: a merely viewed product's complements are not used.
    only_viewed = personal.blend(lists, personal.Seeds(viewed=["a"]))
    assert {c.reason for c in only_viewed} == {"similar"}


async def test_for_you_starts_from_what_the_customer_bought(
    app: FastAPI, client: httpx.AsyncClient, shop: Shop
) -> None:
    user_id = await make_customer(app, "ada@example.com")
    await _buy(app, shop, user_id, "kettle")
    await login(client, "ada@example.com")
    r = await client.get("/api/me/recommendations", params={"country": "DE", "limit": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["personal"] is True
    items = body["items"]
    assert len(items) == 3
    ids = [i["id"] for i in items]
    assert ids[0] == shop.product["teapot"]  # the kettle's strongest partner
    assert items[0]["because"] == shop.product["kettle"]
    assert items[0]["reason"] in {"rule", "similar"}
    assert shop.product["kettle"] not in ids  # what they bought is not offered back
    assert shop.product["gone"] not in ids and shop.product["lyon"] not in ids


async def test_for_you_leaves_out_the_cart_and_falls_back_to_best_sellers(
    app: FastAPI, client: httpx.AsyncClient, shop: Shop
) -> None:
    user_id = await make_customer(app, "ben@example.com")
    async with runtime_of(app).db.transaction() as uow:
        nothing = await service.for_you(
            uow,
            runtime_of(app),
            user_id=user_id,
            country="DE",
            limit=4,
            cart_owner=CartOwner(user_id=user_id),
        )
    assert nothing.personal is False
    assert nothing.items and {r.reason for r in nothing.items} == {"popular"}
    assert nothing.items[0].product.id == shop.product["kettle"]  # the best seller

    await _buy(app, shop, user_id, "kettle")
    async with runtime_of(app).db.transaction() as uow:
        without_cart = await service.for_you(
            uow, runtime_of(app), user_id=user_id, country="DE", limit=4, cart_owner=None
        )
    assert shop.product["teapot"] in {r.product.id for r in without_cart.items}

    await login(client, "ben@example.com")
    r = await client.post(
        "/api/cart/items", json={"variant_id": shop.variant["teapot"], "quantity": 1}
    )
    assert r.status_code == 201, r.text
    async with runtime_of(app).db.transaction() as uow:
        with_cart = await service.for_you(
            uow,
            runtime_of(app),
            user_id=user_id,
            country="DE",
            limit=4,
            cart_owner=CartOwner(user_id=user_id),
        )
    assert shop.product["teapot"] not in {r.product.id for r in with_cart.items}


async def test_for_you_needs_a_signed_in_customer(client: httpx.AsyncClient, shop: Shop) -> None:
    assert_problem(await client.get("/api/me/recommendations"), 401, "unauthorized")


async def test_complete_your_order_suggests_what_goes_with_the_cart(
    app: FastAPI, shop: Shop
) -> None:
    runtime = runtime_of(app)
    async with runtime.db.transaction() as uow:
        found = await service.complete_the_cart(
            uow, runtime, in_cart=[shop.product["kettle"]], country="DE"
        )
        empty = await service.complete_the_cart(uow, runtime, in_cart=[], country="DE")
        in_france = await service.complete_the_cart(
            uow, runtime, in_cart=[shop.product["kettle"]], country="FR"
        )
    ids = [r.product.id for r in found]
    assert ids[0] == shop.product["teapot"]
    assert shop.product["kettle"] not in ids and shop.product["gone"] not in ids
    assert {r.reason for r in found} <= {"rule", "similar"}  # no best-seller filler in a cart
    assert empty == []
    assert [r.product.id for r in in_france] == [shop.product["lyon"]]


async def test_the_order_confirmation_suggests_what_goes_with_the_order(
    app: FastAPI, shop: Shop
) -> None:
    runtime = runtime_of(app)
    user_id = await make_customer(app, "cleo@example.com")
    await worker.run_once(runtime)  # the history's own mails first
    async with runtime.db.transaction() as uow:
        before = set((await uow.execute(select(EMAILS.c.id))).scalars())
    order_id = await _buy(app, shop, user_id, "kettle")
    await worker.run_once(runtime)
    async with runtime.db.transaction() as uow:
        rows = (
            await uow.execute(
                select(EMAILS.c.id, EMAILS.c.message).where(
                    EMAILS.c.order_id == order_id, EMAILS.c.kind == "order_placed"
                )
            )
        ).all()
    assert len(rows) == 1 and rows[0][0] not in before
    message = message_from_string(rows[0][1], policy=policy.default)
    assert isinstance(message, EmailMessage)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    for body in (text.get_content(), html.get_content()):
        assert "You may also like" in body
        assert "Test teapot" in body
        assert f"/p/{shop.product['teapot']}" in body
        assert "Test gone" not in body and "Test lyon" not in body  # archived; not for DE


async def test_for_you_also_starts_from_what_was_saved_or_viewed(app: FastAPI, shop: Shop) -> None:
    runtime = runtime_of(app)
    user_id = await make_customer(app, "dora@example.com")
    async with runtime.db.transaction() as uow:
        await service.save_to_wishlist(uow, user_id, shop.product["teapot"])
        await service.record_view(
            uow, user_id=None, guest_key="gst_test", product_id=shop.product["mugs"]
        )
    async with runtime.db.transaction() as uow:
        saver = await service.for_you(
            uow, runtime, user_id=user_id, country="DE", limit=3, cart_owner=None
        )
        guest = await service.for_you(
            uow, runtime, user_id=None, guest_key="gst_test", country="DE", limit=3, cart_owner=None
        )
    assert saver.personal
    assert saver.items[0].product.id == shop.product["kettle"]
    assert saver.items[0].because == shop.product["teapot"]
    assert shop.product["teapot"] not in {r.product.id for r in saver.items}  # saved already
    assert guest.personal
    assert guest.items[0].product.id == shop.product["tray"]  # bought with mugs the most
    assert guest.items[0].because == shop.product["mugs"]
