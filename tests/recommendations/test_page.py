"""The product page shows "Frequently bought together" and "Customers who bought this also
bought"; "Add both" puts the product and its partner in the cart in one go."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI

from mercato.orders import service as orders
from mercato.recommendations import service
from tests.cart.conftest import login, make_customer
from tests.orders.conftest import LineSpec, make_draft
from tests.recommendations.conftest import make_shop, runtime_of, sell_history
from tests.web.shop_helpers import csrf_of

HTML = {"accept": "text/html"}


def _ids(html: str, testid: str) -> list[str]:
    if f'data-testid="{testid}"' not in html:
        return []
    section = html.split(f'data-testid="{testid}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'data-testid="recommended" data-product-id="([^"]+)"', section)


async def test_the_product_page_shows_both_rows_and_adds_both(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime = runtime_of(app)
    shop = await make_shop(runtime.db)
    await sell_history(runtime.db, shop)
    await service.build(runtime)
    page = await client.get(f"/p/{shop.product['kettle']}", params={"country": "DE"}, headers=HTML)
    assert page.status_code == 200, page.text
    together = _ids(page.text, "bought-together")
    also = _ids(page.text, "also-bought")
    assert together[0] == shop.product["teapot"]
    assert also and not set(also) & set(together)  # the second row never repeats the first
    assert shop.product["gone"] not in together + also
    assert "<script>" not in page.text.split('data-testid="bought-together"', 1)[1]
    r = await client.post(
        "/cart/items/both",
        content=urlencode(
            [
                ("variant_id", shop.variant["kettle"]),
                ("variant_id", shop.variant["teapot"]),
                ("next", f"/p/{shop.product['kettle']}"),
                ("csrf_token", csrf_of(page.text)),
            ]
        ),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 303, r.text
    cart = await client.get("/api/cart")
    lines = {line["variant_id"]: line["quantity"] for line in cart.json()["lines"]}
    assert lines == {shop.variant["kettle"]: 1, shop.variant["teapot"]: 1}
    # Both are in the cart now: neither is offered with the kettle any more.
    again = await client.get(f"/p/{shop.product['kettle']}", headers=HTML)
    offered = _ids(again.text, "also-bought") + _ids(again.text, "bought-together")
    assert offered and shop.product["teapot"] not in offered


async def test_the_cart_suggests_what_completes_the_order(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime = runtime_of(app)
    shop = await make_shop(runtime.db)
    await sell_history(runtime.db, shop)
    await service.build(runtime)
    empty = await client.get("/cart", headers=HTML)
    assert _ids(empty.text, "complete-your-order") == []
    r = await client.post("/api/cart/items", json={"variant_id": shop.variant["kettle"]})
    assert r.status_code == 201, r.text
    page = await client.get("/cart", params={"country": "DE"}, headers=HTML)
    offered = _ids(page.text, "complete-your-order")
    assert offered[0] == shop.product["teapot"]
    assert shop.product["kettle"] not in offered and shop.product["gone"] not in offered


async def test_the_home_page_recommends_for_a_customer_with_a_past(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime = runtime_of(app)
    shop = await make_shop(runtime.db)
    await sell_history(runtime.db, shop)
    await service.build(runtime)
    user_id = await make_customer(app, "ada@example.com")
    await login(client, "ada@example.com")
    home = await client.get("/", headers=HTML)
    assert home.status_code == 200
    assert _ids(home.text, "for-you") == []  # nothing to go on: the best sellers row only
    lines = [LineSpec(shop.variant["kettle"], shop.product["kettle"], 1, 1000, "SKU-KETTLE")]
    async with runtime.db.transaction() as uow:
        await orders.create_order(
            uow, make_draft(user_id=user_id, email="ada@example.com", lines=lines)
        )
    home = await client.get("/", headers=HTML)
    offered = _ids(home.text, "for-you")
    assert offered[0] == shop.product["teapot"] and shop.product["kettle"] not in offered
