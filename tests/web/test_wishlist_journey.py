"""A customer in Chromium saves a product from its page (htmx turns the button into "Saved"),
sees it under "Recently viewed" on the next product, and uses the wishlist page: "Add to cart",
then "Remove"; no Content-Security-Policy violation on the way."""

from __future__ import annotations

from fastapi import FastAPI
from playwright.async_api import ConsoleMessage, Page, expect

from tests.recommendations.signals import (
    fast_password_hashing,  # noqa: F401  (autouse)
    make_customer,
    make_shirt,
)
from tests.web.conftest import runtime_of
from tests.web.shop_helpers import log_in


async def test_save_view_and_buy_from_the_wishlist(app: FastAPI, page: Page) -> None:
    runtime = runtime_of(app)
    await make_customer(runtime, "ada@example.com")
    shirt = await make_shirt(runtime.db)
    scarf = await make_shirt(runtime.db, "Wool scarf")
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", on_console)
    await page.goto(f"/p/{shirt.product_id}")
    await expect(page.get_by_test_id("wishlist-login")).to_be_visible()
    await log_in(page, "ada@example.com")
    await page.goto(f"/p/{shirt.product_id}")
    await page.get_by_label("Medium").check()
    await page.get_by_role("button", name="Save to wishlist").click()
    await expect(page.get_by_role("button", name="Saved")).to_be_visible()

    await page.goto(f"/p/{scarf.product_id}")
    viewed = page.get_by_test_id("recently-viewed")
    await expect(viewed.get_by_role("link", name="Linen shirt")).to_be_visible()

    await page.get_by_test_id("nav-wishlist").click()
    item = page.get_by_test_id("wishlist-item")
    await expect(item).to_have_count(1)
    await expect(item.get_by_text("Medium")).to_be_visible()
    await item.get_by_role("button", name="Add to cart").click()
    await expect(page.get_by_text("Added Linen shirt (Medium) to your cart.")).to_be_visible()
    await page.get_by_test_id("wishlist-remove").click()
    await expect(page.get_by_text("Your wishlist is empty.", exact=False)).to_be_visible()
    assert violations == []
