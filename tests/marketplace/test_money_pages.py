"""The staff's marketplace money pages over HTTP: commission rules (listed most specific first,
created, an overlapping one refused next to "Valid from", deactivated), the ledger's balances
and check, and payouts (refused beyond what the seller is owed, recorded, listed)."""

from __future__ import annotations

import html
import re

import httpx
import pytest
from fastapi import FastAPI

from mercato.db import utcnow
from mercato.marketplace import service
from tests.conftest import user_headers
from tests.marketplace.conftest import add_seller, runtime_of
from tests.web.admin_helpers import HTML, api_login, page_token

pytestmark = pytest.mark.usefixtures("backend")

STAFF = "staff@example.com"
_RULE = re.compile(r'data-testid="rule" data-rule-id="([^"]+)">\s*<td>([^<]+)</td>')


async def test_staff_set_commission_rules_check_the_ledger_and_record_payouts(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    db = runtime_of(app).db
    seller_id = await add_seller(db, "sel_north")
    await user_headers(app, "staff", STAFF)
    await api_login(client, STAFF)
    r = await client.get("/admin/commissions", headers=HTML)
    assert r.status_code == 200
    for href in ("/admin/commissions", "/admin/ledger", "/admin/payouts"):
        assert f'href="{href}"' in r.text, href
    token = await page_token(client, "/admin/commissions/new")

    blank = {"csrf_token": token, "currency": "EUR", "valid_from": "2026-01-01T00:00"}
    r = await client.post("/admin/commissions", data={**blank, "rate": "10"})
    assert r.status_code == 303 and r.headers["location"] == "/admin/commissions"
    r = await client.post(
        "/admin/commissions", data={**blank, "rate": "12.5", "seller_id": seller_id}
    )
    assert r.status_code == 303

    # Another default rule in force at the same time: refused, said next to "Valid from".
    r = await client.post(
        "/admin/commissions", data={**blank, "rate": "8", "valid_from": "2026-03-01T00:00"}
    )
    assert r.status_code == 422
    error = re.search(r'id="e-valid_from">([^<]+)<', r.text)
    assert error is not None and "overlaps rule" in html.unescape(error.group(1))
    assert 'value="8"' in r.text  # the form keeps what was typed
    r = await client.post("/admin/commissions", data={**blank, "rate": "101"})
    assert r.status_code == 422 and 'id="e-rate"' in r.text

    # Most specific first: the seller's rule, then the default.
    r = await client.get("/admin/commissions", headers=HTML)
    rules = _RULE.findall(r.text)
    assert [scope for _, scope in rules] == ["Seller", "Default"]
    assert "12.5 %" in r.text and "sel_north" in r.text

    # A sale at the seller's 12.5 %: the ledger balances and shows what is owed.
    async with db.transaction() as uow:
        await service.record_sale(
            uow,
            reference="line-1",
            seller_id=seller_id,
            category_id=None,
            gross=10000,
            currency="EUR",
            at=utcnow(),
        )
    r = await client.get("/admin/ledger", headers=HTML)
    assert r.status_code == 200 and "Ledger check passed" in r.text
    payable = r.text[r.text.index(f'data-account="seller_payable:{seller_id}"') :]
    assert re.search(r'class="num">-€87\.50<', payable)

    # Payouts: never more than is owed; then recorded once and listed.
    payout = {"csrf_token": token, "seller_id": seller_id, "period": utcnow().strftime("%Y-%m")}
    r = await client.post("/admin/payouts", data={**payout, "amount": "90.00", "reference": "tr-1"})
    assert r.status_code == 422
    assert "more than the seller is owed (87.50)" in r.text
    r = await client.post("/admin/payouts", data={**payout, "amount": "80.00", "reference": "tr-1"})
    assert r.status_code == 303 and r.headers["location"] == "/admin/payouts"
    r = await client.get("/admin/payouts", headers=HTML)
    assert 'data-reference="tr-1"' in r.text and "€80.00" in r.text
    assert "Payout tr-1 of €80.00 recorded" in html.unescape(r.text)
    assert "owed €7.50" in html.unescape(r.text)

    # Deactivating the seller's rule: listed as deactivated, the default decides again.
    seller_rule = rules[0][0]
    r = await client.post(
        f"/admin/commissions/{seller_rule}/deactivate", data={"csrf_token": token}
    )
    assert r.status_code == 303
    async with db.transaction() as uow:
        assert not (await service.get_rule(uow, seller_rule)).active
        quote = await service.commission_for(uow, seller_id, None, 1000, "EUR", utcnow())
    assert quote.commission == 100
    # Customers see none of it.
    await user_headers(app, "customer", "shopper@example.com")
    await api_login(client, "shopper@example.com")
    for url in ("/admin/commissions", "/admin/ledger", "/admin/payouts"):
        assert (await client.get(url, headers=HTML)).status_code == 403, url
