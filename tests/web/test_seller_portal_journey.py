"""The seller portal in a real browser: an approved seller signs in through the login form,
lands on its dashboard, creates an offer, uploads a CSV file with a broken row and reads the
row report. Not one Content-Security-Policy violation, nor a script error, on the way."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from playwright.async_api import Browser, expect

from mercato.money import format_minor
from mercato.runtime import Runtime
from tests.conftest import user_headers
from tests.marketplace.conftest import approved_seller
from tests.web.admin_helpers import form_login, stocked_variant
from tests.web.conftest import screenshot
from tests.web.test_csp import REPORT_VIOLATIONS, Watch


async def test_a_seller_creates_an_offer_and_uploads_a_csv(
    browser: Browser, live_server: str, shop: Runtime, app: FastAPI, client: httpx.AsyncClient
) -> None:
    watch = Watch()
    first = await stocked_variant(shop, units=1)
    second = await stocked_variant(shop, units=1, skip=1)
    staff = await user_headers(app, "staff", "ops@example.com")
    await approved_seller(client, app, staff, "Harbour")

    context = await browser.new_context(
        base_url=live_server, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    await context.add_init_script(REPORT_VIOLATIONS)
    context.on("page", watch.attach)
    page = await context.new_page()

    # Signed out, the portal asks for a login and comes back to the dashboard.
    await page.goto("/seller")
    await form_login(page, "harbour@example.com")
    await expect(page.get_by_test_id("seller-name")).to_contain_text("Harbour")
    await expect(page.get_by_test_id("performance")).to_contain_text("Order defect rate")

    portal = page.get_by_role("navigation", name="Seller portal")
    await portal.get_by_role("link", name="Offers").click()
    await page.get_by_role("link", name="New offer").click()
    await page.get_by_label("SKU").fill(first.sku)
    await page.get_by_label("Price").fill(format_minor(first.price, first.currency))
    await page.get_by_label("Available units").fill("6")
    await page.get_by_role("button", name="Create offer").click()
    await expect(page.locator(".flash-success")).to_contain_text(f"Offer for {first.sku} created")
    await expect(page.get_by_test_id("offer")).to_have_count(1)

    csv = f"sku,price,quantity\n{second.sku},12.00,3\nNO-SUCH-SKU,9.00,1\n"
    await page.get_by_label("CSV file", exact=True).set_input_files(
        {"name": "offers.csv", "mimeType": "text/csv", "buffer": csv.encode()}
    )
    await page.get_by_label("Add and update").check()
    await page.get_by_role("button", name="Upload").click()
    await expect(page.get_by_test_id("created")).to_have_text("1")
    report = page.get_by_test_id("row-error")
    await expect(report).to_have_count(1)
    await expect(report).to_contain_text("3")
    await expect(report).to_contain_text("no variant with sku")
    await screenshot(page, "seller-portal-csv-report")

    await page.get_by_role("link", name="Back to your offers").click()
    await expect(page.get_by_test_id("offer")).to_have_count(2)
    for path in ("/seller/stock", "/seller/statements", "/seller/returns", "/seller"):
        await watch.visit(page, path)

    assert watch.violations == [], watch.violations
    assert watch.errors == [], watch.errors
    await context.close()
