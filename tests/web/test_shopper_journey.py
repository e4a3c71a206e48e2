"""A shopper's whole visit in a real browser: search with a typo, filter, pick a variant, fill a
guest cart, log in (the cart comes along), pay, and find the order in the account. And the
unhappy path: a declined card leaves no order and the cart as it was."""

from __future__ import annotations

import re

from fastapi import FastAPI
from playwright.async_api import Browser, Page, expect

from mercato.cart import service as cart_service
from mercato.identity import service as identity
from mercato.orders import service as orders
from mercato.runtime import Runtime
from tests.web.conftest import SHOPPER_EMAIL, screenshot
from tests.web.shop_helpers import fill_address, log_in, pick_journey, products_in_stock


async def _count(page: Page) -> int:
    return int(await page.get_by_test_id("result-total").inner_text())


async def test_a_shopper_finds_buys_and_tracks_an_order(
    page: Page, shop: Runtime, browser: Browser, live_server: str
) -> None:
    pick = await pick_journey(shop)
    product = pick.product
    variant = product.variants[1]

    # Home: categories and products.
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Shop by category")).to_be_visible()
    await expect(page.get_by_role("heading", name="Best sellers")).to_be_visible()
    await screenshot(page, "shop-home")

    # Search with a typo: the search says what it searched instead, and finds products.
    box = page.get_by_label("Search products")
    await box.fill(pick.typo)
    await box.press("Enter")
    await expect(page).to_have_url(re.compile(r"/search\?q="))
    await expect(page.get_by_test_id("showing-results-for")).to_contain_text(pick.word)
    before = await _count(page)
    assert before > 0

    # Two facets: the brand, then "in stock only"; the count drops, chips appear. The links
    # are plain links; htmx swaps only the results region and updates the address.
    assert product.brand is not None
    await page.evaluate("window.notReloaded = true")
    await (
        page.get_by_test_id("facet-brand")
        .get_by_role("link", name=re.compile(re.escape(product.brand)))
        .first.click()
    )
    chips = page.get_by_test_id("chip")
    await expect(chips.filter(has_text=f"Brand: {product.brand}")).to_be_visible()
    after_brand = await _count(page)
    assert 0 < after_brand < before
    await page.get_by_test_id("facet-in_stock").get_by_role("link").click()
    await expect(chips.filter(has_text="In stock only")).to_be_visible()
    await expect(chips).to_have_count(2)
    assert 0 < await _count(page) <= after_brand
    await expect(page).to_have_url(re.compile(r"brand=.*in_stock=true"))
    assert await page.evaluate("window.notReloaded === true")
    await expect(page.locator(f'[data-product-id="{product.id}"]')).to_be_visible()
    await screenshot(page, "shop-search-facets")

    # The product page: pick the second variant, its price and stock show.
    await page.locator(f'[data-product-id="{product.id}"] a.card-link').click()
    await expect(page.get_by_test_id("product-title")).to_have_text(product.title)
    await page.locator(".variant-option", has_text=variant.label).first.click()
    await expect(page.get_by_test_id("product-price")).to_have_text(variant.price_text)
    await expect(page.get_by_test_id("stock-hint")).to_have_text(
        re.compile(r"In stock|Only \d+ left")
    )
    await screenshot(page, "shop-product")
    await page.get_by_label("Quantity").fill("2")
    await page.get_by_test_id("add-to-cart").click()
    await expect(page.locator(".flash-success")).to_contain_text("Added")

    # The guest cart.
    await page.get_by_role("navigation", name="Account").get_by_role("link", name="Cart").click()
    lines = page.get_by_test_id("cart-line")
    await expect(lines).to_have_count(1)
    await expect(lines.first).to_have_attribute("data-variant-id", variant.id)

    # Logging in brings the guest cart into the customer's cart.
    await log_in(page, SHOPPER_EMAIL)
    await expect(page).to_have_url(re.compile(r"/cart$"))
    await expect(lines).to_have_count(1)
    await expect(page.get_by_test_id("line-quantity")).to_have_value("2")
    await screenshot(page, "shop-cart")

    # Checkout with the approving test card.
    await page.get_by_test_id("checkout-link").click()
    await expect(page.get_by_role("heading", name="Checkout")).to_be_visible()
    await fill_address(page)
    await page.get_by_label("Standard delivery").check()
    await page.get_by_label("Test card").select_option("tok_visa")
    await expect(page.get_by_test_id("checkout-total")).to_be_visible()
    await screenshot(page, "shop-checkout")
    await page.get_by_test_id("place-order").click()

    # Confirmation, then the order in the account.
    await expect(page.get_by_role("heading", name="Thank you for your order!")).to_be_visible()
    order_id = await page.get_by_test_id("order-number").inner_text()
    await expect(page.get_by_test_id("confirmation")).to_contain_text(product.title)
    await screenshot(page, "shop-confirmation")
    await page.get_by_test_id("view-order").click()
    await expect(page).to_have_url(re.compile(rf"/account/orders/{order_id}$"))
    await expect(page.get_by_test_id("order-status")).to_have_text("paid")
    await expect(page.get_by_test_id("order-lines")).to_contain_text(product.title)
    await expect(page.get_by_test_id("timeline")).to_contain_text("paid")
    await screenshot(page, "shop-order")

    # The order is in the history, and the cart is empty again.
    await page.get_by_role("link", name="Orders", exact=True).click()
    await expect(page.get_by_test_id("order-row")).to_have_count(1)
    await expect(page.get_by_test_id("order-row")).to_have_attribute("data-order-id", order_id)

    # The same home page on a phone: no sideways scrolling.
    phone = await browser.new_context(base_url=live_server, viewport={"width": 375, "height": 812})
    try:
        small = await phone.new_page()
        await small.goto("/")
        assert await small.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        await screenshot(small, "shop-home-phone")
    finally:
        await phone.close()


