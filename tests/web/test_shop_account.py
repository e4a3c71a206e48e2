"""The shopper's account in a browser: registering, the order history a page at a time, an
order's tracking, asking for a return, cancelling, logging out."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from mercato.runtime import Runtime
from mercato.web.shop import account
from tests.conftest import TEST_PASSWORD
from tests.web.conftest import STAFF_EMAIL, screenshot
from tests.web.shop_helpers import api_order, api_ship_and_deliver, products_in_stock

EMAIL = "new.shopper@example.com"


async def test_register_history_tracking_return_and_cancel(
    page: Page, client: httpx.AsyncClient, shop: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Register: the new account is signed in at once.
    await page.goto("/")
    await page.get_by_role("link", name="Register").click()
    await page.get_by_label("Your name").fill("Robin")
    await page.get_by_label("E-mail address").fill(EMAIL)
    await page.get_by_label("Password").fill(TEST_PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator(".flash-success")).to_contain_text("Welcome, Robin")
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()

    # Three orders (placed through the API); the first is shipped and delivered.
    products = await products_in_stock(shop)
    placed = [(await api_order(client, EMAIL, p.variants[0].id))["order_id"] for p in products[:3]]
    delivered, cancellable, newest = placed
    tracking = await api_ship_and_deliver(client, STAFF_EMAIL, delivered)

    # The history, newest first, two to a page.
    monkeypatch.setattr(account, "ORDERS_PER_PAGE", 2)
    await page.get_by_role("link", name="Orders", exact=True).click()
    rows = page.get_by_test_id("order-row")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_have_attribute("data-order-id", newest)
    await expect(rows.nth(1)).to_have_attribute("data-order-id", cancellable)
    await page.get_by_role("link", name="Older orders").click()
    await expect(rows).to_have_count(1)
    await expect(rows.nth(0)).to_have_attribute("data-order-id", delivered)

    # The delivered order: its tracking number, and a return asked for by line.
    await rows.nth(0).get_by_role("link").click()
    await expect(page.get_by_test_id("order-status")).to_have_text("delivered")
    await expect(page.get_by_test_id("tracking-number")).to_have_text(tracking)
    await expect(page.get_by_test_id("cancel-order")).to_have_count(0)
    form = page.get_by_test_id("return-form")
    await form.get_by_label("Reason").select_option("Does not fit")
    await form.get_by_label("Details (optional)").fill("Too small <b>really</b>")
    await page.get_by_role("button", name="Request return").click()
    await expect(page.locator(".flash-success")).to_contain_text("return is requested")
    await expect(page.get_by_test_id("order-status")).to_have_text("return_requested")
    returned = page.get_by_test_id("return")
    await expect(returned).to_have_count(1)
    await expect(returned.get_by_test_id("return-status")).to_have_text("requested")
    await expect(returned).to_contain_text("Does not fit: Too small <b>really</b>")
    await expect(page.get_by_test_id("return-form")).to_have_count(0)  # all units asked for
    await screenshot(page, "shop-order-returned")

    # A paid order can be cancelled (after confirming).
    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)
    await page.goto(f"/account/orders/{cancellable}")
    await expect(page.get_by_test_id("order-status")).to_have_text("paid")
    await expect(page.get_by_test_id("return-form")).to_have_count(0)
    await page.get_by_test_id("cancel-order").click()
    await expect(page.locator(".flash-success")).to_contain_text("cancelled")
    await expect(page.get_by_test_id("order-status")).to_have_text("cancelled")
    await expect(page.get_by_test_id("cancel-order")).to_have_count(0)
    await expect(page.get_by_test_id("timeline")).to_contain_text(re.compile("cancelled"))

    # Logging out, then registering the same address again is refused with a clear message.
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("link", name="Log in")).to_be_visible()
    await page.goto("/account/orders")
    await expect(page).to_have_url(re.compile(r"/account/login\?next=/account/orders$"))
    await page.goto("/account/register")
    await page.get_by_label("Your name").fill("Robin again")
    await page.get_by_label("E-mail address").fill(EMAIL)
    await page.get_by_label("Password").fill(TEST_PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#e-email")).to_contain_text("exists already")
    await page.get_by_role("link", name="Log in", exact=True).last.click()
    await page.get_by_label("E-mail address").fill(EMAIL)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_test_id("login-error")).to_contain_text("incorrect")
