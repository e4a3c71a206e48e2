"""The marketplace's pages over HTTP: a product's buy box and "Other sellers" (shown, sorted,
hidden with a single offer), a seller's public page (404 unless approved), and the staff's
sellers back office (who may look, approving and suspending with and without CSRF)."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI

from mercato.marketplace import service
from mercato.web.deps import DELIVER_TO_COOKIE
from tests.conftest import user_headers
from tests.marketplace.conftest import SellerAccount, Shop, approved_seller, make_shop, runtime_of
from tests.web.admin_helpers import HTML, api_login, csrf_of, page_token

pytestmark = pytest.mark.usefixtures("backend")

_OTHER = re.compile(r'data-testid="other-offer" data-seller-id="([^"]+)" data-landed="(\d+)"')
_FEATURED = re.compile(r'data-testid="featured-offer" data-seller-id="([^"]+)"')
STAFF = "staff@example.com"


@pytest.fixture
async def shop(app: FastAPI) -> Shop:
    return await make_shop(runtime_of(app).db)


async def _offer(client: httpx.AsyncClient, seller: SellerAccount, sku: str, **fields: Any) -> None:
    body = {"sku": sku, "price": "18.00", "quantity": 5, **fields}
    r = await client.post("/api/seller/offers", headers=seller.headers, json=body)
    assert r.status_code == 201, r.text


async def _product_page(client: httpx.AsyncClient, shop: Shop, query: str = "") -> str:
    client.cookies.set(DELIVER_TO_COOKIE, "DE")
    r = await client.get(f"/p/{shop.product_id}?variant={shop.variant_id}{query}", headers=HTML)
    assert r.status_code == 200, r.text
    return r.text


def _chosen_block(page: str, variant_id: str) -> str:
    """The chosen variant's part of the sellers box (the other variants' parts are hidden)."""
    start = page.index(f'<div data-variant="{variant_id}" data-testid="variant-sellers"')
    end = page.find('<div data-variant="', start + 1)
    return page[start : end if end != -1 else len(page)]


async def _api_order(client: httpx.AsyncClient, shop: Shop, sort: str) -> list[str]:
    r = await client.get(f"/api/products/{shop.product_id}/offers?country=DE&sort={sort}")
    assert r.status_code == 200, r.text
    [variant] = [v for v in r.json()["variants"] if v["variant_id"] == shop.variant_id]
    return [o["seller_id"] for o in variant["others"]]


async def test_the_buy_box_and_other_sellers_sorted_by_landed_price(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop, staff_headers: dict[str, str]
) -> None:
    # Cheap but slow (wins the buy box), cheap with dear shipping, and dear with free shipping.
    slow = await approved_seller(client, app, staff_headers, "Slowpoke")
    dear_ship = await approved_seller(client, app, staff_headers, "Shippy")
    await _offer(client, slow, shop.sku, price="15.00", shipping="0", handling_days=3)
    await _offer(client, dear_ship, shop.sku, price="12.00", shipping="12.00", handling_days=0)

    page = await _product_page(client, shop)
    block = _chosen_block(page, shop.variant_id)
    featured = _FEATURED.search(block)
    assert featured is not None and featured.group(1) == slow.seller_id
    assert "Sold by" in block and "ships in 3 days" in block and "shipping free" in block
    assert 'data-testid="offer-note"' in block  # the cart still buys from the shop itself
    assert 'data-testid="other-sellers"' in block
    by_score = [m.group(1) for m in _OTHER.finditer(block)]
    assert by_score == await _api_order(client, shop, "score")
    assert set(by_score) == {service.HOUSE_SELLER_ID, dear_ship.seller_id}
    # Each row: price, shipping, landed price, delivery, rating, performance, seller link.
    assert "No ratings yet" in block and "No recent orders to judge by yet" in block
    assert f'href="/sellers/{dear_ship.seller_id}"' in block
    assert "€24.00" in block  # Shippy's landed price

    page = await _product_page(client, shop, "&sellers_sort=landed_price")
    block = _chosen_block(page, shop.variant_id)
    rows = [(m.group(1), int(m.group(2))) for m in _OTHER.finditer(block)]
    assert [seller for seller, _ in rows] == await _api_order(client, shop, "landed_price")
    assert [landed for _, landed in rows] == sorted(landed for _, landed in rows)
    assert 'data-testid="sellers-sort-landed_price" aria-current="true"' in block

    # The htmx swap answers the same box alone, in the asked order.
    r = await client.get(
        f"/p/{shop.product_id}/sellers?variant={shop.variant_id}&sellers_sort=landed_price",
        headers={**HTML, "HX-Request": "true"},
    )
    assert r.status_code == 200
    assert [m.group(1) for m in _OTHER.finditer(_chosen_block(r.text, shop.variant_id))] == [
        seller for seller, _ in rows
    ]
    assert "<html" not in r.text


async def test_a_single_offer_shows_no_other_sellers(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop
) -> None:
    page = await _product_page(client, shop)
    block = _chosen_block(page, shop.variant_id)
    featured = _FEATURED.search(block)
    assert featured is not None and featured.group(1) == service.HOUSE_SELLER_ID
    # The shop itself is named as the shop, with no seller page to go to.
    shop_name = runtime_of(app).settings.shop_name
    assert f"Sold by {html.escape(shop_name)} ·" in " ".join(block.split())
    assert 'href="/sellers/' not in block
    assert "Other sellers" not in page and 'data-testid="offer-note"' not in block


async def test_the_seller_page_and_its_404s(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop, staff_headers: dict[str, str]
) -> None:
    seller = await approved_seller(client, app, staff_headers, "Alpha")
    await _offer(client, seller, shop.sku, price="17.50")
    await _offer(client, seller, shop.other_sku, price="21.00", active=False)

    r = await client.get(f"/sellers/{seller.seller_id}", headers=HTML)
    assert r.status_code == 200, r.text
    assert 'data-testid="seller-name">Alpha<' in r.text
    assert "Selling on" in r.text and "No ratings yet" in r.text
    assert len(re.findall(r'data-testid="seller-offer"', r.text)) == 1  # active offers only
    assert "€17.50" in r.text and "€21.00" not in r.text and "Kettle" in r.text

    # Waiting for approval, unknown, or suspended: no such page.
    pending = await user_headers(app, "customer", "pending@example.com")
    body = {
        "name": "Pending",
        "legal_name": "Pending GmbH",
        "email": "pending@example.com",
        "country": "DE",
        "ship_to": ["DE"],
    }
    r = await client.post("/api/sellers/apply", headers=pending, json=body)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/admin/sellers/{seller.seller_id}/suspend",
        headers=staff_headers,
        json={"reason": "Fake goods"},
    )
    assert r.status_code == 200, r.text
    for seller_id in (r.json()["id"], "sel_nobody", (await _pending_id(client, staff_headers))):
        r = await client.get(f"/sellers/{seller_id}", headers=HTML)
        assert r.status_code == 404, seller_id
        assert "Alpha" not in r.text


async def _pending_id(client: httpx.AsyncClient, staff_headers: dict[str, str]) -> str:
    r = await client.get("/api/admin/sellers?status=pending", headers=staff_headers)
    [found] = r.json()
    return str(found["id"])


async def test_sellers_back_office_is_staff_only_and_its_buttons_need_csrf(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop, staff_headers: dict[str, str]
) -> None:
    applicant = await user_headers(app, "customer", "beta@example.com")
    body = {
        "name": "Beta",
        "legal_name": "Beta GmbH",
        "email": "beta@example.com",
        "country": "DE",
        "ship_to": ["DE"],
        "payout_reference": "acct_beta_payouts",
    }
    r = await client.post("/api/sellers/apply", headers=applicant, json=body)
    assert r.status_code == 201, r.text
    seller_id = r.json()["id"]
    detail = f"/admin/sellers/{seller_id}"

    # Signed out: the login form, back here after.
    r = await client.get("/admin/sellers?status=applied", headers=HTML)
    assert r.status_code == 303
    assert unquote(r.headers["location"].split("next=", 1)[1]) == "/admin/sellers?status=applied"
    # A customer: 403, and the buttons refuse too.
    await user_headers(app, "customer", "shopper@example.com")
    await api_login(client, "shopper@example.com")
    for url in ("/admin/sellers", detail):
        r = await client.get(url, headers=HTML)
        assert r.status_code == 403, url
    token = csrf_of(r.text)
    r = await client.post(f"{detail}/approve", data={"csrf_token": token})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"

    # Staff: the list by status, the seller's page with its payout reference masked.
    await api_login(client, STAFF)
    r = await client.get("/admin/sellers?status=applied", headers=HTML)
    assert r.status_code == 200 and f'data-seller-id="{seller_id}"' in r.text
    assert 'href="/admin/sellers"' in r.text  # the menu entry
    r = await client.get("/admin/sellers?status=approved", headers=HTML)
    assert f'data-seller-id="{seller_id}"' not in r.text
    token = await page_token(client, detail)
    r = await client.get(detail, headers=HTML)
    masked = re.search(r'data-testid="payout-reference">([^<]*)<', r.text)
    assert masked is not None and "acct_beta" not in r.text
    assert html.unescape(masked.group(1)).endswith("outs")
    assert 'data-testid="offers-count">0 (0 for sale)' in r.text

    # Without the token nothing happens.
    r = await client.post(f"{detail}/approve", data={})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = await client.post(f"{detail}/approve", data={"csrf_token": "forged"})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    assert (await _status(client, staff_headers, seller_id)) == "pending"

    r = await client.post(f"{detail}/approve", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == detail
    assert (await _status(client, staff_headers, seller_id)) == "approved"
    r = await client.get(detail, headers=HTML)
    assert "Beta is approved" in html.unescape(r.text)

    # Suspending needs a reason (said as a message) and the token.
    r = await client.post(f"{detail}/suspend", data={"reason": "Fake goods"})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = await client.post(f"{detail}/suspend", data={"csrf_token": token, "reason": " "})
    assert r.status_code == 303
    assert (await _status(client, staff_headers, seller_id)) == "approved"
    r = await client.post(f"{detail}/suspend", data={"csrf_token": token, "reason": "Fake goods"})
    assert r.status_code == 303
    assert (await _status(client, staff_headers, seller_id)) == "suspended"
    r = await client.get(detail, headers=HTML)
    assert "Suspended: Fake goods" in r.text and 'data-testid="approve"' in r.text
    r = await client.get("/admin/sellers/sel_nobody", headers=HTML)
    assert r.status_code == 404


async def _status(client: httpx.AsyncClient, staff_headers: dict[str, str], seller_id: str) -> str:
    r = await client.get("/api/admin/sellers", headers=staff_headers)
    return str(next(s["status"] for s in r.json() if s["id"] == seller_id))
