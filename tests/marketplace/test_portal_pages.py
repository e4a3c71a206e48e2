"""The seller portal over HTTP: who may look (signed out: the login form; a customer or staff:
403), each page of a seller's own (dashboard, offers, stock, statements), another seller's offer
answered as if it did not exist, forms refused next to the field, and a CSV upload with a broken
row answered with the row report."""

from __future__ import annotations

import html
import re
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI

from mercato.db import utcnow
from mercato.marketplace import service
from tests.conftest import user_headers
from tests.marketplace.conftest import SellerAccount, Shop, approved_seller, make_shop, runtime_of
from tests.web.admin_helpers import HTML, api_login, page_token

pytestmark = pytest.mark.usefixtures("backend")

_ROW = re.compile(r'data-testid="row-error" data-row="(\d+)"><td class="num">\d+</td><td>([^<]*)<')


@pytest.fixture
async def shop(app: FastAPI) -> Shop:
    return await make_shop(runtime_of(app).db)


async def _seller(client: httpx.AsyncClient, app: FastAPI, name: str) -> SellerAccount:
    staff = await user_headers(app, "staff", f"staff-{name.lower()}@example.com")
    return await approved_seller(client, app, staff, name)


def _text(page: str) -> str:
    return " ".join(html.unescape(page).split())


def _words(page: str) -> str:
    """What a reader sees: the page's text without its tags."""
    return _text(re.sub(r"<[^>]+>", " ", page))


async def test_the_portal_is_for_seller_accounts_and_shows_their_own_seller(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop
) -> None:
    alpha = await _seller(client, app, "Alpha")
    beta = await _seller(client, app, "Beta")
    r = await client.post(
        "/api/seller/offers",
        headers=beta.headers,
        json={"sku": shop.sku, "price": "19.00", "quantity": 3},
    )
    assert r.status_code == 201, r.text
    beta_offer = r.json()["id"]

    # Signed out: the login form, back here after; a customer and staff: 403.
    r = await client.get("/seller/offers", headers=HTML)
    assert r.status_code == 303
    assert unquote(r.headers["location"].split("next=", 1)[1]) == "/seller/offers"
    await user_headers(app, "customer", "shopper@example.com")
    for email in ("shopper@example.com", "staff-alpha@example.com"):
        await api_login(client, email)
        r = await client.get("/seller", headers=HTML)
        assert r.status_code == 403, email

    await api_login(client, "alpha@example.com")
    r = await client.get("/seller", headers=HTML)
    assert r.status_code == 200, r.text
    page = _text(r.text)
    assert 'data-testid="seller-name">Alpha' in page and "Beta" not in page
    assert 'data-testid="offers-count">0<' in page
    # The three rates against the buy box's thresholds.
    for words in (
        "Order defect rate 0.0 % 1.0 % within",
        "Late shipment rate 0.0 % 4.0 % within",
        "Pre-fulfilment cancel rate 0.0 % 2.5 % within",
    ):
        assert words in _words(r.text), words
    assert 'href="/seller/statements"' in page and 'aria-current="page"' in page

    # A new offer: a refused price is said next to the field, nothing is written.
    token = await page_token(client, "/seller/offers/new")
    form = {"csrf_token": token, "sku": shop.sku, "price": "0", "quantity": "4", "active": "1"}
    r = await client.post("/seller/offers", data={**form, "handling_days": "1"})
    assert r.status_code == 422
    assert 'id="e-price"' in r.text and "more than zero" in r.text
    r = await client.post("/seller/offers", data={**form, "price": "17.50", "handling_days": "1"})
    assert r.status_code == 303 and r.headers["location"] == "/seller/offers"
    r = await client.get("/seller/offers", headers=HTML)
    [offer_id] = re.findall(r'data-testid="offer" data-offer-id="([^"]+)"', r.text)
    assert "€17.50" in r.text and "Kettle" in r.text and "Offer for KETTLE-1 created" in r.text
    assert beta_offer not in r.text

    # Editing: price, shipping, stock, handling days, off sale.
    r = await client.get(f"/seller/offers/{offer_id}", headers=HTML)
    assert r.status_code == 200 and 'value="17.50"' in r.text
    edit = {"csrf_token": token, "price": "16.00", "shipping": "4.90", "quantity": "7"}
    r = await client.post(f"/seller/offers/{offer_id}", data={**edit, "handling_days": "3"})
    assert r.status_code == 303, r.text
    offer = (await client.get(f"/api/seller/offers/{offer_id}", headers=alpha.headers)).json()
    assert (offer["price"], offer["shipping"], offer["quantity"]) == ("16.00", "4.90", 7)
    assert (offer["handling_days"], offer["active"]) == (3, False)

    # Stock: on hand, reserved, available; setting the available units.
    r = await client.post(f"/seller/stock/{offer_id}", data={"csrf_token": token, "available": "9"})
    assert r.status_code == 303
    r = await client.get("/seller/stock", headers=HTML)
    row = r.text[r.text.index(f'data-offer-id="{offer_id}"') :]
    assert re.search(r'data-testid="on-hand">9<.*data-testid="reserved">0<', row, re.S)
    assert "KETTLE-1: 9 available" in _text(r.text)

    # Another seller's offer does not exist for Alpha, neither to read nor to change.
    r = await client.get(f"/seller/offers/{beta_offer}", headers=HTML)
    assert r.status_code == 404
    r = await client.post(f"/seller/offers/{beta_offer}", data={**edit, "handling_days": "1"})
    assert r.status_code == 404
    r = await client.post(
        f"/seller/stock/{beta_offer}", data={"csrf_token": token, "available": "0"}
    )
    assert r.status_code == 404
    beta_now = (await client.get(f"/api/seller/offers/{beta_offer}", headers=beta.headers)).json()
    assert (beta_now["price"], beta_now["quantity"]) == ("19.00", 3)
    # Forms need the token.
    r = await client.post(f"/seller/stock/{offer_id}", data={"available": "1"})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"

    # Statements: this month's sale, its commission and net; the dashboard's balance.
    async with runtime_of(app).db.transaction() as uow:
        await service.create_rule(uow, service.RuleDraft(rate="10", currency="EUR"), None)
        await service.record_sale(
            uow,
            reference="line-1",
            seller_id=alpha.seller_id,
            category_id=None,
            gross=5000,
            currency="EUR",
            at=utcnow(),
        )
    r = await client.get("/seller/statements", headers=HTML)
    assert r.status_code == 200
    month = utcnow().strftime("%Y-%m")
    row = r.text[r.text.index(f'data-period="{month}"') :]
    assert re.search(r"€50\.00.*€5\.00.*data-testid=\"net\">€45\.00<", row, re.S)
    r = await client.get("/seller", headers=HTML)
    assert 'data-testid="payable">€45.00<' in r.text


