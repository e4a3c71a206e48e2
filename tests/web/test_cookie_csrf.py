"""Cross-site requests: the JSON API signed in by the page's session cookie refuses unsafe calls
that do not come from the shop's pages (a foreign ``Origin``, or neither a same-origin one nor
the pages' CSRF token), while bearer-token calls are unaffected; and a CSRF token is bound to
the session it was made for, so one planted before logging in is worthless after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from mercato.catalog.service import VariantInfo
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD
from tests.web.admin_helpers import HTML, csrf_of, page_token, stocked_variant
from tests.web.conftest import SHOPPER_EMAIL, STAFF_EMAIL
from tests.web.shop_helpers import api_order, api_token, client_log_in

EVIL = {"Origin": "https://evil.example"}
SAME = {"Origin": "http://testserver"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JAR_DOMAIN = "testserver.local"  # how httpx keys the cookies of http://testserver


@pytest.fixture
async def raw_client(app: FastAPI) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    """Clients that send no ``Origin`` of their own (as a script would, or a forged request
    whose headers each test spells out)."""
    clients: list[httpx.AsyncClient] = []

    def factory() -> httpx.AsyncClient:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        clients.append(c)
        return c

    yield factory
    for c in clients:
        await c.aclose()


async def _cookie_login(client: httpx.AsyncClient, email: str) -> None:
    r = await client.post("/api/auth/login", json={"email": email, "password": TEST_PASSWORD})
    assert r.status_code == 200, r.text
    assert "mercato_session" in client.cookies


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "csrf_failed"


async def _status(client: httpx.AsyncClient, path: str, bearer: dict[str, str]) -> str:
    r = await client.get(path, headers=bearer)
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


async def _variants_of_distinct_products(shop: Runtime, count: int) -> list[VariantInfo]:
    found: dict[str, VariantInfo] = {}
    skip = 0
    while len(found) < count:
        variant = await stocked_variant(shop, skip=skip)
        found.setdefault(variant.product_id, variant)
        skip += 1
    return list(found.values())


async def test_cookie_signed_api_changes_need_the_shops_origin_or_token(
    shop: Runtime, raw_client: Callable[[], httpx.AsyncClient], client: httpx.AsyncClient
) -> None:
    staff_bearer = await api_token(client, STAFF_EMAIL)
    shopper_bearer = await api_token(client, SHOPPER_EMAIL)
    products = await _variants_of_distinct_products(shop, 3)
    first, second, third = (v.product_id for v in products)
    order_id = (await api_order(client, SHOPPER_EMAIL, products[0].id))["order_id"]

    staff = raw_client()
    await _cookie_login(staff, STAFF_EMAIL)
    shopper = raw_client()
    await _cookie_login(shopper, SHOPPER_EMAIL)
    archive = f"/api/admin/products/{first}/archive"

    # The three forged requests of the report: a foreign page posting an empty form, a cancel,
    # and a text/plain logout of every device. None of them does anything.
    _refused(await staff.post(archive, headers={**EVIL, **FORM}, content=b""))
    _refused(await shopper.post(f"/api/orders/{order_id}/cancel", headers={**EVIL, **FORM}))
    _refused(
        await shopper.post(
            "/api/auth/logout-all",
            headers={**EVIL, "Content-Type": "text/plain"},
            content=b"{}",
        )
    )
    assert await _status(client, f"/api/admin/products/{first}", staff_bearer) == "active"
    assert await _status(client, f"/api/orders/{order_id}", shopper_bearer) == "paid"
    assert (await shopper.get("/api/me")).status_code == 200  # still signed in

    # Saying nothing about where it comes from is refused as well; so is a cross-site fetch
    # that only sends Sec-Fetch-Site, and a foreign Origin even with a good token.
    token = await page_token(staff, "/admin")
    _refused(await staff.post(archive))
    _refused(await staff.post(archive, headers={"Sec-Fetch-Site": "cross-site"}))
    _refused(await staff.post(archive, headers={**EVIL, "X-CSRF-Token": token}))
    _refused(await staff.post(archive, headers={"Origin": "null"}))
    _refused(await staff.post(archive, headers={"X-CSRF-Token": token + "x"}))
    assert await _status(client, f"/api/admin/products/{first}", staff_bearer) == "active"

    # The shop's own pages: the same-origin Origin a browser sends, Sec-Fetch-Site, or the
    # pages' token (what htmx sends) each let the change through.
    r = await staff.post(archive, headers=SAME)
    assert r.status_code == 200, r.text
    r = await staff.post(
        f"/api/admin/products/{second}/archive", headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert r.status_code == 200, r.text
    shopper_token = await page_token(shopper, f"/account/orders/{order_id}")
    r = await shopper.post(
        f"/api/orders/{order_id}/cancel", headers={"X-CSRF-Token": shopper_token}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"

    # Bearer tokens are not sent by browsers on their own: no Origin or token needed, and a
    # foreign Origin (a web app of another site holding its own token) is not refused.
    r = await client.post(f"/api/admin/products/{third}/archive", headers=staff_bearer)
    assert r.status_code == 200, r.text
    r = await raw_client().post(
        "/api/auth/logout-all", headers={**shopper_bearer, **EVIL, "Content-Type": "text/plain"}
    )
    assert r.status_code == 204
    # Reads are not changes: a GET with the cookie needs nothing.
    assert (await staff.get(f"/api/admin/products/{first}", headers=EVIL)).status_code == 200


async def test_a_planted_csrf_cookie_and_token_are_worthless_after_login(
    shop: Runtime, raw_client: Callable[[], httpx.AsyncClient]
) -> None:
    variant_id = (await stocked_variant(shop)).id
    add = {"variant_id": variant_id, "quantity": "1"}

    # The attacker's browser: a CSRF cookie and the token of its pages.
    attacker = raw_client()
    planted_token = csrf_of((await attacker.get("/account/login", headers=HTML)).text)
    planted_cookie = attacker.cookies["mercato_csrf"]

    # The victim's browser gets that cookie planted (from a sibling domain, say), then logs in:
    # the login forgets the CSRF cookie, so the next page makes a new one.
    victim = raw_client()
    victim.cookies.set("mercato_csrf", planted_cookie, domain=JAR_DOMAIN)
    form = await victim.get("/account/login", headers=HTML)
    r = await victim.post(
        "/account/login",
        data={"email": SHOPPER_EMAIL, "password": TEST_PASSWORD, "csrf_token": csrf_of(form.text)},
    )
    assert r.status_code == 303, r.text
    assert any(
        c.startswith("mercato_csrf=") and "Max-Age=0" in c for c in r.headers.get_list("set-cookie")
    ), r.headers
    assert "mercato_csrf" not in victim.cookies

    # Planted again after the login, the pair still fails: the token was made for no session,
    # and this browser now has one. On a page form and on the API alike.
    victim.cookies.set("mercato_csrf", planted_cookie, domain=JAR_DOMAIN)
    r = await victim.post("/cart/items", data={**add, "csrf_token": planted_token}, headers=HTML)
    assert r.status_code == 403
    assert "csrf_failed" in r.text
    r = await victim.post(
        "/api/cart/items",
        json={"variant_id": variant_id, "quantity": 1},
        headers={"X-CSRF-Token": planted_token},
    )
    assert r.status_code == 403

    # The victim's own pages carry a token of its own session, which works.
    victim.cookies.delete("mercato_csrf", domain=JAR_DOMAIN)
    own = await page_token(victim, "/cart")
    r = await victim.post("/cart/items", data={**add, "csrf_token": own}, headers=HTML)
    assert r.status_code == 303, r.text
    # Logging out forgets the CSRF cookie too: that token dies with the session.
    r = await victim.post("/account/logout", data={"csrf_token": own})
    assert r.status_code == 303
    assert "mercato_csrf" not in victim.cookies

    # And a token of another signed-in browser is refused.
    other = raw_client()
    await client_log_in(other, SHOPPER_EMAIL)
    other_token = await page_token(other, "/cart")
    await client_log_in(victim, SHOPPER_EMAIL)
    await page_token(victim, "/cart")
    r = await victim.post("/cart/items", data={**add, "csrf_token": other_token}, headers=HTML)
    assert r.status_code == 403
