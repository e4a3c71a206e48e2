"""The staff journey: a shopper's order is found in the back office, allocated, picked, packed
and shipped with a tracking number; the shopper sees it shipped with that number; staff mark
it delivered; the shopper asks to return it; staff approve, receive and refund the return;
the shopper's order page then says refunded. Two browser contexts: staff and shopper."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, BrowserContext, Page, expect

from mercato.money import to_minor
from mercato.orders import service as orders
from mercato.returns import service as returns
from mercato.runtime import Runtime
from mercato.web.templating import money
from tests.web.admin_helpers import api_login, form_login, place_order, stocked_variant
from tests.web.conftest import SHOPPER_EMAIL, STAFF_EMAIL, screenshot

TRACKING = "1Z999AA10123456784"


async def _flash(page: Page, text: str) -> None:
    await expect(page.locator(".flash-success")).to_contain_text(text)


async def test_staff_ship_deliver_and_refund_a_return(
    browser: Browser,
    context: BrowserContext,
    page: Page,
    live_server: str,
    shop: Runtime,
    client: httpx.AsyncClient,
) -> None:
    # A shopper's order, placed through the API.
    await api_login(client, SHOPPER_EMAIL)
    placed = await place_order(client, await stocked_variant(shop))
    order_id: str = placed["order_id"]
    total = to_minor(placed["total"], placed["currency"])

    # Staff log in on the way to the orders and find it by the shopper's e-mail.
    await page.goto("/admin/orders")
    await page.wait_for_url("**/account/login?next=**")
    await form_login(page, STAFF_EMAIL)
    await page.wait_for_url("**/admin/orders")
    await page.get_by_label("Customer e-mail").fill(SHOPPER_EMAIL)
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**/admin/orders?*email=*")
    rows = page.get_by_test_id("orders-table").locator("tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("paid")
    await screenshot(page, "admin-orders")
    await rows.first.get_by_role("link", name=order_id).click()
    await page.wait_for_url(f"**/admin/orders/{order_id}")

    # Fulfilment: allocate, pick, pack, then ship with the carrier's tracking number.
    await page.get_by_test_id("allocate").click()
    await _flash(page, "Allocated to BER")
    await page.get_by_test_id("pick").click()
    await _flash(page, "marked picked")
    await expect(page.get_by_test_id("order-status")).to_have_text("fulfilling")
    await page.get_by_test_id("pack").click()
    await _flash(page, "marked packed")
    await page.get_by_label("Carrier").select_option("manual")
    await page.get_by_label("Tracking number").fill(TRACKING)
    await page.get_by_test_id("ship").click()
    await _flash(page, f"tracking number {TRACKING}")
    await expect(page.get_by_test_id("order-status")).to_have_text("shipped")
    await expect(page.get_by_test_id("payment-captured")).to_have_text(
        money(total, placed["currency"])
    )
    await expect(page.get_by_test_id("shipments")).to_contain_text(TRACKING)
    await screenshot(page, "admin-order-detail")

    # The shopper, in a browser of their own, sees it shipped with the tracking number.
    shopper_context = await browser.new_context(
        base_url=live_server, viewport={"width": 1280, "height": 900}
    )
    shopper_context.set_default_timeout(15_000)
    try:
        shopper = await shopper_context.new_page()
        await shopper.goto(f"/account/orders/{order_id}")
        await shopper.wait_for_url("**/account/login?next=**")
        await form_login(shopper, SHOPPER_EMAIL)
        await shopper.wait_for_url(f"**/account/orders/{order_id}")
        await expect(shopper.get_by_test_id("order-status")).to_have_text("shipped")
        await expect(shopper.get_by_test_id("tracking-number")).to_have_text(TRACKING)

        # Staff: the parcel arrived.
        await page.get_by_test_id("deliver").click()
        await _flash(page, "marked delivered")
        await expect(page.get_by_test_id("order-status")).to_have_text("delivered")

        # The shopper asks to return it.
        await shopper.reload()
        await expect(shopper.get_by_test_id("order-status")).to_have_text("delivered")
        await shopper.get_by_role("button", name="Request return").click()
        await expect(shopper.get_by_test_id("return-status")).to_have_text("requested")

        # Staff work through the returns queue: approve, receive (back on the shelf), refund.
        await page.goto("/admin/returns?status=requested")
        queue = page.get_by_test_id("returns-table").locator(f"tr[data-order-id='{order_id}']")
        await expect(queue).to_have_count(1)
        await screenshot(page, "admin-returns")
        await queue.locator("a[href^='/admin/returns/']").click()
        await page.wait_for_url("**/admin/returns/rma_*")
        await page.get_by_test_id("approve").click()
        await _flash(page, "Return approved")
        await expect(page.get_by_test_id("return-status")).to_have_text("approved")
        await page.get_by_test_id("receive").click()
        await _flash(page, "refunded")
        await expect(page.get_by_test_id("return-status")).to_have_text("refunded")
        await expect(page.get_by_test_id("refund-amount")).to_have_text(
            money(total, placed["currency"])
        )
        await screenshot(page, "admin-return-detail")

        # The shopper's order page: refunded.
        await shopper.reload()
        await expect(shopper.get_by_test_id("order-status")).to_have_text("refunded")
        await expect(shopper.get_by_test_id("return-status")).to_have_text("refunded")
    finally:
        await shopper_context.close()

    async with shop.db.transaction() as session:
        order = await orders.get_order(session, order_id)
        assert order is not None and order.status == "refunded"
        assert order.refunded_total == order.total == total
        payment = await orders.payment_summary(session, order)
        assert payment is not None and payment.captured == payment.refunded == total
        assert await returns.count_by_status(session) == {"refunded": 1}
        assert [h.to_status for h in order.history] == [
            "paid",
            "fulfilling",
            "shipped",
            "delivered",
            "return_requested",
            "returned",
            "refunded",
        ]
