"""The Content-Security-Policy holds in a real browser: every main page of the shop and the back
office, and the API docs, load and work (htmx swaps included) without a single violation
reported, and without a script error."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Error, Page, expect

from mercato.catalog import service as catalog
from mercato.runtime import Runtime
from tests.web.admin_helpers import browser_login, stocked_variant
from tests.web.conftest import SHOPPER_EMAIL, STAFF_EMAIL
from tests.web.shop_helpers import api_order, fill_address, products_in_stock

pytestmark = pytest.mark.slow  # long: scheduled first (tests/conftest.py)

# Chromium reports a violation on the console and as a DOM event; the init script (run by the
# browser's automation, outside the page's policy) turns each event into a console line too.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI} at ${where}`);
});
"""


class Watch:
    """What a browser context saw: CSP violations and uncaught script errors, per page."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.visited: list[str] = []

    def attach(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            text = message.text
            if "CSP violation" in text or "Content Security Policy" in text:
                self.violations.append(f"{page.url}: {text}")

        def on_error(error: Error) -> None:
            self.errors.append(f"{page.url}: {error}")

        page.on("console", on_console)
        page.on("pageerror", on_error)

    async def visit(self, page: Page, path: str) -> None:
        response = await page.goto(path)
        assert response is not None and response.ok, (path, response and response.status)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        await page.wait_for_load_state("networkidle")
        self.visited.append(path)


async def _context(browser: Browser, live_server: str, watch: Watch) -> BrowserContext:
    context = await browser.new_context(
        base_url=live_server, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    await context.add_init_script(REPORT_VIOLATIONS)
    context.on("page", watch.attach)
    return context


async def test_no_page_breaks_the_content_security_policy(
    browser: Browser, live_server: str, shop: Runtime, client: httpx.AsyncClient
) -> None:
    watch = Watch()
    product = (await products_in_stock(shop, min_variants=2))[0]
    variant = await stocked_variant(shop)
    order_id = (await api_order(client, SHOPPER_EMAIL, variant.id))["order_id"]
    async with shop.db.transaction() as uow:
        leaf = (await catalog.get_category_tree(uow))[0]
        while leaf.children:
            leaf = leaf.children[0]
    category = leaf.category.slug

    # A visitor, then a shopper: browse, search as they type, pick a variant, fill the cart
    # and the checkout form (htmx redraws the summary), look at an order.
    shopper = await _context(browser, live_server, watch)
    page = await shopper.new_page()
    await watch.visit(page, "/")
    # The stars of a rating take their share from the stylesheet, not a style attribute.
    stars = page.locator(".stars[data-rating]").first
    rating = await stars.get_attribute("data-rating")
    shown = await stars.evaluate("e => getComputedStyle(e).getPropertyValue('--rating')")
    assert rating and shown.strip() == rating
    box = page.get_by_label("Search products")
    await box.press_sequentially(product.title.split()[0][:4].lower(), delay=30)
    await expect(page.get_by_test_id("suggestion").first).to_be_visible()
    for path in (
        "/account/login",
        "/account/register",
        "/account/forgot-password",
        "/account/reset-password?token=x",
        "/account/verify-email?token=x",
        f"/c/{category}",
        "/search?q=a",
    ):
        await watch.visit(page, path)

    await browser_login(shopper, SHOPPER_EMAIL)
    await watch.visit(page, f"/p/{product.id}")
    await page.locator(".variant-option").nth(1).click()
    await page.get_by_test_id("add-to-cart").click()
    await expect(page.locator(".flash-success")).to_contain_text("Added")
    await watch.visit(page, "/cart")
    await watch.visit(page, "/checkout")
    await fill_address(page)
    await page.get_by_label("Country").select_option("GB")
    await expect(page.get_by_test_id("order-summary")).to_be_visible()
    for path in (
        "/account",
        "/account/password",
        "/account/orders",
        f"/account/orders/{order_id}",
        f"/checkout/confirmation/{order_id}",
    ):
        await watch.visit(page, path)
    missing = await page.goto("/p/no-such-product")
    assert missing is not None and missing.status == 404
    await shopper.close()

    # Staff: every section of the back office, the forms, an order, and the API docs.
    staff = await _context(browser, live_server, watch)
    page = await staff.new_page()
    await browser_login(staff, STAFF_EMAIL)
    for path in (
        "/admin",
        "/admin/orders",
        f"/admin/orders/{order_id}",
        "/admin/returns",
        "/admin/reviews",
        "/admin/inventory",
        "/admin/products",
        "/admin/products/new",
        f"/admin/products/{variant.product_id}",
        f"/admin/products/{variant.product_id}/variants/{variant.id}",
        "/admin/promos",
        "/admin/promos/new",
        "/admin/commissions",
        "/admin/commissions/new",
        "/admin/ledger",
        "/admin/payouts",
        "/admin/shipping",
        "/admin/tax",
        "/admin/webhooks",
        "/admin/emails",
    ):
        await watch.visit(page, path)
    await page.goto("/admin/products")
    await page.get_by_label("Title or SKU").press_sequentially("a")  # htmx filters the list
    await page.wait_for_load_state("networkidle")

    await watch.visit(page, "/api/docs")
    await expect(page.locator(".opblock").first).to_be_visible()
    await page.locator(".opblock-summary").first.click()  # open an operation
    await expect(page.locator(".opblock-body").first).to_be_visible()
    await staff.close()

    assert len(watch.visited) >= 25
    assert watch.violations == [], "\n".join(watch.violations)
    assert watch.errors == [], "\n".join(watch.errors)
    assert not re.search(r"\sstyle=", (await client.get("/", headers={"accept": "text/html"})).text)