async def test_a_csv_upload_reports_its_broken_rows(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop
) -> None:
    await _seller(client, app, "Gamma")
    await api_login(client, "gamma@example.com")
    token = await page_token(client, "/seller/offers")
    assert 'name="mode" value="replace"' in (await client.get("/seller/offers", headers=HTML)).text
    csv = f"sku,price,quantity\n{shop.sku},18.00,5\nNOPE,12.00,1\n{shop.other_sku},abc,2\n"

    async def upload(mode: str) -> httpx.Response:
        return await client.post(
            "/seller/offers/import",
            data={"csrf_token": token, "mode": mode},
            files={"file": ("offers.csv", csv.encode(), "text/csv")},
        )

    # Replace is all or nothing: every bad row is listed, nothing is written.
    r = await upload("replace")
    assert r.status_code == 422
    assert [(int(n), c) for n, c in _ROW.findall(r.text)] == [(3, "sku"), (4, "price")]
    assert "nothing was written" in r.text
    r = await client.get("/seller/offers", headers=HTML)
    assert 'data-testid="offer"' not in r.text

    # Add and update: the good row is applied, the bad ones reported by row and column.
    r = await upload("add_update")
    assert r.status_code == 200, r.text
    assert [(int(n), c) for n, c in _ROW.findall(r.text)] == [(3, "sku"), (4, "price")]
    assert "no variant with sku &#39;NOPE&#39;" in r.text
    assert 'data-testid="created">1<' in r.text and 'data-testid="refused">2<' in r.text
    r = await client.get("/seller/offers", headers=HTML)
    assert len(re.findall(r'data-testid="offer"', r.text)) == 1

    # A file that is no CSV of offers: said once, for the file.
    r = await client.post(
        "/seller/offers/import",
        data={"csrf_token": token, "mode": "add_update"},
        files={"file": ("offers.csv", b"colour,size\nred,M\n", "text/csv")},
    )
    assert r.status_code == 422 and 'data-testid="import-error"' in r.text