async def test_a_declined_card_makes_no_order_and_keeps_the_cart(
    page: Page, shop: Runtime, app: FastAPI
) -> None:
    product = (await products_in_stock(shop))[0]
    await page.goto(f"/p/{product.id}")
    await log_in(page, SHOPPER_EMAIL)
    await page.get_by_test_id("add-to-cart").click()
    await expect(page.locator(".flash-success")).to_contain_text("Added")

    await page.goto("/checkout")
    await fill_address(page)
    # Promo codes apply in place (htmx swaps the summary; the page is not reloaded).
    await page.evaluate("window.notReloaded = true")
    promo = page.get_by_label("Promo code (optional)")
    await promo.fill("NOPE")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#e-promo_code")).to_contain_text("no promo code")
    await promo.fill("WELCOME10")
    await page.get_by_role("button", name="Apply").click()
    summary = page.get_by_test_id("order-summary")
    await expect(summary).to_contain_text("Discount (WELCOME10)")
    await page.get_by_label("Country").select_option("GB")
    await expect(page.get_by_label("Standard delivery")).to_be_checked()
    assert await page.evaluate("window.notReloaded === true")
    await page.get_by_label("Country").select_option("DE")
    await page.get_by_label("Test card").select_option("tok_chargeDeclined")
    await page.get_by_test_id("place-order").click()

    error = page.get_by_test_id("checkout-error")
    await expect(error).to_be_visible()
    await expect(error).to_have_attribute("data-code", "payment_declined")
    await expect(error).to_contain_text("declined")
    # The form is drawn again with what the shopper typed, ready for another card.
    await expect(page.get_by_label("City")).to_have_value("Berlin")
    await expect(page.get_by_label("Promo code (optional)")).to_have_value("WELCOME10")
    await screenshot(page, "shop-checkout-declined")

    async with shop.db.transaction() as uow:
        user = await identity.get_user_by_email(uow, SHOPPER_EMAIL)
        assert user is not None
        history = await orders.customer_orders(
            uow, user.id, secret_key=shop.settings.secret_key, cursor=None, limit=10
        )
        cart = await cart_service.get_cart_for(uow, user.id, None)
    assert history.items == []
    assert cart is not None and [line.variant_id for line in cart.lines] == [product.variants[0].id]

    await page.goto("/cart")
    await expect(page.get_by_test_id("cart-line")).to_have_count(1)

    # Another card then goes through with the same form.
    await page.goto("/checkout")
    await fill_address(page)
    await page.get_by_label("Test card").select_option("tok_mastercard")
    await page.get_by_test_id("place-order").click()
    await expect(page.get_by_role("heading", name="Thank you for your order!")).to_be_visible()
