"""A flash sale in a real browser: staff schedule it in the back office a few seconds ahead; a
customer opens its page before the start, joins the queue and waits in the pre-queue; the
sale starts and the page's own polling (which runs the admission pass) lets the customer in;
the staff's page shows its counters moving by themselves. The customer clicks "Buy now", places
the order with a test card, and the purchase's page follows it (the worker places it) to the
order. Not one Content-Security-Policy violation, nor a script error, on the way."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import Browser, BrowserContext, expect

from mercato.checkout import service as checkout
from mercato.db import utcnow
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.web.admin_helpers import browser_login, stocked_variant
from tests.web.conftest import SHOPPER_EMAIL, STAFF_EMAIL, screenshot
from tests.web.test_csp import REPORT_VIOLATIONS, Watch

LEAD = timedelta(seconds=12)
"""How far ahead the sale starts: time enough for the customer to join the pre-queue first."""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A short grace period: the waiting room asks to be polled every 2 s (a sixth of it).
    return settings.model_copy(update={"flashsale_grace_seconds": 12})


async def _watched(browser: Browser, live_server: str, watch: Watch) -> BrowserContext:
    context = await browser.new_context(
        base_url=live_server, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    await context.add_init_script(REPORT_VIOLATIONS)
    context.on("page", watch.attach)
    return context


async def test_a_customer_queues_before_the_start_and_is_let_in_by_polling(
    browser: Browser, live_server: str, shop: Runtime
) -> None:
    watch = Watch()
    variant = await stocked_variant(shop, units=3)

    # Staff schedule the sale, starting a few seconds from now.
    staff = await _watched(browser, live_server, watch)
    await browser_login(staff, STAFF_EMAIL)
    admin = await staff.new_page()
    await watch.visit(admin, "/admin/flash-sales")
    await admin.get_by_role("link", name="Schedule a sale").click()
    starts_at = (utcnow() + LEAD).replace(microsecond=0)
    await admin.get_by_label("Title").fill("Midnight drop")
    await admin.get_by_label("Variants and units set aside").fill(f"{variant.sku}, 2")
    await admin.get_by_label("Sale price").fill("9.99")
    await admin.get_by_label("Starts (UTC)").fill(starts_at.strftime("%Y-%m-%dT%H:%M:%S"))
    ends_at = starts_at + timedelta(hours=1)
    await admin.get_by_label("Ends (UTC)").fill(ends_at.strftime("%Y-%m-%dT%H:%M:%S"))
    await admin.get_by_label("Admission rate").fill("600")
    await admin.get_by_role("button", name="Schedule the sale").click()
    await expect(admin.locator(".flash-success")).to_contain_text("Midnight drop scheduled")
    sale_id = admin.url.rsplit("/", 1)[1]
    await expect(admin.get_by_test_id("count-queued")).to_have_text("Queued0")
    await expect(admin.get_by_test_id("count-remaining")).to_have_text("Remaining2")

    # The customer finds it from the home page, before the start.
    shopper = await _watched(browser, live_server, watch)
    await browser_login(shopper, SHOPPER_EMAIL)
    page = await shopper.new_page()
    await watch.visit(page, "/")
    await page.get_by_test_id("flash-sale-link").get_by_role("link").click()
    await expect(page).to_have_url(f"{page.url.split('/flash-sales')[0]}/flash-sales/{sale_id}")
    await page.wait_for_load_state("networkidle")
    await expect(page.get_by_test_id("sale-status")).to_have_text("Starting soon")
    await expect(page.get_by_test_id("start-countdown")).to_contain_text("Starts in 0m")
    await expect(page.get_by_test_id("sale-price")).to_have_text("€9.99")
    await page.get_by_test_id("join-queue").click()
    panel = page.get_by_test_id("queue-state")
    await expect(panel).to_have_attribute("data-state", "waiting")
    await expect(panel).to_contain_text("drawn when the sale starts")
    assert utcnow() < starts_at, "joined after the start: the pre-queue was not seen"
    await screenshot(page, "flashsale-waiting")

    # The staff's page sees the customer queued, by its own polling.
    await expect(admin.get_by_test_id("count-queued")).to_have_text("Queued1")

    # The sale starts; the page's polls run the admission pass and the customer is let in.
    await expect(panel).to_have_attribute(
        "data-state", "admitted", timeout=LEAD.seconds * 1000 + 20_000
    )
    await expect(panel).to_contain_text("It's your turn")
    await expect(page.get_by_test_id("start-countdown")).to_have_text("The sale has started")
    await expect(page.get_by_test_id("sale-status")).to_have_text("Live now")
    await expect(page.get_by_test_id("buy-now")).to_have_attribute(
        "href", f"/flash-sales/{sale_id}/checkout"
    )
    await expect(page.get_by_test_id("admitted-countdown")).to_contain_text("m")
    await screenshot(page, "flashsale-admitted")

    await expect(admin.get_by_test_id("count-admitted")).to_have_text("Admitted1")
    await expect(admin.get_by_test_id("count-queued")).to_have_text("Queued0")
    await expect(admin.get_by_test_id("count-remaining")).to_have_text("Remaining1")
    await screenshot(admin, "flashsale-staff-counters")
    # "Buy now": the held unit, the time left, the address, a test card; "Place order".
    await page.get_by_test_id("buy-now").click()
    await expect(page).to_have_url(f"{live_server}/flash-sales/{sale_id}/checkout")
    await expect(page.get_by_test_id("held-price")).to_have_text("€9.99")
    await expect(page.get_by_test_id("buy-countdown")).to_contain_text("m")
    await page.get_by_label("Full name").fill("Erika Mustermann")
    await page.get_by_label("Address", exact=True).fill("Heidestrasse 17")
    await page.get_by_label("Postal code").fill("10557")
    await page.get_by_label("City").fill("Berlin")
    await page.get_by_label("Country").select_option("DE")
    await expect(page.get_by_test_id("checkout-total")).to_be_visible()
    await page.get_by_test_id("card-select").select_option("tok_visa")
    await screenshot(page, "flashsale-checkout")
    await page.get_by_test_id("place-order").click()

    # The purchase's page: queued, until the worker places it; then the order.
    purchase = page.get_by_test_id("purchase-state")
    await expect(purchase).to_have_attribute("data-state", "queued")
    await expect(purchase).to_contain_text("Placing your order")
    assert await checkout.drain_purchases(shop) == 1
    await expect(purchase).to_have_attribute("data-state", "completed")
    order_id = await page.get_by_test_id("order-number").inner_text()
    await screenshot(page, "flashsale-order-placed")
    await page.get_by_test_id("view-order").click()
    await expect(page).to_have_url(f"{live_server}/account/orders/{order_id}")
    await expect(page.get_by_test_id("order")).to_have_attribute("data-order-id", order_id)
    await expect(admin.get_by_test_id("count-remaining")).to_have_text("Remaining1")

    await watch.visit(page, "/flash-sales")
    await watch.visit(admin, "/admin/flash-sales/new")
    await watch.visit(admin, "/admin/flash-sales")

    assert watch.violations == [], watch.violations
    assert watch.errors == [], watch.errors
    await shopper.close()
    await staff.close()
