"""A shopper in Chromium: the product page shows what is bought with it and what its buyers
also bought, with no CSP violation, and "Add both" puts both in the cart."""

from __future__ import annotations

from fastapi import FastAPI
from playwright.async_api import ConsoleMessage, Page, expect

from mercato.recommendations import service
from tests.recommendations.conftest import make_shop, sell_history
from tests.web.conftest import runtime_of


async def test_add_both_from_the_product_page(app: FastAPI, page: Page) -> None:
    runtime = runtime_of(app)
    shop = await make_shop(runtime.db)
    await sell_history(runtime.db, shop)
    await service.build(runtime)
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", on_console)
    await page.goto(f"/p/{shop.product['kettle']}?country=DE")
    together = page.get_by_test_id("bought-together")
    await expect(together.get_by_role("heading", name="Frequently bought together")).to_be_visible()
    await expect(together.get_by_role("link", name="Test teapot")).to_be_visible()
    also = page.get_by_test_id("also-bought")
    await expect(
        also.get_by_role("heading", name="Customers who bought this also bought")
    ).to_be_visible()
    await page.get_by_test_id("add-both").click()
    await expect(page.get_by_text("Added both to your cart.")).to_be_visible()
    await page.goto("/cart")
    for title in ("Test kettle", "Test teapot"):
        await expect(page.get_by_role("link", name=title).first).to_be_visible()
    assert violations == []
