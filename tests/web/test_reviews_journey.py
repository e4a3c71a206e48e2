"""The review journey in a real browser: a shopper's order is shipped and delivered (staff, via
the fulfilment API), the shopper writes a review on the product page, staff approve it in the
back office's queue (in place), and the product page and the search results show the new
rating. A shop outside demo mode: before the review, nothing rates the product."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page, expect

from mercato.reviews import service as reviews
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.web.admin_helpers import api_login, form_login, place_order, stocked_variant
from tests.web.conftest import SHOPPER_EMAIL, STAFF_EMAIL, screenshot, sync

HOSTILE = "<script>alert(1)</script> Boils in two minutes."


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A real shop: ratings come from reviews only (no demo figures).
    return settings.model_copy(update={"demo_mode": False})


async def _deliver(client: httpx.AsyncClient, staff: httpx.AsyncClient, order_id: str) -> None:
    r = await staff.post(f"/api/admin/orders/{order_id}/shipments", json={"carrier": "sandbox"})
    assert r.status_code == 201, r.text
    r = await staff.post(f"/api/admin/shipments/{r.json()['id']}/deliver", json={})
    assert r.status_code == 200, r.text


async def test_a_delivered_order_is_reviewed_approved_and_rated(
    app: FastAPI,
    browser: Browser,
    context: BrowserContext,
    page: Page,
    live_server: str,
    shop: Runtime,
    client: httpx.AsyncClient,
    make_client: Callable[[], httpx.AsyncClient],
) -> None:
    variant = await stocked_variant(shop)
    product_id = variant.product_id
    await api_login(client, SHOPPER_EMAIL)
    placed = await place_order(client, variant)
    staff_api = make_client()
    await api_login(staff_api, STAFF_EMAIL)

    # Before delivery the shopper may not review: no form, and the product is not rated.
    await page.goto(f"/account/login?next=/p/{product_id}")
    await form_login(page, SHOPPER_EMAIL)
    await page.wait_for_url(f"**/p/{product_id}")
    await expect(page.get_by_test_id("rating-average")).to_have_text("No ratings yet.")
    await expect(page.get_by_test_id("write-review")).to_have_count(0)
    await expect(page.get_by_test_id("review-verification")).to_contain_text("received it")

    await _deliver(client, staff_api, placed["order_id"])

    # Delivered: the shopper writes a review (text, so it waits for staff).
    await page.reload()
    form = page.get_by_test_id("write-review")
    await form.get_by_label("Your rating").select_option("4")
    await form.get_by_label("Title (optional)").fill("Does the job")
    await form.get_by_label("Your review (optional)").fill(HOSTILE)
    await form.get_by_role("button", name="Submit review").click()
    await expect(page.locator(".flash-success")).to_contain_text("once our team has read it")
    await expect(page.get_by_test_id("own-review")).to_contain_text("Waiting for our team")
    await expect(page.get_by_test_id("review")).to_have_count(0)

    # Staff approve it from the queue, in place.
    staff_context = await browser.new_context(
        base_url=live_server, viewport={"width": 1280, "height": 900}
    )
    staff_context.set_default_timeout(15_000)
    try:
        staff = await staff_context.new_page()
        await staff.goto("/admin/reviews")
        await staff.wait_for_url("**/account/login?next=**")
        await form_login(staff, STAFF_EMAIL)
        await staff.wait_for_url("**/admin/reviews")
        await expect(staff.get_by_test_id("queue-length")).to_have_text("1")
        row = staff.locator(f"tr[data-product-id='{product_id}']")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("<script>")  # shown as text
        await screenshot(staff, "admin-reviews")
        await row.get_by_test_id("approve").click()
        await expect(row.get_by_test_id("review-state")).to_have_text("approved")
        await expect(row).to_contain_text("Review approved and published")
        await row.get_by_text("Respond in public").click()
        await row.get_by_label("Response").fill("Thank you for your review!")
        await row.get_by_test_id("respond").click()
        await expect(row.get_by_test_id("response")).to_contain_text("Thank you")
    finally:
        await staff_context.close()

    # The product page: the new rating, the histogram, the review with its badge.
    await page.reload()
    await expect(page.get_by_test_id("rating-average")).to_have_text("4.0")
    await expect(page.get_by_test_id("rating-count")).to_have_text("1")
    await expect(page.get_by_test_id("histogram-4")).to_have_text("1")
    await expect(page.locator(".product-rating")).to_contain_text("4.0 (1)")
    [review] = await page.get_by_test_id("review").all()
    await expect(review).to_contain_text(HOSTILE)
    await expect(review.get_by_test_id("verified")).to_have_text("Verified purchase")
    await expect(review).to_contain_text("Thank you for your review!")
    assert await page.locator("script:has-text('alert(1)')").count() == 0
    await screenshot(page, "product-reviews")

    # Search: one worker pass takes the rating into the index.
    await sync(app)
    await page.goto(f"/search?q={variant.product_title.split()[0]}&sort=rating")
    card = page.locator(f"[data-testid=product-card][data-product-id='{product_id}']")
    await expect(card.locator(".rating-value")).to_have_text("4.0 (1)")

    async with shop.db.transaction() as uow:
        figures = await reviews.rating(uow, product_id)
    assert (figures.count, figures.histogram) == (1, (0, 0, 0, 1, 0))
