"""Back office settings pages: promo codes, shipping, tax, webhooks with their delivery log, and
the sent e-mails, driven in a real browser; what staff set here is what checkout then uses."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from playwright.async_api import BrowserContext, Page, expect

from mercato.checkout import service as checkout
from mercato.db import utcnow
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.notifications.conftest import Receiver
from tests.web.conftest import SHOPPER_EMAIL, screenshot, sync
from tests.web.test_admin_catalog import browser_login, http_login

ADDRESS: dict[str, Any] = {
    "name": "Erika Mustermann",
    "line1": "Heidestrasse 17",
    "city": "Berlin",
    "postal_code": "10557",
    "country": "DE",
}


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real argon2id at its smallest cost: these tests sign in, they do not test hash strength.
    monkeypatch.setattr(
        identity, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The webhook receiver listens on 127.0.0.1, a private target refused by default.
    return settings.model_copy(update={"webhook_allow_private_targets": True})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP endpoint on 127.0.0.1 that records every webhook it is sent."""
    recv = Receiver()
    server = await asyncio.start_server(recv.handle, "127.0.0.1", 0)
    recv.port = server.sockets[0].getsockname()[1]
    try:
        yield recv
    finally:
        server.close()
        await server.wait_closed()


async def fill_cart(shop: Runtime, shopper: httpx.AsyncClient) -> None:
    """Sign the shopper in and put one unit of a variant in the cart (with stock received in
    the Berlin warehouse, which ships to Germany)."""
    await http_login(shopper, SHOPPER_EMAIL)
    products = (await shopper.get("/api/products", params={"limit": 1})).json()["items"]
    variant = products[0]["variants"][0]
    async with shop.db.transaction() as uow:
        await inventory.receive(uow, variant["id"], "BER", 5)
    r = await shopper.post("/api/cart/items", json={"variant_id": variant["id"], "quantity": 1})
    assert r.status_code == 201, r.text


async def place_order(
    shop: Runtime, shopper: httpx.AsyncClient, promo_code: str | None = None
) -> str:
    await fill_cart(shop, shopper)
    body = {
        "shipping_address": ADDRESS,
        "shipping_method": "standard",
        "payment_token": "tok_visa",
        "promo_code": promo_code,
    }
    r = await shopper.post("/api/checkout", json=body, headers={"Idempotency-Key": "order-1"})
    assert r.status_code == 201, r.text
    order_id: str = r.json()["order_id"]
    return order_id


# --------------------------------------------------------------------------------------------
# Promo codes


