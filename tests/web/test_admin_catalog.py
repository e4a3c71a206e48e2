"""Back office catalog pages: products and variants, created and changed by staff in a real
browser (and over plain HTTP for the cheaper checks), seen by shoppers after the worker's pass."""

from __future__ import annotations

import re

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from playwright.async_api import BrowserContext, Page, expect

from mercato.catalog import service as catalog
from mercato.identity import service as identity
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD
from tests.web.conftest import SHOPPER_EMAIL, STAFF_EMAIL, screenshot, sync

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real argon2id at its smallest cost: these tests sign in, they do not test hash strength.
    monkeypatch.setattr(
        identity, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


# --------------------------------------------------------------------------------------------
# Helpers (also used by test_admin_settings)


async def browser_login(context: BrowserContext, email: str = STAFF_EMAIL) -> None:
    """Sign the browser in through the API (it sets the HttpOnly session cookie)."""
    r = await context.request.post(
        "/api/auth/login", data={"email": email, "password": TEST_PASSWORD}
    )
    assert r.ok, await r.text()


async def http_login(client: httpx.AsyncClient, email: str = STAFF_EMAIL) -> None:
    r = await client.post("/api/auth/login", json={"email": email, "password": TEST_PASSWORD})
    assert r.status_code == 200, r.text


async def csrf_from(client: httpx.AsyncClient, url: str) -> str:
    """Open a page as a browser would (which sets the CSRF cookie) and read its form token."""
    r = await client.get(url, headers={"Accept": "text/html"})
    assert r.status_code == 200, r.text
    found = _CSRF.search(r.text)
    assert found is not None
    return found.group(1)


async def post_form(
    client: httpx.AsyncClient, url: str, data: dict[str, str | list[str]], token: str
) -> httpx.Response:
    return await client.post(
        url, data={**data, "csrf_token": token}, headers={"Accept": "text/html"}
    )


def field_error(html: str, name: str) -> str:
    """The error shown under a form field (``<p class="field-error" id="e-<name>">``)."""
    found = re.search(rf'<p class="field-error" id="e-{re.escape(name)}">([^<]*)</p>', html)
    assert found is not None, f"no error shown for {name}"
    return found.group(1)


async def first_category_id(app: FastAPI) -> str:
    runtime: Runtime = app.state.runtime
    async with runtime.db.transaction() as session:
        tree = await catalog.get_category_tree(session)
    return tree[0].category.id


async def some_product(app: FastAPI) -> catalog.ProductView:
    runtime: Runtime = app.state.runtime
    async with runtime.db.transaction() as session:
        page = await catalog.staff_products(session, status="active", limit=1)
    return page.items[0]


# --------------------------------------------------------------------------------------------
# In the browser


async def test_staff_create_a_product_with_a_variant_and_shoppers_find_it(
    app: FastAPI, shop: Runtime, context: BrowserContext, page: Page
) -> None:
    await browser_login(context)
    category_id = await first_category_id(app)

    await page.goto("/admin/products")
    await expect(page.locator("h1")).to_have_text("Products")
    assert await page.locator("#product-results tbody tr").count() == 25
    await screenshot(page, "admin-products")
    # Typing in the search box narrows the list in place (htmx), and the URL follows.
    known = await some_product(app)
    await page.fill("#f-q", known.variants[0].sku)
    await expect(page.locator("#product-results tbody tr")).to_have_count(1)
    await expect(page.locator("#product-results tbody tr")).to_contain_text(known.title)
    assert "q=" in page.url

    # An empty form is refused with the errors next to the fields.
    await page.get_by_role("link", name="New product").click()
    await page.get_by_role("button", name="Create product").click()
    await expect(page.locator("#e-title")).to_be_visible()
    await expect(page.locator("#f-title")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#f-title")).to_have_attribute("aria-describedby", "e-title")
    await expect(page.locator("#e-category_id")).to_be_visible()

    await page.fill("#f-title", "Aurora Oak Desk Lamp")
    await page.select_option("#f-category_id", category_id)
    await page.select_option("#f-status", "active")
    await page.fill("#f-description", "A warm desk lamp turned from oak.")
    names = page.locator("input[name=attr_name]")
    values = page.locator("input[name=attr_value]")
    await names.nth(0).fill("material")
    await values.nth(0).fill("oak")
    await names.nth(1).fill("Bad Name!")
    await values.nth(1).fill("x")
    await page.fill("#f-media", "https://img.example/lamp.jpg\nnot a url")
    await page.get_by_role("button", name="Create product").click()
    # Wrong attribute name and image line: both refused, everything typed is kept.
    await expect(page.locator("#e-attr-1")).to_contain_text("Bad Name!")
    await expect(page.locator("#e-media")).to_contain_text("line 2")
    await expect(page.locator("#f-title")).to_have_value("Aurora Oak Desk Lamp")
    await expect(page.locator("input[name=attr_value]").nth(0)).to_have_value("oak")

    await page.locator("input[name=attr_name]").nth(1).fill("")
    await page.locator("input[name=attr_value]").nth(1).fill("")
    # htmx adds another attribute row on request.
    await page.get_by_role("button", name="Add an attribute row").click()
    # (two typed rows and two blank ones were shown again)
    await expect(page.locator("input[name=attr_name]")).to_have_count(5)
    await page.locator("input[name=attr_name]").last.fill("finish")
    await page.locator("input[name=attr_value]").last.fill("matte")
    await page.fill("#f-media", "https://img.example/lamp.jpg")
    await page.get_by_role("button", name="Create product").click()
    await expect(page.locator(".flash-success")).to_contain_text("created")
    product_id = page.url.rsplit("/", 1)[-1].split("#")[0]
    assert product_id.startswith("prd_")

    # A variant: a price with three decimals, then one that is no number, then a good one.
    await page.fill("#f-sku", "AURORA-LAMP-1")
    opt_names = page.locator("input[name=opt_name]")
    await opt_names.nth(0).fill("colour")
    await page.locator("input[name=opt_value]").nth(0).fill("amber")
    await page.fill("#f-price", "12.345")
    await page.get_by_role("button", name="Add variant").click()
    await expect(page.locator("#e-price")).to_contain_text("2 decimal places")
    await expect(page.locator("#f-price")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#f-price")).to_have_value("12.345")
    await expect(page.locator("#f-sku")).to_have_value("AURORA-LAMP-1")
    await screenshot(page, "admin-product-edit-error")
    await page.fill("#f-price", "abc")
    await page.get_by_role("button", name="Add variant").click()
    await expect(page.locator("#e-price")).to_contain_text("decimal")
    await page.fill("#f-price", "12.34")
    await page.get_by_role("button", name="Add variant").click()
    await expect(page.locator(".flash-success")).to_contain_text("AURORA-LAMP-1")
    row = page.locator("#variants tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("€12.34")
    await expect(row).to_contain_text("colour: amber")

    # Shoppers see it once the worker has passed: the product API and search.
    await sync(app)
    shopper = await context.request.get(f"/api/products/{product_id}")
    body = await shopper.json()
    assert body["status"] == "active"
    assert body["attributes"] == {"material": "oak", "finish": "matte"}
    assert [(v["sku"], v["price"], v["options"]) for v in body["variants"]] == [
        ("AURORA-LAMP-1", "12.34", {"colour": "amber"})
    ]
    found = await (await context.request.get("/api/search?q=aurora+lamp")).json()
    assert product_id in [hit["id"] for hit in found["hits"]]

    # Edit: a new title and a changed variant price.
    await page.fill("#f-title", "Aurora Oak Desk Lamp II")
    await page.get_by_role("button", name="Save product").click()
    await expect(page.locator(".flash-success")).to_contain_text("saved")
    await expect(page.locator("h1")).to_contain_text("Aurora Oak Desk Lamp II")
    await page.get_by_role("link", name="Edit AURORA-LAMP-1").click()
    await page.fill("#f-price", "9.999")
    await page.get_by_role("button", name="Save variant").click()
    await expect(page.locator("#e-price")).to_contain_text("2 decimal places")
    await page.fill("#f-price", "14.50")
    await page.get_by_role("button", name="Save variant").click()
    await expect(page.locator("#variants tbody tr")).to_contain_text("€14.50")

    # Archive (after the confirmation): shoppers no longer find it.
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Archive").click()
    await expect(page.locator(".flash-success")).to_contain_text("archived")
    await expect(page.locator("h1 .badge")).to_have_text("archived")
    await sync(app)
    await context.clear_cookies()
    gone = await context.request.get(f"/api/products/{product_id}")
    assert gone.status == 404
    found = await (await context.request.get("/api/search?q=aurora+lamp")).json()
    assert product_id not in [hit["id"] for hit in found["hits"]]


# --------------------------------------------------------------------------------------------
# Over HTTP


async def test_list_search_and_paging_and_variant_errors_over_http(
    app: FastAPI, shop: Runtime, client: httpx.AsyncClient
) -> None:
    await http_login(client)
    product = await some_product(app)
    sku = product.variants[0].sku

    # Search by SKU (any case) and by a word of the title; filter by status; keyset pages.
    r = await client.get("/admin/products", params={"q": sku.lower()})
    assert r.status_code == 200
    assert re.findall(r'href="/admin/products/(prd_[^"]+)"', r.text) == [product.id]
    word = product.title.split()[-1]
    r = await client.get("/admin/products", params={"q": word})
    assert f'href="/admin/products/{product.id}"' in r.text
    r = await client.get("/admin/products", params={"status": "archived"})
    assert "No products match" in r.text

    first = await client.get("/admin/products")
    ids_first = re.findall(r'href="/admin/products/(prd_[^"]+)"', first.text)
    assert len(ids_first) == 25
    nxt = re.search(r'href="(/admin/products\?[^"]*before=[^"]+)"', first.text)
    assert nxt is not None
    second = await client.get(nxt.group(1).replace("&amp;", "&"))
    ids_second = re.findall(r'href="/admin/products/(prd_[^"]+)"', second.text)
    assert len(ids_second) == 25
    assert not set(ids_first) & set(ids_second)
    assert ids_first[-1] > ids_second[0]

    # A SKU already in use, a price that is no number, an option row without a name: each
    # shown next to its field, with what was typed kept.
    url = f"/admin/products/{product.id}"
    token = await csrf_from(client, url)
    form: dict[str, str | list[str]] = {
        "sku": sku,
        "price": "5.00",
        "opt_name": ["size"],
        "opt_value": ["XL"],
        "active": "1",
    }
    r = await post_form(client, f"{url}/variants", form, token)
    assert r.status_code == 422
    assert sku in field_error(r.text, "sku")
    assert 'aria-describedby="e-sku"' in r.text
    assert 'value="XL"' in r.text
    r = await post_form(
        client, f"{url}/variants", {**form, "sku": "FRESH-1", "price": "abc"}, token
    )
    assert r.status_code == 422
    assert "decimal" in field_error(r.text, "price")
    assert 'value="abc"' in r.text
    r = await post_form(
        client, f"{url}/variants", {**form, "sku": "FRESH-1", "opt_name": [""]}, token
    )
    assert r.status_code == 422
    assert "needs a name" in field_error(r.text, "opt-0")

    async with shop.db.transaction() as session:
        assert await catalog.get_variant_by_sku(session, "FRESH-1") is None
        after = await catalog.get_product(session, product.id, include_inactive=True)
    assert after is not None and len(after.variants) == len(product.variants)


async def test_customers_are_refused_and_a_post_needs_the_csrf_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime: Runtime = app.state.runtime
    async with runtime.db.transaction() as session:
        for email, role in ((STAFF_EMAIL, "staff"), (SHOPPER_EMAIL, "customer")):
            await identity.create_user(
                session, email=email, password=TEST_PASSWORD, role=role, name=role
            )
        category = await catalog.create_category(session, name="Lamps")

    html = {"Accept": "text/html"}
    r = await client.get("/admin/products", headers=html)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/account/login?next=/admin/products")

    await http_login(client, SHOPPER_EMAIL)
    for url in (
        "/admin/products",
        "/admin/products/new",
        "/admin/promos",
        "/admin/shipping",
        "/admin/tax",
        "/admin/webhooks",
        "/admin/emails",
    ):
        r = await client.get(url, headers=html)
        assert r.status_code == 403, url
        assert "Staff only" in r.text
    client.cookies.clear()

    await http_login(client)
    form = {"title": "Forged Product", "category_id": category.id, "status": "active"}
    r = await client.post("/admin/products", data=form, headers=html)
    assert r.status_code == 403
    assert "csrf_failed" in r.text
    r = await client.post("/admin/products", data={**form, "csrf_token": "forged"}, headers=html)
    assert r.status_code == 403
    async with runtime.db.transaction() as session:
        found = await catalog.staff_products(session, text="Forged Product")
    assert found.items == []

    token = await csrf_from(client, "/admin/products/new")
    r = await post_form(client, "/admin/products", form, token)
    assert r.status_code == 303
    async with runtime.db.transaction() as session:
        found = await catalog.staff_products(session, text="Forged Product")
    assert [p.title for p in found.items] == ["Forged Product"]
    assert r.headers["location"] == f"/admin/products/{found.items[0].id}"


# --------------------------------------------------------------------------------------------
# The service function the list uses


async def test_staff_products_matches_title_or_sku_any_status_in_keyset_pages(
    runtime: Runtime,
) -> None:
    async with runtime.db.transaction() as session:
        root = await catalog.create_category(session, name="Lamps")
        made = []
        for i, status in enumerate(["active", "draft", "archived", "active"]):
            view = await catalog.create_product(
                session,
                catalog.NewProduct(
                    title=f"Desk Lamp {i}" if i != 3 else "Floor light",
                    category_id=root.id,
                    currency=runtime.settings.currency,
                    status=status,  # type: ignore[arg-type]
                    variants=[catalog.NewVariant(sku=f"LMP_{i}-X", price=1000 + i)],
                ),
            )
            made.append(view.id)

    async with runtime.db.transaction() as session:
        every = await catalog.staff_products(session)
        assert [p.id for p in every.items] == made[::-1]
        assert every.next_before is None
        lamps = await catalog.staff_products(session, text="desk LAMP")
        assert {p.id for p in lamps.items} == set(made[:3])
        by_sku = await catalog.staff_products(session, text="lmp_3")
        assert [p.id for p in by_sku.items] == [made[3]]
        # "_" and "%" are matched literally, not as wildcards.
        assert (await catalog.staff_products(session, text="LMP%")).items == []
        drafts = await catalog.staff_products(session, status="draft")
        assert [p.id for p in drafts.items] == [made[1]]
        first = await catalog.staff_products(session, limit=3)
        assert [p.id for p in first.items] == made[:0:-1]
        assert first.next_before == made[1]
        rest = await catalog.staff_products(session, before=first.next_before, limit=3)
        assert [p.id for p in rest.items] == [made[0]]
        assert rest.next_before is None
        assert all(len(p.variants) == 1 for p in every.items)
