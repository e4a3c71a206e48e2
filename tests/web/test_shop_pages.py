"""Storefront pages: autocomplete with the keyboard, the variant picker, phone widths, and the
plain-HTTP side of listings, the cart's forms and the demo's placeholder pictures."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.async_api import Browser, Page, expect

from mercato.catalog import service as catalog
from mercato.runtime import Runtime
from tests.web.conftest import SHOPPER_EMAIL, screenshot
from tests.web.shop_helpers import (
    ADDRESS,
    client_log_in,
    csrf_of,
    log_in,
    products_in_stock,
    set_stock,
)

HTML = {"accept": "text/html"}
NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth"


async def test_autocomplete_variant_picker_and_phone_widths(
    page: Page, browser: Browser, live_server: str, shop: Runtime
) -> None:
    products = await products_in_stock(shop, min_variants=2)
    product = next(p for p in products if len({v.label for v in p.variants}) >= 2)
    first, second = product.variants[0], product.variants[1]

    # Autocomplete: suggestions as one types; arrows move through them, Escape goes back.
    await page.goto("/")
    box = page.get_by_label("Search products")
    prefix = product.title.split()[0][:4]
    await box.press_sequentially(prefix.lower(), delay=30)
    suggestions = page.get_by_test_id("suggestion")
    await expect(suggestions.first).to_be_visible()
    assert await suggestions.count() >= 2
    await box.press("ArrowDown")
    await expect(suggestions.nth(0)).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(suggestions.nth(1)).to_be_focused()
    await page.keyboard.press("ArrowUp")
    await expect(suggestions.nth(0)).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(box).to_be_focused()
    await expect(page.get_by_test_id("suggestions")).to_be_hidden()
    await box.press("ArrowDown")
    target = await suggestions.nth(0).get_attribute("href")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(re.escape(target or "?")))

    # The variant picker: each variant's price and stock as it is picked.
    await set_stock(shop, first.id, 3)
    await set_stock(shop, second.id, 0)
    await page.goto(f"/p/{product.id}")
    price, stock = page.get_by_test_id("product-price"), page.get_by_test_id("stock-hint")
    add = page.get_by_test_id("add-to-cart")
    await expect(price).to_have_text(first.price_text)
    await expect(stock).to_have_text("Only 3 left")
    await page.locator(".variant-option", has_text=second.label).first.click()
    await expect(price).to_have_text(second.price_text)
    await expect(stock).to_have_text("Out of stock")
    await expect(add).to_be_disabled()
    await page.locator(".variant-option", has_text=first.label).first.click()
    await expect(stock).to_have_text("Only 3 left")
    await expect(add).to_be_enabled()
    await add.click()
    await expect(page.locator(".flash-success")).to_contain_text("Added")

    # A phone: no page scrolls sideways.
    phone = await browser.new_context(base_url=live_server, viewport={"width": 375, "height": 740})
    try:
        small = await phone.new_page()
        await small.goto(f"/p/{product.id}")
        await small.get_by_test_id("add-to-cart").click()
        pages = [
            "/",
            "/search?q=&in_stock=true",
            f"/search?q={product.title.split()[-1]}",
            f"/p/{product.id}",
            "/cart",
            "/account/login",
            "/account/register",
            "/no-such-page",
        ]
        for path in pages:
            await small.goto(path)
            assert await small.evaluate(NO_OVERFLOW), path
            if path.startswith(("/cart", "/p/")):
                await screenshot(small, f"shop-{path[1:].split('/')[0]}-phone")
        await small.goto("/search?q=&in_stock=true")
        await small.get_by_text("Filters", exact=True).click()
        assert await small.evaluate(NO_OVERFLOW)
        await screenshot(small, "shop-search-phone")
        await log_in(small, SHOPPER_EMAIL)
        for path in ("/account/orders", "/checkout"):
            await small.goto(path)
            assert await small.evaluate(NO_OVERFLOW), path
        await screenshot(small, "shop-checkout-phone")
    finally:
        await phone.close()


async def test_listings_cart_forms_and_pictures_over_http(
    client: httpx.AsyncClient, shop: Runtime
) -> None:
    # The autocomplete fragment: links, no page around them; nothing for an empty box.
    product = (await products_in_stock(shop))[0]
    word = product.title.split()[0][:4].lower()
    r = await client.get("/search/suggest", params={"q": word})
    assert r.status_code == 200
    assert 'data-testid="suggestion"' in r.text and 'href="/p/' in r.text
    assert "<html" not in r.text
    assert (await client.get("/search/suggest", params={"q": " "})).text.strip() == ""

    # Product pages by id or by slug; an unknown one is a 404 page.
    async with shop.db.transaction() as session:
        tree = await catalog.get_category_tree(session)
        view = await catalog.get_product(session, product.id)
    assert view is not None
    for ident in (product.id, view.slug):
        r = await client.get(f"/p/{ident}", headers=HTML)
        assert r.status_code == 200, ident
        assert f'data-product-id="{product.id}"' in r.text
    assert (await client.get("/p/prd_nothing", headers=HTML)).status_code == 404
    assert (await client.get("/p/no-such-slug", headers=HTML)).status_code == 404

    # Category pages: by slug they redirect to the full path, which lists its products.
    root = tree[0]
    child = root.children[0]
    r = await client.get(f"/c/{child.category.slug}?sort=newest", headers=HTML)
    assert r.status_code == 308
    assert r.headers["location"] == f"/c/{child.category.path}?sort=newest"
    r = await client.get(f"/c/{root.category.path}", headers=HTML)
    assert r.status_code == 200
    assert f'href="/c/{child.category.path}' in r.text  # its subcategory, with a count
    assert 'aria-label="Breadcrumb"' in r.text
    assert (await client.get("/c/no-such-category", headers=HTML)).status_code == 404

    # Search pages forgive anything odd in the address.
    odd = (
        "/search?q=&min_price=abc&max_price=-1&rating_gte=9&sort=bogus&in_stock=maybe"
        "&attr.Bad=1&brand=%3Cx%3E&cursor=junk"
    )
    r = await client.get(odd, headers=HTML)
    assert r.status_code == 200
    assert 'data-testid="result-total">120<' in r.text

    # Keyset pages: "Next page" carries the cursor; page two holds other products.
    r = await client.get("/search", params={"q": ""}, headers=HTML)
    first_ids = set(re.findall(r'data-product-id="([^"]+)"', r.text))
    found = re.search(r'href="([^"]+)" rel="next"', r.text)
    assert found is not None and len(first_ids) == 24
    next_url = found.group(1).replace("&amp;", "&")
    assert "cursor" in parse_qs(urlsplit(next_url).query)
    r = await client.get(next_url, headers=HTML)
    second_ids = set(re.findall(r'data-product-id="([^"]+)"', r.text))
    assert len(second_ids) == 24 and not first_ids & second_ids
    assert "First page" in r.text

    # The cart's forms: add, change the quantity, refuse too many, remove.
    variant = product.variants[0]
    await set_stock(shop, variant.id, 4)
    token = csrf_of((await client.get("/cart", headers=HTML)).text)
    r = await client.post(
        "/cart/items",
        data={
            "variant_id": variant.id,
            "quantity": "1",
            "next": f"/p/{product.id}",
            "csrf_token": token,
        },
    )
    assert r.status_code == 303 and r.headers["location"] == f"/p/{product.id}"
    assert "mercato_cart" in r.cookies
    cart = await client.get("/cart", headers=HTML)
    assert cart.text.count('data-testid="cart-line"') == 1
    line_id = re.search(r'action="/cart/items/([^"/]+)"', cart.text)
    assert line_id is not None
    r = await client.post(
        f"/cart/items/{line_id.group(1)}", data={"quantity": "2", "csrf_token": token}
    )
    assert r.status_code == 303
    cart = await client.get("/cart", headers=HTML)
    assert re.search(r'value="2"[^>]*data-testid="line-quantity"', cart.text)
    assert "Quantity updated" in cart.text
    r = await client.post(
        f"/cart/items/{line_id.group(1)}",
        data={"quantity": "5", "csrf_token": token},
    )
    cart = await client.get("/cart", headers=HTML)
    assert "only 4 of this item" in cart.text
    assert re.search(r'value="2"[^>]*data-testid="line-quantity"', cart.text)
    r = await client.post(
        f"/cart/items/{line_id.group(1)}", data={"quantity": "500", "csrf_token": token}
    )
    assert "must be between 1 and 99" in (await client.get("/cart", headers=HTML)).text
    r = await client.post(f"/cart/items/{line_id.group(1)}/remove", data={"csrf_token": token})
    assert r.status_code == 303
    cart = await client.get("/cart", headers=HTML)
    assert 'data-testid="cart-empty"' in cart.text

    # The demo's pictures: drawn per category name, cached a day; odd names are 404.
    r = await client.get(f"/static/img/{child.category.slug}.svg")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.headers["cache-control"] == "public, max-age=86400"
    assert r.text.startswith("<svg") and "</svg>" in r.text
    for bad in ("Bad_Name", "a%3Cb", "-x", "x" * 90):
        assert (await client.get(f"/static/img/{bad}.svg")).status_code == 404, bad

    # Checkout without JavaScript: "Update" redraws the form for another country; missing
    # fields are named; the same form posted twice (a double click) makes one order.
    await set_stock(shop, variant.id, 10)
    r = await client.post(
        "/cart/items", data={"variant_id": variant.id, "quantity": "1", "csrf_token": token}
    )
    assert r.status_code == 303
    await client_log_in(client, SHOPPER_EMAIL)
    page = await client.get("/checkout", headers=HTML)
    assert page.status_code == 200
    token = csrf_of(page.text)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text)
    assert key is not None
    form = {**ADDRESS, "shipping_method": "standard", "payment_token": "tok_visa"}
    form |= {"csrf_token": token, "idempotency_key": key.group(1)}
    r = await client.post("/checkout", data={**form, "country": "GB", "action": "update"})
    assert r.status_code == 200
    assert '<option value="GB" selected>United Kingdom</option>' in r.text
    fragment = await client.get("/checkout/summary", params={"country": "GB"}, headers=HTML)
    assert 'data-testid="shipping-methods"' in fragment.text and "<html" not in fragment.text
    r = await client.post("/checkout", data={**form, "city": "", "action": "place"})
    assert r.status_code == 422
    assert re.search(r'id="e-city">This field is required', r.text)
    first = await client.post("/checkout", data={**form, "action": "place"})
    again = await client.post("/checkout", data={**form, "action": "place"})
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert first.headers["location"].startswith("/checkout/confirmation/ord_")
    history = await client.get("/account/orders", headers=HTML)
    assert history.text.count('data-testid="order-row"') == 1