async def test_create_a_promo_code_after_fixing_errors_then_switch_it_off(
    shop: Runtime, context: BrowserContext, page: Page
) -> None:
    await browser_login(context)
    await page.goto("/admin/promos")
    await expect(page.locator("tbody tr")).to_have_count(4)  # the demo shop's codes
    await page.get_by_role("link", name="New promo code").click()

    await page.fill("#f-code", "spring-25")
    await page.select_option("#f-kind", "fixed")
    await page.fill("#f-value", "5.555")
    await page.fill("#f-usage_limit", "ten")
    await page.get_by_role("button", name="Create promo code").click()
    await expect(page.locator("#e-currency")).to_contain_text("needs a currency")
    await expect(page.locator("#e-usage_limit")).to_contain_text("whole number")
    await expect(page.locator("#f-usage_limit")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#f-code")).to_have_value("spring-25")
    await expect(page.locator("#f-kind")).to_have_value("fixed")

    await page.fill("#f-currency", "eur")
    await page.fill("#f-usage_limit", "100")
    await page.fill("#f-ends_at", "2020-01-01T00:00")
    await page.fill("#f-starts_at", "2021-01-01T00:00")
    await page.get_by_role("button", name="Create promo code").click()
    await expect(page.locator("#e-value")).to_contain_text("2 decimal places")
    await page.fill("#f-value", "5.50")
    await page.get_by_role("button", name="Create promo code").click()
    # The service checks the validity window.
    await expect(page.locator("#e-ends_at")).to_contain_text("after starts_at")
    await page.fill("#f-ends_at", "2099-12-31T23:59")
    await page.fill("#f-min_subtotal", "20")
    await page.get_by_role("button", name="Create promo code").click()

    await expect(page.locator(".flash-success")).to_contain_text("SPRING-25 created")
    row = page.locator("tr", has=page.locator("code", has_text="SPRING-25"))
    await expect(row).to_contain_text("5.50 EUR")
    await expect(row).to_contain_text("€20.00")
    await expect(row).to_contain_text("100")
    await expect(row.locator(".badge")).to_have_text("active")
    await screenshot(page, "admin-promos")

    page.once("dialog", lambda dialog: dialog.accept())
    await row.get_by_role("button", name="Deactivate SPRING-25").click()
    await expect(page.locator(".flash-success")).to_contain_text("switched off")
    await expect(row.locator(".badge")).to_have_text("switched off")
    async with shop.db.transaction() as uow:
        promo = await checkout.get_promo_by_code(uow, "SPRING-25")
    assert promo is not None
    assert (promo.kind, promo.value, promo.currency, promo.min_subtotal) == (
        "fixed",
        550,
        "EUR",
        2000,
    )
    assert (promo.usage_limit, promo.active) == (100, False)

    # A duplicate code is refused next to the code field.
    await page.goto("/admin/promos/new")
    await page.fill("#f-code", "welcome10")
    await page.fill("#f-value", "10")
    await page.get_by_role("button", name="Create promo code").click()
    await expect(page.locator("#e-code")).to_contain_text("already exists")


async def test_set_promo_active_switches_a_code_off_and_on(runtime: Runtime) -> None:
    async with runtime.db.transaction() as uow:
        made = await checkout.create_promo_code(uow, code="PAUSE", kind="percent", value=500)
        off = await checkout.set_promo_active(uow, made.id, False)
        assert not off.active
        with pytest.raises(Problem) as refused:
            checkout.check_promo_usable(off, "PAUSE", currency="EUR", now=utcnow())
        assert refused.value.extra["reason"] == "inactive"
        on = await checkout.set_promo_active(uow, made.id, True)
        assert on.active and on.used_count == 0
        with pytest.raises(Problem) as missing:
            await checkout.set_promo_active(uow, "promo_nope", False)
        assert missing.value.status == 404


# --------------------------------------------------------------------------------------------
# Shipping and tax


async def test_shipping_method_and_tax_rate_made_here_reach_checkout(
    app: FastAPI, shop: Runtime, context: BrowserContext, page: Page, client: httpx.AsyncClient
) -> None:
    await browser_login(context)
    await page.goto("/admin/shipping")
    await expect(page.locator("h2", has_text="European Union")).to_be_visible()

    await page.fill("#f-zone_name", "Nordics")
    await page.fill("#f-countries", "NO, IS, NOR")
    await page.get_by_role("button", name="Create zone").click()
    await expect(page.locator("#e-countries")).to_contain_text("'NOR'")
    await expect(page.locator("#f-countries")).to_have_value("NO, IS, NOR")
    await page.fill("#f-countries", "no is")
    await page.get_by_role("button", name="Create zone").click()
    await expect(page.locator(".flash-success")).to_contain_text("Nordics")

    zone = page.get_by_role("region", name="Nordics")
    await expect(zone).to_contain_text("IS, NO")
    await expect(zone).to_contain_text("No methods yet")
    await page.select_option("#f-zone_id", label="Nordics")
    await page.fill("#f-code", "nordic-post")
    await page.fill("#f-method_name", "Nordic Post")
    await page.select_option("#f-kind", "weight_band")
    await page.fill("#f-weight_bands", "1000 9.90\n500 4.90")
    await page.get_by_role("button", name="Add method").click()
    await expect(page.locator("#e-weight_bands")).to_contain_text("line 2")
    await expect(page.locator("#f-method_name")).to_have_value("Nordic Post")
    await page.fill("#f-weight_bands", "1000 9.90\n* 19.90")
    await page.fill("#f-free_over", "150")
    await page.get_by_role("button", name="Add method").click()
    await expect(page.locator(".flash-success")).to_contain_text("Nordic Post")
    await expect(zone).to_contain_text("up to 1000 g: €9.90")
    await expect(zone).to_contain_text("heavier: €19.90")
    await expect(zone).to_contain_text("free from €150.00")
    await screenshot(page, "admin-shipping")

    found = (await client.get("/api/checkout/shipping-methods", params={"country": "NO"})).json()
    assert [(m["code"], m["zone"], m["free_over"]) for m in found["methods"]] == [
        ("nordic-post", "Nordics", "150.00")
    ]
    assert [b["price"] for b in found["methods"][0]["weight_bands"]] == ["9.90", "19.90"]

    await page.goto("/admin/tax")
    await page.fill("#f-country", "no")
    await page.fill("#f-rate", "250")
    await page.get_by_role("button", name="Save rate").click()
    await expect(page.locator("#e-rate")).to_contain_text("0 to 100")
    await page.fill("#f-rate", "25")
    await page.get_by_role("button", name="Save rate").click()
    await expect(page.locator(".flash-success")).to_contain_text("NO, class standard: 25.00 %")
    await page.fill("#f-country-filter", "NO")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("tbody tr")).to_contain_text("25.00 %")
    await screenshot(page, "admin-tax")
    await page.get_by_label("Before tax").check()
    await page.get_by_role("button", name="Save price setting").click()
    await expect(page.locator(".flash-success")).to_contain_text("before tax")
    await expect(page.get_by_label("Before tax")).to_be_checked()

    # A shopper's quote to Norway uses both, once a warehouse ships there too (the shop
    # delivers where a warehouse ships and a shipping zone covers).
    async with shop.db.transaction() as uow:
        await inventory.create_warehouse(uow, code="OSL", name="Oslo", countries=["NO"])
    await fill_cart(shop, client)
    quote = await client.post(
        "/api/checkout/quote",
        json={"shipping_address": {"country": "NO"}, "shipping_method": "nordic-post"},
    )
    assert quote.status_code == 200, quote.text
    priced = quote.json()
    assert priced["shipping_method"] == "nordic-post"
    assert priced["shipping"] in ("9.90", "19.90", "0.00")
    assert [line["tax_rate"] for line in priced["lines"]] == ["25.00"]
    assert priced["prices_include_tax"] is False


