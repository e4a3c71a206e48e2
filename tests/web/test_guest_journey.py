"""A guest chooses "Deliver to France", buys without an account, opens the order from the
confirmation mail's link, then registers with the same address, confirms it, and finds the
order in the account. Mail goes through a real SMTP server; every page is watched for
Content-Security-Policy violations."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, expect

from mercato.inventory import service as inventory
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.support.smtp import SmtpServer, parts, running_smtp_server, with_smtp
from tests.web.conftest import screenshot, sync
from tests.web.shop_helpers import ProductFact, fill_address, products_in_stock
from tests.web.test_csp import Watch, _context

GUEST_EMAIL = "Guest.Shopper@Example.com"
ORDER_LINK = re.compile(r"https://shop\.example(/orders/ord_[0-9a-z]+\?token=[A-Za-z0-9_-]+)")
VERIFY_LINK = re.compile(r"https://shop\.example(/account/verify-email\?token=[A-Za-z0-9_-]+)")
PARIS = {
    "name": "Camille Acheteuse",
    "line1": "1 rue de Rivoli",
    "city": "Paris",
    "postal_code": "75001",
    "country": "FR",
}


async def deliverable_to(shop: Runtime, country: str) -> ProductFact:
    """A product every variant of which a warehouse shipping to ``country`` holds."""
    for product in await products_in_stock(shop):
        async with shop.db.transaction() as uow:
            units = await inventory.availability(
                uow, [v.id for v in product.variants], country=country
            )
        if all(n >= 2 for n in units.values()):
            return product
    raise AssertionError(f"the test shop has nothing in stock for {country}")


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return with_smtp(settings, smtp_server)


def link_in_mail(smtp: SmtpServer, pattern: re.Pattern[str], to: str) -> str:
    """The path of the link ``pattern`` finds in the last mail to ``to``."""
    for message in reversed(smtp.messages):
        if message["To"] != to:
            continue
        text, _ = parts(message)
        found = pattern.search(text)
        if found is not None:
            return found.group(1)
    raise AssertionError(f"no such link in the mails to {to}")


async def test_a_guest_buys_opens_the_order_from_the_mail_and_finds_it_after_registering(
    browser: Browser, live_server: str, shop: Runtime, app: FastAPI, smtp_server: SmtpServer
) -> None:
    watch = Watch()
    context = await _context(browser, live_server, watch)
    page = await context.new_page()
    product = await deliverable_to(shop, "FR")

    # Deliver to France, chosen in the header: the product is in stock there.
    await watch.visit(page, "/")
    picker = page.get_by_label("Deliver to")
    await picker.select_option(label="France")
    await expect(picker).to_have_value("FR")
    # No account: the cart, then the checkout asks for an e-mail address.
    await watch.visit(page, f"/p/{product.id}")
    await expect(page.get_by_test_id("stock-hint")).not_to_contain_text("Not available")
    await page.get_by_test_id("add-to-cart").click()
    await expect(page.locator(".flash-success")).to_contain_text("Added")
    await watch.visit(page, "/checkout")
    await expect(page.get_by_test_id("guest-checkout")).to_be_visible()
    await expect(page.get_by_label("Country")).to_have_value("FR")
    # An address that is not one is named, and no order is placed.
    await page.get_by_label("E-mail address").fill("guest.shopper@")
    await fill_address(page, PARIS)
    await page.evaluate("document.getElementById('f-email').type = 'text'")  # past the browser
    await page.get_by_test_id("place-order").click()
    await expect(page.locator("#e-email")).to_be_visible()
    await page.get_by_label("E-mail address").fill(GUEST_EMAIL)
    await fill_address(page, PARIS)
    await page.get_by_label("Test card").select_option("tok_visa")
    await screenshot(page, "shop-checkout-guest")
    await page.get_by_test_id("place-order").click()

    # The order's page, opened by its token; the confirmation mail links to it.
    await expect(page.locator(".flash-success")).to_contain_text("guest.shopper@example.com")
    await expect(page.get_by_test_id("order-status")).to_have_text("paid")
    order_id = await page.get_by_test_id("order").get_attribute("data-order-id")
    assert order_id is not None
    await sync(app)
    link = link_in_mail(smtp_server, ORDER_LINK, "guest.shopper@example.com")
    assert urlsplit(link).path == f"/orders/{order_id}"
    fresh = await _context(browser, live_server, watch)  # another device: the mail is enough
    reader = await fresh.new_page()
    await watch.visit(reader, link)
    await expect(reader.get_by_test_id("order-lines")).to_contain_text(product.title)
    await expect(reader.get_by_test_id("cancel-order")).to_be_visible()
    await screenshot(reader, "shop-order-guest")
    # The lookup by number and e-mail opens it too; a wrong pair is told nothing more.
    await watch.visit(reader, "/orders/lookup")
    await reader.get_by_label("Order number").fill(order_id)
    await reader.get_by_label("E-mail address").fill("someone@example.com")
    await reader.get_by_role("button", name="Show the order").click()
    await expect(reader.get_by_test_id("lookup-error")).to_contain_text("No order matches")
    await reader.get_by_label("E-mail address").fill(GUEST_EMAIL)
    await reader.get_by_role("button", name="Show the order").click()
    await expect(reader.get_by_test_id("order-status")).to_have_text("paid")
    await fresh.close()

    # Registering with that address, then confirming it: the order joins the account.
    await watch.visit(page, "/account/register")
    await page.get_by_label("Your name").fill("Guest Shopper")
    await page.get_by_label("E-mail address").fill(GUEST_EMAIL)
    await page.get_by_label("Password").fill("a long enough password")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    await watch.visit(page, "/account/orders")
    await expect(page.get_by_test_id("order-row")).to_have_count(0)
    await sync(app)
    await watch.visit(page, link_in_mail(smtp_server, VERIFY_LINK, "guest.shopper@example.com"))
    await page.get_by_role("button", name="Confirm my address").click()
    await expect(page.locator(".flash-success")).to_contain_text("is confirmed")
    await watch.visit(page, "/account/orders")
    await expect(page.get_by_test_id("order-row")).to_have_count(1)
    await watch.visit(page, f"/account/orders/{order_id}")
    await expect(page.get_by_test_id("order-status")).to_have_text("paid")
    await context.close()

    assert watch.violations == [], "\n".join(watch.violations)
    assert watch.errors == [], "\n".join(watch.errors)
