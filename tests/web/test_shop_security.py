"""The storefront's defences: CSRF on every form, escaping of shop data, no open redirect after
logging in, and no peeking at another customer's order."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI
from playwright.async_api import Dialog, Page, expect

from mercato.catalog import service as catalog
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD
from tests.web.conftest import SHOPPER_EMAIL, sync
from tests.web.shop_helpers import (
    api_order,
    client_log_in,
    create_customer,
    csrf_of,
    products_in_stock,
)

HTML = {"accept": "text/html"}
SCRIPT_TITLE = "<script>alert(1)</script> Night Lamp"


async def test_forms_need_their_token_and_orders_stay_private(
    client: httpx.AsyncClient, make_client: Callable[[], httpx.AsyncClient], shop: Runtime
) -> None:
    variant_id = (await products_in_stock(shop))[0].variants[0].id

    # CSRF: a POST without the token is refused with the 403 page, whatever the form.
    posts = [
        ("/cart/items", {"variant_id": variant_id, "quantity": "1"}),
        ("/account/login", {"email": SHOPPER_EMAIL, "password": "x"}),
        ("/account/logout", {}),
        ("/checkout", {"action": "place"}),
    ]
    for path, data in posts:
        r = await client.post(path, data=data, headers=HTML)
        assert r.status_code == 403, path
        assert "Form expired" in r.text
        assert "csrf_failed" in r.text
    # A token from another browser (signing another cookie) is refused too.
    elsewhere = csrf_of((await make_client().get("/account/login")).text)
    await client.get("/account/login")  # this browser has its own cookie
    r = await client.post(
        "/cart/items", data={"variant_id": variant_id, "csrf_token": elsewhere}, headers=HTML
    )
    assert r.status_code == 403
    cart = await client.get("/cart", headers=HTML)
    assert 'data-testid="cart-line"' not in cart.text

    # After logging in, only a path on this site is followed.
    targets: dict[str, str] = {
        "https://evil.example/": "/",
        "//evil.example/": "/",
        "/\\evil.example": "/",
        "javascript:alert(1)": "/",
        "/cart?x=1": "/cart?x=1",
    }
    for target, expected in targets.items():
        fresh = make_client()
        form = await fresh.get("/account/login", params={"next": target})
        r = await fresh.post(
            "/account/login",
            data={
                "email": SHOPPER_EMAIL,
                "password": TEST_PASSWORD,
                "next": target,
                "csrf_token": csrf_of(form.text),
            },
        )
        assert r.status_code == 303
        assert r.headers["location"] == expected, target

    # Another customer's order is a 404, like an unknown one; it cannot be cancelled either.
    order_id = (await api_order(client, SHOPPER_EMAIL, variant_id))["order_id"]
    owner = make_client()
    await client_log_in(owner, SHOPPER_EMAIL)
    mine = await owner.get(f"/account/orders/{order_id}", headers=HTML)
    assert mine.status_code == 200
    assert 'data-testid="order-status" data-status="paid"' in mine.text

    await create_customer(shop, "other@example.com")
    other = make_client()
    await client_log_in(other, "other@example.com")
    for path in (f"/account/orders/{order_id}", f"/checkout/confirmation/{order_id}"):
        r = await other.get(path, headers=HTML)
        assert r.status_code == 404, path
        assert "Not found" in r.text
    history = await other.get("/account/orders", headers=HTML)
    assert order_id not in history.text
    r = await other.post(
        f"/account/orders/{order_id}/cancel",
        data={"csrf_token": csrf_of(history.text)},
        headers=HTML,
    )
    assert r.status_code == 404
    mine = await owner.get(f"/account/orders/{order_id}", headers=HTML)
    assert 'data-testid="order-status" data-status="paid"' in mine.text


async def _script_product(shop: Runtime, app: FastAPI) -> str:
    async with shop.db.transaction() as session:
        tree = await catalog.get_category_tree(session)
        leaf = tree[0]
        while leaf.children:
            leaf = leaf.children[0]
        view = await catalog.create_product(
            session,
            catalog.NewProduct(
                title=SCRIPT_TITLE,
                category_id=leaf.category.id,
                currency=shop.settings.currency,
                status="active",
                description='A lamp. <img src=x onerror="alert(2)">',
                variants=[catalog.NewVariant(sku="XSS-LAMP-1", price=2999)],
            ),
        )
    await sync(app)  # into the search index
    return view.id


async def test_shop_data_is_shown_as_text_never_run(
    page: Page, client: httpx.AsyncClient, shop: Runtime, app: FastAPI, live_server: str
) -> None:
    product_id = await _script_product(shop, app)
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)

    page.on("dialog", on_dialog)
    # In a browser too, a login asked to go elsewhere lands on the home page.
    await page.goto("/account/login?next=https://evil.example/")
    await page.get_by_label("E-mail address").fill(SHOPPER_EMAIL)
    await page.get_by_label("Password").fill(TEST_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    assert page.url == f"{live_server}/"

    await page.goto(f"/p/{product_id}")
    await expect(page.get_by_test_id("product-title")).to_have_text(SCRIPT_TITLE)
    await expect(page.locator(".product-description")).to_contain_text("onerror")

    await page.goto("/search?q=night+lamp")
    await expect(page.locator(f'[data-product-id="{product_id}"]')).to_contain_text(SCRIPT_TITLE)
    await page.goto("/search?q=%3Cscript%3Ealert(3)%3C/script%3E")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("<script>alert(3)")
    assert dialogs == []

    raw = (await client.get(f"/p/{product_id}", headers=HTML)).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Night Lamp" in raw
    assert "<script>alert(1)" not in raw
    suggest = (await client.get("/search/suggest", params={"q": "night"})).text
    assert "&lt;script&gt;" in suggest and "<script>alert" not in suggest