# --------------------------------------------------------------------------------------------
# Webhooks and e-mails


async def test_webhook_delivery_log_and_the_order_confirmation_mail(
    app: FastAPI,
    shop: Runtime,
    context: BrowserContext,
    page: Page,
    client: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    await browser_login(context)
    await page.goto("/admin/webhooks")
    await expect(page.locator(".notice")).to_contain_text("No webhook endpoints yet")
    await page.fill("#f-url", "ftp://example.com/hooks")
    await page.get_by_role("button", name="Create endpoint").click()
    await expect(page.locator("#e-url")).to_contain_text("http or https")
    await page.fill("#f-url", receiver.url)
    await page.fill("#f-description", "ERP order import")
    await page.get_by_role("button", name="Create endpoint").click()
    await expect(page.locator("#e-event_types")).to_contain_text("at least one")
    await expect(page.locator("#f-description")).to_have_value("ERP order import")
    await page.get_by_label("OrderPlaced").check()
    await page.get_by_label("ProductUpdated").check()
    await page.get_by_role("button", name="Create endpoint").click()

    await expect(page.locator("h1")).to_have_text("Endpoint created")
    secret = (await page.get_by_test_id("webhook-secret").inner_text()).strip()
    assert len(secret) >= 20
    await page.get_by_role("link", name="I have stored it").click()
    assert secret not in await page.content()
    await expect(page.locator(".notice")).to_contain_text("No deliveries")
    endpoint_url = page.url

    # An order placed through the API: the worker sends the webhook and the mail.
    shopper = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://shop",
        headers={"origin": "http://shop"},  # as a browser on the shop sends
    )
    async with shopper:
        order_id = await place_order(shop, shopper, promo_code="WELCOME10")
    await sync(app)
    assert [r.json()["type"] for r in receiver.requests] == ["OrderPlaced"]
    assert receiver.requests[0].json()["data"]["order_id"] == order_id

    await page.reload()
    row = page.locator("tbody tr", has_text="OrderPlaced")
    await expect(row).to_have_count(1)
    await expect(row.locator(".badge")).to_have_text("delivered")
    await expect(row.locator("td").nth(2)).to_have_text("1")
    await expect(row.locator("td").nth(3)).to_have_text("200")
    await screenshot(page, "admin-webhooks")

    # Retry: htmx swaps in the queued row; the next pass sends the same event again.
    await row.get_by_role("button", name=re.compile("^Retry")).click()
    await expect(row.locator(".badge")).to_have_text("pending")
    await expect(row).to_contain_text("queued again")
    await sync(app)
    assert [r.json()["id"] for r in receiver.requests] == [receiver.requests[0].json()["id"]] * 2
    await page.reload()
    await expect(page.locator("tbody tr .badge")).to_have_text("delivered")

    # A new secret, shown once again.
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Rotate secret").click()
    await expect(page.locator("h1")).to_have_text("New signing secret")
    rotated = (await page.get_by_test_id("webhook-secret").inner_text()).strip()
    assert rotated != secret and len(rotated) >= 20

    # The order confirmation in the sent mails, downloadable as .eml.
    await page.goto("/admin/emails")
    mail = page.locator("tbody tr", has_text="Order confirmation")
    await expect(mail).to_have_count(1)
    await expect(mail).to_contain_text(SHOPPER_EMAIL)
    await expect(mail.locator(".badge")).to_have_text("sent")
    await screenshot(page, "admin-emails")
    href = await mail.get_by_role("link", name=re.compile("Download .eml")).get_attribute("href")
    assert href is not None
    download = await context.request.get(href)
    assert download.status == 200
    assert download.headers["content-type"] == "message/rfc822"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert ".eml" in download.headers["content-disposition"]
    raw = await download.text()
    assert f"To: {SHOPPER_EMAIL}" in raw or SHOPPER_EMAIL in raw
    assert "Subject:" in raw

    # The promo code used by the order is counted as redeemed.
    await page.goto("/admin/promos")
    welcome = page.locator("tr", has=page.locator("code", has_text="WELCOME10"))
    await expect(welcome.locator("td[data-label=redeemed]")).to_have_text("1")

    # Disable, then delete after the confirmation page.
    await page.goto(endpoint_url)
    await page.get_by_role("button", name="Disable").click()
    await expect(page.locator("h1 .badge")).to_have_text("disabled")
    await page.get_by_role("link", name="Delete…").click()
    await expect(page.locator("h1")).to_have_text("Delete this endpoint?")
    await page.get_by_role("button", name="Delete endpoint").click()
    await expect(page.locator(".flash-success")).to_contain_text("deleted")
    await expect(page.locator(".notice")).to_contain_text("No webhook endpoints yet")
