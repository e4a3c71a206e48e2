"""The marketplace in a real browser: staff approve an applied seller in the back office; a
shopper opens a product two sellers offer next to the shop, sees who the buy box features and
"Other sellers", orders them by landed price (an htmx swap) and opens a seller's page. Not one
Content-Security-Policy violation, nor a script error, on the way."""

from __future__ import annotations

from decimal import Decimal

import httpx
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Dialog, expect

from mercato.money import format_minor
from mercato.runtime import Runtime
from mercato.web.deps import DELIVER_TO_COOKIE
from tests.conftest import user_headers
from tests.marketplace.conftest import approved_seller
from tests.web.admin_helpers import browser_login, stocked_variant
from tests.web.conftest import SHOPPER_EMAIL, STAFF_EMAIL, screenshot
from tests.web.test_csp import REPORT_VIOLATIONS, Watch


async def _watched(browser: Browser, live_server: str, watch: Watch) -> BrowserContext:
    context = await browser.new_context(
        base_url=live_server, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    await context.add_init_script(REPORT_VIOLATIONS)
    context.on("page", watch.attach)
    return context


async def _accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_staff_approve_a_seller_and_a_shopper_compares_its_offer(
    browser: Browser,
    live_server: str,
    shop: Runtime,
    app: FastAPI,
    client: httpx.AsyncClient,
) -> None:
    watch = Watch()
    variant = await stocked_variant(shop, units=3)
    currency = variant.currency
    staff_api = await user_headers(app, "staff", "ops@example.com")

    # A seller applies (through the API); staff approve it in the back office.
    applicant = await user_headers(app, "customer", "north@example.com")
    r = await client.post(
        "/api/sellers/apply",
        headers=applicant,
        json={
            "name": "North Goods",
            "legal_name": "North Goods GmbH",
            "email": "north@example.com",
            "country": "DE",
            "ship_to": ["DE"],
            "payout_reference": "acct_north_goods",
        },
    )
    assert r.status_code == 201, r.text
    north_id = r.json()["id"]
    staff = await _watched(browser, live_server, watch)
    await browser_login(staff, STAFF_EMAIL)
    admin = await staff.new_page()
    admin.on("dialog", _accept)
    await watch.visit(admin, "/admin")
    await (
        admin.get_by_role("navigation", name="Back office")
        .get_by_role("link", name="Sellers")
        .click()
    )
    await admin.get_by_test_id("tab-applied").click()
    await admin.get_by_role("link", name="North Goods").click()
    await expect(admin.get_by_test_id("payout-reference")).not_to_contain_text("acct_north")
    await admin.get_by_test_id("approve").click()
    await expect(admin.locator(".flash-success")).to_contain_text("North Goods is approved")
    await screenshot(admin, "marketplace-seller-approved")

    # The approved seller undercuts the shop (the buy box's pick); a second seller is a bit
    # cheaper than the shop landed but slow to dispatch, so its score ranks it after the shop.
    cheap = format_minor(variant.price // 2, currency)
    r = await client.post(
        "/api/seller/offers",
        headers=applicant,
        json={"sku": variant.sku, "price": cheap, "quantity": 4, "handling_days": 1},
    )
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/products/{variant.product_id}/offers?country=DE")
    [offers] = [v for v in r.json()["variants"] if v["variant_id"] == variant.id]
    assert offers["featured"]["seller_id"] == north_id
    [house] = offers["others"]
    slow = await approved_seller(client, app, staff_api, "Slowboat", ship_to=("DE",))
    slow_price = Decimal(house["landed_price"]) - Decimal("0.01")
    r = await client.post(
        "/api/seller/offers",
        headers=slow.headers,
        json={"sku": variant.sku, "price": str(slow_price), "quantity": 4, "handling_days": 10},
    )
    assert r.status_code == 201, r.text

    # A shopper delivering to Germany opens the product.
    shopper = await _watched(browser, live_server, watch)
    await shopper.add_cookies([{"name": DELIVER_TO_COOKIE, "value": "DE", "url": live_server}])
    await browser_login(shopper, SHOPPER_EMAIL)
    page = await shopper.new_page()
    await watch.visit(page, f"/p/{variant.product_id}?variant={variant.id}")
    box = page.locator(f'[data-testid=variant-sellers][data-variant="{variant.id}"]')
    featured = box.get_by_test_id("featured-offer")
    await expect(featured).to_contain_text("Sold by North Goods")
    await expect(featured).to_contain_text("ships in 1 day")
    await expect(box.get_by_test_id("offer-note")).to_be_visible()
    other = box.get_by_test_id("other-sellers")
    await expect(other.get_by_role("heading", name="Other sellers")).to_be_visible()
    rows = other.get_by_test_id("other-offer")
    await expect(rows).to_have_count(2)
    # Best offer first: the shop, then the slow seller.
    assert await rows.nth(0).get_attribute("data-seller-id") == house["seller_id"]
    await expect(rows.nth(1)).to_contain_text("Slowboat")

    await other.get_by_test_id("sellers-sort-landed_price").click()
    sorted_box = page.locator(f'[data-testid=variant-sellers][data-variant="{variant.id}"]')
    await expect(sorted_box.get_by_test_id("sellers-sort-landed_price")).to_have_attribute(
        "aria-current", "true"
    )
    rows = sorted_box.get_by_test_id("other-offer")
    await expect(rows.nth(0)).to_contain_text("Slowboat")
    landed = [int(await rows.nth(i).get_attribute("data-landed") or 0) for i in range(2)]
    assert landed == sorted(landed) and landed[0] < landed[1]
    await screenshot(page, "marketplace-other-sellers")

    await rows.nth(0).get_by_test_id("seller-link").click()
    await expect(page.get_by_test_id("seller-name")).to_have_text("Slowboat")
    await page.wait_for_load_state("networkidle")
    await expect(page.get_by_test_id("seller-offer")).to_have_count(1)
    await screenshot(page, "marketplace-seller-page")

    assert watch.violations == [], watch.violations
    assert watch.errors == [], watch.errors
    await shopper.close()
    await staff.close()
