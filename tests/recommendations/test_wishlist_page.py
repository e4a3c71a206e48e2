"""The wishlist on the pages: "Save to wishlist" on the product page (htmx swaps it for "Saved",
a plain form comes back with a message), the account's wishlist page with "Add to cart" and
"Remove", and a guest asked to log in."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.recommendations.conftest import runtime_of
from tests.recommendations.signals import (
    api_log_in,
    fast_password_hashing,  # noqa: F401  (autouse)
    make_customer,
    make_shirt,
    sell_out,
)
from tests.web.shop_helpers import csrf_of

HTML = {"accept": "text/html"}


async def test_save_from_the_product_page_and_use_the_wishlist_page(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime = runtime_of(app)
    ada = await make_customer(runtime, "ada@example.com")
    shirt = await make_shirt(runtime.db)
    scarf = await make_shirt(runtime.db, "Wool scarf")
    await sell_out(runtime.db, scarf.small)
    await sell_out(runtime.db, scarf.medium)
    await api_log_in(client, ada.email)

    page = await client.get(f"/p/{shirt.product_id}", headers=HTML)
    assert 'data-testid="wishlist-button"' in page.text and "Save to wishlist" in page.text
    assert "hx-post=" in page.text and "<script>" not in page.text.split("wishlist-form")[1][:800]
    token = csrf_of(page.text)
    # htmx: the button comes back as "Saved", with the medium size picked in the picker.
    swapped = await client.post(
        f"/wishlist/{shirt.product_id}",
        data={"csrf_token": token, "variant_id": shirt.medium, "next": f"/p/{shirt.product_id}"},
        headers={"HX-Request": "true"},
    )
    assert swapped.status_code == 200, swapped.text
    assert 'aria-pressed="true"' in swapped.text and ">Saved<" in swapped.text
    # A plain form: back to the page with a message.
    plain = await client.post(
        f"/wishlist/{scarf.product_id}",
        data={"csrf_token": token, "next": f"/p/{scarf.product_id}"},
    )
    assert plain.status_code == 303 and plain.headers["location"] == f"/p/{scarf.product_id}"
    again = await client.get(f"/p/{shirt.product_id}", headers=HTML)
    assert ">Saved<" in again.text

    listing = await client.get("/account/wishlist", headers=HTML)
    assert listing.status_code == 200
    assert 'data-testid="nav-wishlist"' in listing.text
    items = listing.text.split('data-testid="wishlist-item"')[1:]
    assert [i.split('data-product-id="', 1)[1].split('"', 1)[0] for i in items] == [
        scarf.product_id,
        shirt.product_id,
    ]
    assert "Out of stock" in items[0] and "wishlist-add-to-cart" not in items[0]
    assert "In stock" in items[1] and "Medium" in items[1] and "27.00" in items[1]

    added = await client.post(
        "/cart/items",
        data={
            "csrf_token": csrf_of(listing.text),
            "variant_id": shirt.medium,
            "quantity": "1",
            "next": "/account/wishlist",
        },
    )
    assert added.status_code == 303 and added.headers["location"] == "/account/wishlist"
    cart = (await client.get("/api/cart")).json()
    assert [line["variant_id"] for line in cart["lines"]] == [shirt.medium]

    removed = await client.post(
        f"/wishlist/{scarf.product_id}/remove",
        data={"csrf_token": csrf_of(listing.text), "next": "/account/wishlist"},
    )
    assert removed.status_code == 303 and removed.headers["location"] == "/account/wishlist"
    left = await client.get("/account/wishlist", headers=HTML)
    assert left.text.count('data-testid="wishlist-item"') == 1


async def test_a_guest_is_asked_to_log_in(app: FastAPI, client: httpx.AsyncClient) -> None:
    shirt = await make_shirt(runtime_of(app).db)
    page = await client.get(f"/p/{shirt.product_id}", headers=HTML)
    assert 'data-testid="wishlist-login"' in page.text
    assert 'data-testid="wishlist-button"' not in page.text
    r = await client.get("/account/wishlist", headers=HTML)
    assert r.status_code == 303 and r.headers["location"].startswith("/account/login")
