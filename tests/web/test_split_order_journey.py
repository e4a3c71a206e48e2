"""One order from two sellers in a real browser: the shopper adds the buy box's offer and
another seller's from the product page, checks out once; each seller signs in to its portal
and ships its own part; the shopper's order page shows the two parcels, each under "Sold by".
Not one Content-Security-Policy violation, nor a script error, on the way."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, expect

from mercato.money import format_minor
from mercato.runtime import Runtime
from mercato.web.deps import DELIVER_TO_COOKIE
from tests.conftest import user_headers
from tests.marketplace.conftest import approved_seller
from tests.web.admin_helpers import browser_login, stocked_variant
from tests.web.conftest import SHOPPER_EMAIL, screenshot
from tests.web.shop_helpers import fill_address
from tests.web.test_csp import REPORT_VIOLATIONS, Watch


async def _watched(browser: Browser, live_server: str, watch: Watch) -> BrowserContext:
    context = await browser.new_context(
        base_url=live_server, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    await context.add_init_script(REPORT_VIOLATIONS)
    context.on("page", watch.attach)
    return context


async def test_two_sellers_ship_their_parts_of_one_order(
    browser: Browser,
    live_server: str,
    shop: Runtime,
    app: FastAPI,
    client: httpx.AsyncClient,
) -> None:
    watch = Watch()
    variant = await stocked_variant(shop, units=3)
    staff_api = await user_headers(app, "staff", "ops@example.com")
    sellers = {}
    for name, price in (("Alpha", variant.price // 2), ("Beta", variant.price * 3 // 4)):
        seller = await approved_seller(client, app, staff_api, name, ship_to=("DE",))
        r = await client.post(
            "/api/seller/offers",
            headers=seller.headers,
            json={
                "sku": variant.sku,
                "price": format_minor(price, variant.currency),
                "quantity": 4,
                "handling_days": 1,
            },
        )
        assert r.status_code == 201, r.text
        sellers[name] = seller

    # The shopper adds the buy box's offer (Alpha's) and Beta's from "Other sellers".
    shopper = await _watched(browser, live_server, watch)
    await shopper.add_cookies([{"name": DELIVER_TO_COOKIE, "value": "DE", "url": live_server}])
    await browser_login(shopper, SHOPPER_EMAIL)
    page = await shopper.new_page()
    await watch.visit(page, f"/p/{variant.product_id}?variant={variant.id}")
    box = page.locator(f'[data-testid=variant-sellers][data-variant="{variant.id}"]')
    await expect(box.get_by_test_id("featured-offer")).to_contain_text("Sold by Alpha")
    await box.get_by_test_id("add-featured-offer").get_by_role("button").click()
    await expect(page.locator(".flash-success")).to_contain_text("Added")
    box = page.locator(f'[data-testid=variant-sellers][data-variant="{variant.id}"]')
    beta_row = box.locator(
        f'[data-testid=other-offer][data-seller-id="{sellers["Beta"].seller_id}"]'
    )
    await expect(beta_row).to_contain_text("Beta")
    await screenshot(page, "split-other-sellers-add")
    await beta_row.get_by_test_id("add-offer").get_by_role("button").click()
    await expect(page.locator(".flash-success")).to_contain_text("Added")

    await watch.visit(page, "/cart")
    await expect(page.get_by_test_id("cart-line")).to_have_count(2)
    await watch.visit(page, "/checkout")
    await fill_address(page)
    await page.get_by_label("Standard delivery").check()
    await page.get_by_label("Test card").select_option("tok_visa")
    await page.get_by_test_id("place-order").click()
    await expect(page.get_by_role("heading", name="Thank you for your order!")).to_be_visible()
    order_id = await page.get_by_test_id("order-number").inner_text()

    # Each seller ships its own part from the portal.
    for name, seller in sellers.items():
        context = await _watched(browser, live_server, watch)
        await browser_login(context, f"{name.lower()}@example.com")
        portal = await context.new_page()
        await watch.visit(portal, "/seller/orders")
        [part] = [
            p
            for p in (await client.get("/api/seller/orders", headers=seller.headers)).json()[
                "items"
            ]
            if p["order_id"] == order_id
        ]
        card = portal.locator(f'[data-testid=order-part][data-part-id="{part["part_id"]}"]')
        await expect(card.get_by_test_id("units-left")).to_have_text("1")
        form = card.get_by_test_id("ship-form")
        await form.get_by_label("Carrier").select_option("manual")
        await form.get_by_label("Tracking number").fill(f"{name.upper()}-1")
        await form.get_by_role("button").click()
        await expect(portal.locator(".flash-success")).to_contain_text(
            f"tracking number {name.upper()}-1"
        )
        card = portal.locator(f'[data-testid=order-part][data-part-id="{part["part_id"]}"]')
        await expect(card.get_by_test_id("units-left")).to_have_text("0")
        await expect(card.get_by_test_id("tracking-number")).to_have_text(f"{name.upper()}-1")
        if name == "Beta":
            await screenshot(portal, "split-seller-shipped")
        await context.close()

    # The shopper's order: two parcels, each under its seller.
    await watch.visit(page, f"/account/orders/{order_id}")
    await expect(page.get_by_test_id("order-status")).to_have_text("shipped")
    await expect(page.get_by_test_id("shipment")).to_have_count(2)
    await expect(page.get_by_test_id("part-shipments")).to_have_text(
        ["Sold by Alpha", "Sold by Beta"]
    )
    await expect(page.get_by_test_id("sold-by")).to_have_text(["Sold by Alpha", "Sold by Beta"])
    await expect(page.get_by_test_id("tracking-number")).to_have_text(["ALPHA-1", "BETA-1"])
    await screenshot(page, "split-order-two-parcels")

    assert watch.violations == [], watch.violations
    assert watch.errors == [], watch.errors
    await shopper.close()
