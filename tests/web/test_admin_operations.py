"""Back office operations pages (dashboard, orders, returns, inventory): who may see them, what
they show, forms with their errors next to the fields, refusals shown as messages, CSRF; and
the service queries added for them."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import unquote

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from mercato.catalog import service as catalog
from mercato.catalog.demo import seed_catalog
from mercato.db import utcnow
from mercato.inventory import service as inventory
from mercato.inventory.demo import seed_inventory
from mercato.money import to_minor
from mercato.orders import service as orders
from mercato.returns import service as returns
from mercato.runtime import Runtime
from mercato.web.admin import orders as order_pages
from mercato.web.templating import money
from tests.web.admin_helpers import (
    HTML,
    api_login,
    browser_login,
    csrf_of,
    form_login,
    page_token,
    place_order,
    stocked_variant,
)
from tests.web.conftest import SHOPPER_EMAIL, STAFF_EMAIL, screenshot

ClientFactory = Callable[[], httpx.AsyncClient]


async def _on_hand(runtime: Runtime, variant_id: str, warehouse: str) -> int:
    async with runtime.db.transaction() as session:
        levels = await inventory.stock_for_variant(session, variant_id)
    return next((s.on_hand for s in levels if s.warehouse_code == warehouse), 0)


# -- who may look ----------------------------------------------------------------------------------


async def test_signed_out_goes_to_login_customers_get_403_and_forms_need_csrf(
    client: httpx.AsyncClient, shop: Runtime
) -> None:
    r = await client.get("/admin/orders?status=paid", headers=HTML)
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith("/account/login?next=")
    assert unquote(location.split("next=", 1)[1]) == "/admin/orders?status=paid"

    await api_login(client, SHOPPER_EMAIL)
    for url in ("/admin/", "/admin/orders", "/admin/returns", "/admin/inventory"):
        r = await client.get(url, headers=HTML)
        assert r.status_code == 403, url
        assert "Staff only" in r.text
        assert "Receive goods" not in r.text
    # Not even a well-formed form gets through.
    token = csrf_of(r.text)  # the 403 page has the log-out form
    r = await client.post("/admin/inventory/receive", data={"csrf_token": token, "sku": "x"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"

    # Staff: every form needs the page's CSRF token.
    variant = await stocked_variant(shop)
    before = await _on_hand(shop, variant.id, "BER")
    await api_login(client, STAFF_EMAIL)  # the session cookie is replaced
    token = await page_token(client, "/admin/inventory")
    form = {"sku": variant.sku, "warehouse": "BER", "quantity": "4"}

    r = await client.post("/admin/inventory/receive", data=form)
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = await client.post("/admin/inventory/receive", data={**form, "csrf_token": "forged"})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = await client.post("/admin/orders/ord_x/cancel", data={})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    assert await _on_hand(shop, variant.id, "BER") == before

    r = await client.post("/admin/inventory/receive", data={**form, "csrf_token": token})
    assert r.status_code == 303
    assert await _on_hand(shop, variant.id, "BER") == before + 4


# -- dashboard -------------------------------------------------------------------------------------


async def test_staff_log_in_land_back_on_the_page_and_see_todays_orders_on_the_dashboard(
    page: Page, shop: Runtime, make_client: ClientFactory
) -> None:
    shopper = make_client()
    await api_login(shopper, SHOPPER_EMAIL)
    variant = await stocked_variant(shop)
    placed = await place_order(shopper, variant, quantity=2)
    total = to_minor(placed["total"], placed["currency"])

    # Signed out: the login form, then back to the page asked for.
    await page.goto(f"/admin/orders?status=paid&email={SHOPPER_EMAIL}")
    await page.wait_for_url("**/account/login?next=**")
    await form_login(page, STAFF_EMAIL)
    await page.wait_for_url("**/admin/orders?status=paid&email=*")
    await expect(page.get_by_label("Status")).to_have_value("paid")
    await expect(page.get_by_test_id("orders-table")).to_contain_text(placed["order_id"])

    await (
        page.get_by_role("navigation", name="Back office")
        .get_by_role("link", name="Dashboard")
        .click()
    )
    await page.wait_for_url(re.compile(r"/admin/?$"))
    sales = page.get_by_test_id(f"sales-{placed['currency']}")
    await expect(sales.get_by_test_id("orders-today")).to_have_text("1")
    await expect(sales.get_by_test_id("revenue-today")).to_have_text(
        money(total, placed["currency"])
    )
    await expect(page.get_by_test_id("waiting")).to_contain_text("1 paid")
    await expect(page.get_by_test_id("open-returns")).to_contain_text("0 requested")
    # Low stock lists only variants at or under the threshold.
    threshold = shop.settings.low_stock_threshold
    for cell in await page.locator("[data-testid=low-stock] td strong").all_inner_texts():
        assert int(cell) <= threshold
    await page.get_by_role("link", name=placed["order_id"]).click()
    await page.wait_for_url(f"**/admin/orders/{placed['order_id']}")
    await screenshot(page, "admin-dashboard-order")
    await page.goto("/admin/")
    await screenshot(page, "admin-dashboard")


# -- orders ----------------------------------------------------------------------------------------


async def test_order_filters_pages_and_refused_actions_shown_as_messages(
    client: httpx.AsyncClient,
    shop: Runtime,
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shopper = make_client()
    await api_login(shopper, SHOPPER_EMAIL)
    first = await place_order(shopper, await stocked_variant(shop))
    second = await place_order(shopper, await stocked_variant(shop, skip=1))
    await api_login(client, STAFF_EMAIL)

    r = await client.get(f"/admin/orders?email={SHOPPER_EMAIL.upper()}", headers=HTML)
    assert r.status_code == 200
    assert first["order_id"] in r.text and second["order_id"] in r.text
    # Newest first, one per page here: the "Next page" link leads to the older one.
    monkeypatch.setattr(order_pages, "PAGE_SIZE", 1)
    r = await client.get(f"/admin/orders?status=paid&email={SHOPPER_EMAIL}", headers=HTML)
    assert second["order_id"] in r.text and first["order_id"] not in r.text
    next_url = re.search(r'<a href="([^"]+)" rel="next">', r.text)
    assert next_url is not None
    r = await client.get(html.unescape(next_url.group(1)), headers=HTML)
    assert first["order_id"] in r.text and second["order_id"] not in r.text
    assert 'rel="next"' not in r.text and "First page" in r.text
    monkeypatch.undo()
    r = await client.get("/admin/orders?email=nobody@example.com&status=paid", headers=HTML)
    assert first["order_id"] not in r.text and 'data-testid="no-orders"' in r.text
    today = utcnow().date()
    r = await client.get(
        f"/admin/orders?created_from={today}&created_to={today - timedelta(days=1)}", headers=HTML
    )
    assert r.status_code == 422
    assert 'id="e-filter-created_to"' in r.text
    r = await client.get("/admin/orders?created_from=yesterday&cursor=forged", headers=HTML)
    assert r.status_code == 422 and 'id="e-filter-created_from"' in r.text

    url = f"/admin/orders/{first['order_id']}"
    token = await page_token(client, url)
    # An illegal move is a message on the order's page, not an error page.
    r = await client.post(f"{url}/transition", data={"csrf_token": token, "to": "delivered"})
    assert r.status_code == 303 and r.headers["location"] == url
    r = await client.get(url, headers=HTML)
    assert "flash-error" in r.text and "cannot go from paid to delivered" in r.text
    # The manual carrier needs a tracking number: said next to the field.
    r = await client.post(
        f"{url}/ship", data={"csrf_token": token, "carrier": "manual", "service": "standard"}
    )
    assert r.status_code == 422
    assert 'id="e-ship-tracking_number"' in r.text and "required" in r.text

    r = await client.post(f"{url}/cancel", data={"csrf_token": token, "reason": "Out of paper"})
    assert r.status_code == 303
    r = await client.get(url, headers=HTML)
    assert "payment was released" in r.text
    async with shop.db.transaction() as session:
        order = await orders.get_order(session, first["order_id"])
        assert order is not None and order.status == "cancelled"
        payment = await orders.payment_summary(session, order)
        assert payment is not None and payment.status == "voided"
        # The service behind the dashboard: the cancelled order no longer counts.
        start = utcnow() - timedelta(hours=1)
        sales = await orders.sales_between(session, start, utcnow() + timedelta(hours=1))
        assert [(s.currency, s.orders, s.revenue) for s in sales] == [
            ("EUR", 1, to_minor(second["total"], "EUR"))
        ]
        assert await orders.sales_between(session, start - timedelta(days=1), start) == []
    # Cancelling twice is refused politely.
    r = await client.post(f"{url}/cancel", data={"csrf_token": token})
    assert r.status_code == 303
    r = await client.get(url, headers=HTML)
    assert "flash-error" in r.text and "cannot go from cancelled to cancelled" in r.text
    assert (await client.get("/admin/orders/ord_missing", headers=HTML)).status_code == 404


# -- returns ---------------------------------------------------------------------------------------


async def test_return_actions_in_the_wrong_order_and_bad_receipts_are_explained(
    client: httpx.AsyncClient, shop: Runtime, make_client: ClientFactory
) -> None:
    shopper = make_client()
    await api_login(shopper, SHOPPER_EMAIL)
    placed = await place_order(shopper, await stocked_variant(shop), quantity=2)
    order_url = f"/admin/orders/{placed['order_id']}"
    await api_login(client, STAFF_EMAIL)
    token = await page_token(client, order_url)
    r = await client.post(f"{order_url}/ship", data={"csrf_token": token, "carrier": "sandbox"})
    assert r.status_code == 303
    page_html = (await client.get(order_url, headers=HTML)).text
    assert "Shipped with sandbox, tracking number SBX" in page_html
    deliver = re.search(r'action="([^"]+/deliver)"', page_html)
    assert deliver is not None
    assert (await client.post(deliver.group(1), data={"csrf_token": token})).status_code == 303
    line_id = (await shopper.get(f"/api/orders/{placed['order_id']}")).json()["lines"][0]["id"]
    r = await shopper.post(
        f"/api/orders/{placed['order_id']}/returns",
        json={"lines": [{"order_line_id": line_id, "quantity": 1}], "reason": "Too small"},
    )
    assert r.status_code == 201, r.text
    return_url = f"/admin/returns/{r.json()['id']}"

    r = await client.get("/admin/returns?status=requested", headers=HTML)
    assert return_url in r.text
    # Receiving or refunding before the approval: refused, and the page says why.
    r = await client.post(f"{return_url}/receive", data={"csrf_token": token})
    assert r.status_code == 303
    assert (
        "only an approved return can be received"
        in (await client.get(return_url, headers=HTML)).text
    )
    r = await client.post(f"{return_url}/refund", data={"csrf_token": token})
    assert r.status_code == 303
    assert "only received goods are refunded" in (await client.get(return_url, headers=HTML)).text
    r = await client.post(f"{return_url}/approve", data={"csrf_token": token, "note": "OK"})
    assert r.status_code == 303

    bad = {"csrf_token": token, f"disposition_{line_id}": "burn", f"warehouse_{line_id}": "BER"}
    r = await client.post(f"{return_url}/receive", data=bad)
    assert r.status_code == 422 and f'id="e-disposition_{line_id}"' in r.text
    bad = {**bad, f"disposition_{line_id}": "write_off", f"warehouse_{line_id}": "XXX"}
    r = await client.post(f"{return_url}/receive", data=bad)
    assert r.status_code == 422 and f'id="e-warehouse_{line_id}"' in r.text
    good = {**bad, f"warehouse_{line_id}": "LYS"}
    r = await client.post(f"{return_url}/receive", data=good)
    assert r.status_code == 303
    page_html = (await client.get(return_url, headers=HTML)).text
    assert "flash-success" in page_html and "refunded" in page_html
    r = await client.post(f"{return_url}/reject", data={"csrf_token": token})
    assert r.status_code == 303
    page_html = (await client.get(return_url, headers=HTML)).text
    assert "The return is refunded; it cannot become rejected" in page_html
    async with shop.db.transaction() as session:
        found = await returns.get_return(session, r.headers["location"].rsplit("/", 1)[1])
        assert found is not None and found.status == "refunded"
        assert [(x.disposition, x.warehouse_code) for x in found.lines] == [("write_off", "LYS")]
        order = await orders.get_order(session, placed["order_id"])
        assert order is not None and order.status == "refunded"
        assert order.refunded_total == found.refund_amount > 0
        assert await returns.count_by_status(session) == {"refunded": 1}


# -- inventory -------------------------------------------------------------------------------------


async def test_receive_and_adjust_stock_with_errors_next_to_the_fields(
    context: BrowserContext, page: Page, shop: Runtime
) -> None:
    variant = await stocked_variant(shop, skip=2)
    before = await _on_hand(shop, variant.id, "BER")
    await browser_login(context, STAFF_EMAIL)
    await page.goto("/admin/inventory")
    await expect(page.get_by_test_id("ledger-check")).to_contain_text("Ledger check passed")

    receive = page.get_by_test_id("receive-form")
    await receive.get_by_label("SKU").fill(variant.sku)
    await receive.get_by_label("Warehouse").select_option("BER")
    await receive.get_by_label("Units received").fill("0")
    await receive.get_by_role("button", name="Receive").click()
    await expect(page.locator("#e-receive-quantity")).to_contain_text("between 1 and")
    await expect(receive.get_by_label("Units received")).to_have_attribute("aria-invalid", "true")
    receive = page.get_by_test_id("receive-form")
    await expect(receive.get_by_label("SKU")).to_have_value(variant.sku)  # kept as typed

    await receive.get_by_label("SKU").fill("NO-SUCH-SKU")
    await receive.get_by_label("Units received").fill("5")
    await receive.get_by_role("button", name="Receive").click()
    await expect(page.locator("#e-receive-sku")).to_contain_text("no variant")

    receive = page.get_by_test_id("receive-form")
    await receive.get_by_label("SKU").fill(variant.sku)
    await receive.get_by_label("Units received").fill("5")
    await receive.get_by_label("Reference (optional)").fill("PO-4711")
    await receive.get_by_role("button", name="Receive").click()
    await expect(page.locator(".flash-success")).to_contain_text(f"Received 5 × {variant.sku}")
    row = page.locator(f"tr[data-sku='{variant.sku}'] td[data-warehouse='BER']")
    await expect(row).to_have_attribute("data-on-hand", str(before + 5))

    adjust = page.get_by_test_id("adjust-form")
    await expect(adjust.get_by_label("SKU")).to_have_value(variant.sku)  # prefilled
    await adjust.get_by_label("Change in units").fill(str(-(before + 6)))
    await adjust.get_by_label("Reason").fill("Stock count")
    await adjust.get_by_role("button", name="Adjust").click()
    await expect(page.locator("#e-adjust-delta")).to_contain_text("Cannot remove")

    adjust = page.get_by_test_id("adjust-form")
    await adjust.get_by_label("Change in units").fill("-2")
    await adjust.get_by_label("Reason").fill("")
    await adjust.get_by_role("button", name="Adjust").click()
    await expect(page.locator("#e-adjust-reason")).to_contain_text("required")

    adjust = page.get_by_test_id("adjust-form")
    await adjust.get_by_label("Reason").fill("Damaged in storage")
    await adjust.get_by_role("button", name="Adjust").click()
    await expect(page.locator(".flash-success")).to_contain_text("by -2")
    await expect(row).to_have_attribute("data-on-hand", str(before + 3))
    assert await _on_hand(shop, variant.id, "BER") == before + 3
    await expect(page.get_by_test_id("ledger-check")).to_contain_text("Ledger check passed")

    # The search narrows the table as one types (htmx), and the URL follows.
    await page.get_by_label("SKU contains").fill(variant.sku.lower())
    await expect(page.locator("[data-testid=stock-table] tbody tr")).to_have_count(1)
    await page.wait_for_url("**/admin/inventory?sku=*")
    await screenshot(page, "admin-inventory")


# -- the service queries behind these pages --------------------------------------------------------


async def test_back_office_stock_queries(runtime: Runtime) -> None:
    variant_ids = await seed_catalog(
        runtime.db, products=40, seed=3, currency=runtime.settings.currency
    )
    await seed_inventory(runtime.db, variant_ids, seed=3)
    threshold = runtime.settings.low_stock_threshold
    async with runtime.db.transaction() as session:
        low = await inventory.low_stock(session, threshold, limit=1000)
        assert low, "the demo stock has some low-stock variants"
        assert [s.available for s in low] == sorted(s.available for s in low)
        counted = await inventory.availability(session, [s.variant_id for s in low])
        for s in low:
            assert s.available == counted[s.variant_id] <= threshold
            assert s.available == s.on_hand - s.reserved
        assert len(await inventory.low_stock(session, threshold, limit=2)) == min(2, len(low))

        every = await catalog.variants_by_sku(session, limit=500)
        skus = [v.sku for v in every]
        assert skus == sorted(skus)
        stem = skus[0].rsplit("-", 1)[0]
        found = await catalog.variants_by_sku(session, contains=stem.lower())
        assert found and all(stem in v.sku for v in found)
        assert [v.sku for v in found] == [s for s in skus if stem in s][: len(found)]
        page_two = await catalog.variants_by_sku(session, after_sku=skus[9], limit=5)
        assert [v.sku for v in page_two] == skus[10:15]
        assert await catalog.variants_by_sku(session, contains="%") == []

        levels = await inventory.stock_for_variants(session, [every[0].id, "var_unknown"])
        assert levels["var_unknown"] == []
        assert levels[every[0].id] == await inventory.stock_for_variant(session, every[0].id)
