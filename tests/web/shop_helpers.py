"""Helpers for the storefront's page tests: finding products in the seeded demo catalog that
suit a scenario (asked of the services, never hard-coded), logging in through the pages, and
placing, shipping and delivering an order through the JSON API."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from playwright.async_api import Page, expect

from mercato.catalog import service as catalog
from mercato.events import dispatcher
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.money import format_minor
from mercato.runtime import Runtime
from mercato.search import events as search_events
from mercato.search import query as q
from mercato.search import service as search
from tests.conftest import TEST_PASSWORD

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"|"X-CSRF-Token":"([^"]+)"')
ADDRESS = {
    "name": "Sam Shopper",
    "line1": "Hauptstraße 1",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


@dataclass(frozen=True, slots=True)
class VariantFact:
    id: str
    label: str
    price: int
    currency: str
    available: int

    @property
    def price_text(self) -> str:
        return f"€{format_minor(self.price, self.currency)}"


@dataclass(frozen=True, slots=True)
class ProductFact:
    id: str
    title: str
    brand: str | None
    variants: tuple[VariantFact, ...]


@dataclass(frozen=True, slots=True)
class JourneyPick:
    product: ProductFact
    word: str
    typo: str


def variant_label(title: str, options: dict[str, str]) -> str:
    return title or " / ".join(options.values()) or "Standard"


async def products_in_stock(runtime: Runtime, *, min_variants: int = 1) -> list[ProductFact]:
    """Listed products whose every variant has at least two units available, oldest first."""
    async with runtime.db.transaction() as uow:
        ids = await catalog.listed_product_ids(uow, limit=1000)
        views = await catalog.get_products(uow, ids, include_inactive=False)
        variant_ids = [v.id for view in views.values() for v in view.variants]
        stock = await inventory.availability(uow, variant_ids)
    found = []
    for pid in sorted(views):
        view = views[pid]
        variants = tuple(
            VariantFact(
                v.id, variant_label(v.title, dict(v.options)), v.price, v.currency, stock[v.id]
            )
            for v in view.variants
        )
        if len(variants) >= min_variants and all(v.available >= 2 for v in variants):
            found.append(
                ProductFact(view.id, view.title, view.brand.name if view.brand else None, variants)
            )
    return found


def make_typo(word: str) -> str:
    """One letter less before the end: "backpack" → "backpak"."""
    return word[:-2] + word[-1]


async def pick_journey(runtime: Runtime) -> JourneyPick:
    """A product with two or more variants in stock (with different labels), and a word of its
    title whose misspelling the search corrects, finding it among hits of several brands (so
    that filtering by its brand changes the count)."""
    for product in await products_in_stock(runtime, min_variants=2):
        if len({v.label for v in product.variants}) < 2 or product.brand is None:
            continue
        brand_words = set(product.brand.lower().split())
        for word in product.title.split():
            word = word.lower()
            if not word.isalpha() or len(word) < 6 or word in brand_words:
                continue
            typo = make_typo(word)
            result = await search.search(
                runtime, q.SearchRequest(q=typo, limit=48, currency=runtime.settings.currency)
            )
            brands = (result.facets or {}).get("brand") or []
            if (
                result.showing_results_for
                and product.id in result.ids
                and len(brands) >= 2
                and result.total <= 48
            ):
                return JourneyPick(product, word, typo)
    raise AssertionError("the demo catalog has no product suiting the journey")


# --------------------------------------------------------------------------------------------
# Pages


async def log_in(page: Page, email: str, password: str = TEST_PASSWORD) -> None:
    """Log in through the form (from wherever the page is, via the header link)."""
    await page.get_by_role("navigation", name="Account").get_by_role("link", name="Log in").click()
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


async def fill_address(page: Page, address: dict[str, str] = ADDRESS) -> None:
    await page.get_by_label("Full name").fill(address["name"])
    await page.get_by_label("Address", exact=True).fill(address["line1"])
    await page.get_by_label("Postal code").fill(address["postal_code"])
    await page.get_by_label("City").fill(address["city"])
    await page.get_by_label("Country").select_option(address["country"])


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found is not None, "the page has no CSRF token"
    return found.group(1) or found.group(2)


async def client_log_in(client: httpx.AsyncClient, email: str) -> None:
    """Log an httpx client in through the login form (cookies kept by the client)."""
    page = await client.get("/account/login")
    r = await client.post(
        "/account/login",
        data={"email": email, "password": TEST_PASSWORD, "csrf_token": csrf_of(page.text)},
    )
    assert r.status_code == 303, r.text


async def create_customer(runtime: Runtime, email: str) -> str:
    async with runtime.db.transaction() as uow:
        user = await identity.create_user(
            uow, email=email, password=TEST_PASSWORD, role="customer", name=email.split("@")[0]
        )
    return user.id


# --------------------------------------------------------------------------------------------
# The JSON API, for orders a test needs but does not click through


async def api_token(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    r = await client.post("/api/auth/login", json={"email": email, "password": TEST_PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def api_order(
    client: httpx.AsyncClient, email: str, variant_id: str, quantity: int = 1
) -> dict[str, Any]:
    """Place an order for ``email`` through the API (paid with the approving test card)."""
    headers = await api_token(client, email)
    r = await client.post(
        "/api/cart/items", json={"variant_id": variant_id, "quantity": quantity}, headers=headers
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/checkout",
        json={
            "shipping_address": ADDRESS,
            "shipping_method": "standard",
            "payment_token": "tok_visa",
        },
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def api_ship_and_deliver(client: httpx.AsyncClient, staff_email: str, order_id: str) -> str:
    """Ship every unit with the sandbox carrier and mark it delivered; the tracking number."""
    headers = await api_token(client, staff_email)
    r = await client.post(f"/api/admin/orders/{order_id}/allocate", headers=headers)
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/admin/orders/{order_id}/shipments",
        json={"carrier": "sandbox"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    shipment_id, tracking = r.json()["id"], r.json()["tracking_number"]
    r = await client.post(f"/api/admin/shipments/{shipment_id}/deliver", headers=headers)
    assert r.status_code == 200, r.text
    return str(tracking)


async def set_stock(runtime: Runtime, variant_id: str, units: int) -> None:
    """Make ``units`` available for a variant: the first warehouse holds them, others none."""
    async with runtime.db.transaction() as uow:
        levels = await inventory.stock_for_variant(uow, variant_id)
        assert levels, f"no stock rows for {variant_id}"
        for i, level in enumerate(levels):
            target = units if i == 0 else 0
            if level.available != target:
                await inventory.adjust(
                    uow, variant_id, level.warehouse_code, target - level.available, "test"
                )
    # Pages show it once the page cache heard of it (the worker's delivery, here at once).
    await dispatcher.dispatch_once(runtime, only=[search_events.PAGE_CACHE.name])
