"""Where the shopper's goods would go, on the pages: "Deliver to" in the header (a cookie,
set by a CSRF-checked form among the countries the shop serves), the product page's stock for
that country, the address book pages, and checkout's saved addresses."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Page, expect

from mercato.checkout.demo import seed_checkout
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.web.deps import DELIVER_TO_COOKIE
from tests.factories import make_product
from tests.web.conftest import SHOPPER_EMAIL, runtime_of
from tests.web.shop_helpers import client_log_in, create_customer, csrf_of


@pytest.fixture
async def lyon_only(app: FastAPI) -> str:
    """Berlin ships to Germany and Austria, Lyon to France, Spain and Italy; one product whose
    only variant Lyon holds. Its id."""
    db = runtime_of(app).db
    async with db.transaction() as uow:
        await inventory.create_warehouse(uow, code="BER", name="Berlin", countries=["AT", "DE"])
        await inventory.create_warehouse(uow, code="LYO", name="Lyon", countries=["ES", "FR", "IT"])
        product_id, [variant_id] = await make_product(uow, variants=[{"price": 1999}])
    async with db.transaction() as uow:
        await inventory.receive(uow, variant_id, "LYO", 10)
    await seed_checkout(db, currency=runtime_of(app).settings.currency)
    return product_id


async def _deliver_to(client: httpx.AsyncClient, country: str, **extra: str) -> httpx.Response:
    page = await client.get("/cart")
    form = {"country": country, "next": "/cart?x=1", "csrf_token": csrf_of(page.text), **extra}
    return await client.post("/deliver-to", data=form)


async def test_deliver_to_keeps_a_served_country_and_refuses_others(
    client: httpx.AsyncClient, lyon_only: str
) -> None:
    r = await client.get(f"/p/{lyon_only}")
    assert 'data-testid="deliver-to"' in r.text and ">Germany</option>" in r.text
    assert "Not available for delivery to Germany" in r.text

    r = await _deliver_to(client, "fr")
    assert (r.status_code, r.headers["location"]) == (303, "/cart?x=1")
    assert client.cookies.get(DELIVER_TO_COOKIE) == "FR"
    r = await client.get(f"/p/{lyon_only}")
    assert "Not available for delivery" not in r.text
    assert '<option value="FR" selected>France</option>' in r.text

    for bad in ("US", "nonsense"):
        r = await _deliver_to(client, bad)
        assert r.status_code == 303 and client.cookies.get(DELIVER_TO_COOKIE) == "FR"
    # An off-site target is not followed; no CSRF token, no change.
    r = await _deliver_to(client, "DE", next="//evil.example/")
    assert r.headers["location"] == "/"
    r = await client.post("/deliver-to", data={"country": "AT", "next": "/"})
    assert r.status_code == 403 and client.cookies.get(DELIVER_TO_COOKIE) == "DE"


async def test_address_book_pages_and_checkout_prefill(
    app: FastAPI, client: httpx.AsyncClient, lyon_only: str
) -> None:
    runtime = runtime_of(app)
    await create_customer(runtime, SHOPPER_EMAIL)
    await client_log_in(client, SHOPPER_EMAIL)
    page = await client.get("/account/addresses")
    assert page.status_code == 200 and "You have no saved addresses yet." in page.text
    token = csrf_of(page.text)
    address = {"name": "Ada", "line1": "1 Rue de la Paix", "city": "Lyon", "postal_code": "69001"}

    r = await client.post(
        "/account/addresses", data={**address, "country": "US", "csrf_token": token}
    )
    assert r.status_code == 422, r.text
    assert "we deliver to: AT, DE, ES, FR, IT" in r.text, r.text[r.text.find("<main") :]
    r = await client.post(
        "/account/addresses", data={**address, "country": "FR", "csrf_token": token}
    )
    assert r.status_code == 303
    r = await client.post(
        "/account/addresses",
        data={**address, "city": "Wien", "country": "AT", "csrf_token": token},
    )
    async with runtime.db.transaction() as uow:
        user = await identity.get_user_by_email(uow, SHOPPER_EMAIL)
        assert user is not None
        saved = await identity.list_addresses(uow, user.id)
    assert [(a.city, a.is_default) for a in saved] == [("Lyon", True), ("Wien", False)]
    wien = saved[1].id
    assert (
        await client.post(f"/account/addresses/{wien}/default", data={"csrf_token": token})
    ).status_code == 303
    page = await client.get("/account/addresses")
    marker = page.text.index('data-testid="default-address"')
    assert page.text.index("Wien") < marker < page.text.index("Lyon", marker)

    # The signed-in customer's destination is now their default address (Austria).
    r = await client.get(f"/p/{lyon_only}")
    assert "Not available for delivery to Austria" in r.text

    # Checkout offers the saved addresses; the default one fills the form.
    async with runtime.db.transaction() as uow:
        product = await make_product(uow, variants=[{"price": 500}])
        await inventory.receive(uow, product[1][0], "BER", 5)
    page = await client.get("/cart")
    r = await client.post(
        "/cart/items",
        data={"variant_id": product[1][0], "quantity": "1", "csrf_token": csrf_of(page.text)},
    )
    assert r.status_code == 303
    r = await client.get("/checkout")
    assert 'data-testid="saved-addresses"' in r.text and 'value="Wien"' in r.text
    r = await client.get(f"/checkout?address={saved[0].id}")
    assert 'value="Lyon"' in r.text and '<option value="FR" selected>' in r.text

    r = await client.post(f"/account/addresses/{wien}/delete", data={"csrf_token": token})
    assert r.status_code == 303
    r = await client.post(f"/account/addresses/{wien}/delete", data={"csrf_token": token})
    assert r.status_code == 404


async def test_deliver_to_in_the_header_changes_the_product_page(
    page: Page, lyon_only: str
) -> None:
    violations: list[str] = []
    page.on(
        "console", lambda m: violations.append(m.text) if "Content-Security" in m.text else None
    )
    await page.goto(f"/p/{lyon_only}")
    picker = page.get_by_label("Deliver to")
    await picker.select_option(label="France")
    await expect(picker).to_have_value("FR")
    await expect(page.get_by_test_id("stock-hint")).to_have_text("In stock")
    await picker.select_option(label="Germany")
    await expect(picker).to_have_value("DE")
    await expect(page.get_by_test_id("stock-hint")).to_have_text(
        "Not available for delivery to Germany"
    )
    assert violations == []
