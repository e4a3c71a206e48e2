"""Helpers of the back-office page tests: signing in over HTTP, reading a page's CSRF token,
choosing a stocked variant of the demo shop and placing a real order through the API."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from playwright.async_api import BrowserContext, Page

from mercato.catalog import service as catalog
from mercato.catalog.service import VariantInfo
from mercato.inventory import service as inventory
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD

ADDRESS: dict[str, Any] = {
    "name": "Erika Mustermann",
    "line1": "Heidestrasse 17",
    "city": "Berlin",
    "postal_code": "10557",
    "country": "DE",
}
HTML = {"Accept": "text/html"}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def api_login(client: httpx.AsyncClient, email: str) -> None:
    """Sign ``client`` in: the session cookie of ``POST /api/auth/login`` stays in its jar."""
    r = await client.post("/api/auth/login", json={"email": email, "password": TEST_PASSWORD})
    assert r.status_code == 200, r.text


async def browser_login(context: BrowserContext, email: str) -> None:
    """Sign a browser context in through the API (its cookies are the context's)."""
    r = await context.request.post(
        "/api/auth/login", data={"email": email, "password": TEST_PASSWORD}
    )
    assert r.status == 200, await r.text()


async def form_login(page: Page, email: str) -> None:
    """Fill the login page the browser is on and submit it."""
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(TEST_PASSWORD)
    await page.locator("main form button[type=submit]").click()


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


async def page_token(client: httpx.AsyncClient, url: str) -> str:
    """GET a page (which also sets the CSRF cookie) and return its forms' token."""
    r = await client.get(url, headers=HTML)
    assert r.status_code == 200, r.text
    return csrf_of(r.text)


async def stocked_variant(
    runtime: Runtime, *, warehouse: str = "BER", units: int = 3, skip: int = 0
) -> VariantInfo:
    """An active variant with at least ``units`` available at ``warehouse`` (the ``skip``-th
    such one, by SKU)."""
    async with runtime.db.transaction() as uow:
        variants = [v for v in await catalog.variants_by_sku(uow, limit=500) if v.active]
        levels = await inventory.stock_for_variants(uow, [v.id for v in variants])
    found = [
        v
        for v in variants
        if any(s.warehouse_code == warehouse and s.available >= units for s in levels[v.id])
    ]
    assert len(found) > skip, "the demo shop has no such variant"
    return found[skip]


async def place_order(
    client: httpx.AsyncClient, variant: VariantInfo, *, quantity: int = 1
) -> dict[str, Any]:
    """Add ``variant`` to the signed-in customer's cart and check out with a test card."""
    r = await client.post("/api/cart/items", json={"variant_id": variant.id, "quantity": quantity})
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/checkout",
        json={
            "shipping_address": ADDRESS,
            "shipping_method": "standard",
            "payment_token": "tok_visa",
        },
        headers={"Idempotency-Key": f"test-{uuid.uuid4()}"},
    )
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body
