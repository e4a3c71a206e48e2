"""The flash-sale pages over HTTP: the shopper's sale page and its panel in every state of the
waiting room, the shop's list and the home page's link; the back office's list, schedule form
(errors next to their fields), a sale's counters and "End now"; and who may see what."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import unquote

import httpx
from fastapi import FastAPI

from mercato.catalog import service as catalog
from mercato.db import utcnow
from mercato.flashsale import service
from mercato.identity import service as identity
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD
from tests.flashsale.conftest import make_keeper, new_sale, stocked_variant
from tests.web.admin_helpers import HTML, api_login, csrf_of, page_token

HX = {**HTML, "HX-Request": "true"}
STAFF = "staff@example.com"
ClientFactory = Callable[[], httpx.AsyncClient]


def _runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def _user(runtime: Runtime, email: str, role: str = "customer") -> str:
    async with runtime.db.transaction() as uow:
        user = await identity.create_user(
            uow, email=email, password=TEST_PASSWORD, role=role, name=email.split("@")[0]
        )
    return user.id


async def _signed_in(make_client: ClientFactory, email: str) -> httpx.AsyncClient:
    client = make_client()
    await api_login(client, email)
    return client


def _state(html: str) -> str:
    found = re.search(r'data-testid="queue-state" data-state="([a-z_]+)"', html)
    assert found is not None, html
    return found.group(1)


def _field_error(html: str, name: str) -> str:
    found = re.search(rf'<p class="field-error" id="e-{name}">([^<]*)</p>', html)
    return found.group(1) if found else ""


async def _panel(client: httpx.AsyncClient, sale_id: str) -> httpx.Response:
    r = await client.get(f"/flash-sales/{sale_id}/queue", headers=HX)
    assert r.status_code == 200, r.text
    return r


async def _join(client: httpx.AsyncClient, sale_id: str) -> httpx.Response:
    token = await page_token(client, f"/flash-sales/{sale_id}")
    r = await client.post(f"/flash-sales/{sale_id}/queue", data={"csrf_token": token}, headers=HX)
    assert r.status_code == 200, r.text
    return r


async def test_the_sale_page_in_every_state_of_the_waiting_room(
    app: FastAPI, client: httpx.AsyncClient, make_client: ClientFactory
) -> None:
    runtime = _runtime(app)
    runtime.extras["flashsale.keeper"] = make_keeper(runtime)
    now = utcnow()
    variant = await stocked_variant(runtime.db, 10)
    live = await new_sale(
        runtime.db,
        variant,
        1,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        now=now,
    )
    later = await new_sale(
        runtime.db,
        variant,
        1,
        starts_at=now + timedelta(hours=1),
        ends_at=now + timedelta(hours=2),
        now=now,
    )
    ids = {e: await _user(runtime, f"{e}@example.com") for e in ("ann", "bob", "cy", "dee")}

    # A guest sees the sale and is asked to log in and come back.
    r = await client.get(f"/flash-sales/{live.id}", headers=HTML)
    assert r.status_code == 200
    assert "Sneaker drop" in r.text and "€49.99" in r.text and "Limited sneaker" in r.text
    assert f"/account/login?next=%2Fflash-sales%2F{live.id}" in r.text
    assert 'data-testid="join-queue"' not in r.text
    r = await client.get(f"/flash-sales/{live.id}/queue", headers=HX)
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/account/login")

    # Signed in without a place: the page loads the panel, which offers to join.
    ann = await _signed_in(make_client, "ann@example.com")
    r = await ann.get(f"/flash-sales/{live.id}", headers=HTML)
    assert f'hx-get="/flash-sales/{live.id}/queue" hx-trigger="load"' in r.text
    panel = await _panel(ann, live.id)
    assert _state(panel.text) == "none" and 'data-testid="join-queue"' in panel.text

    # Admitted: the time left, and "Buy now" to the sale's checkout; the panel keeps asking.
    r = await _join(ann, live.id)
    assert _state(r.text) == "admitted"
    assert f'href="/flash-sales/{live.id}/checkout"' in r.text
    assert 'data-testid="admitted-countdown"' in r.text and "every 10s" in r.text

    # Waiting behind her (the one unit is held): a place, how many ahead, the wait; polling.
    bob = await _signed_in(make_client, "bob@example.com")
    r = await _join(bob, live.id)
    assert _state(r.text) == "waiting"
    assert 'data-testid="queue-position">2<' in r.text and 'data-testid="queue-ahead">0<' in r.text
    assert "Estimated wait" in r.text and 'hx-trigger="every ' in r.text
    assert _state((await _panel(bob, live.id)).text) == "waiting"

    # Before the start: in the pre-queue, no number yet.
    cy = await _signed_in(make_client, "cy@example.com")
    r = await _join(cy, later.id)
    assert _state(r.text) == "waiting" and "drawn when the sale starts" in r.text
    page = await cy.get(f"/flash-sales/{later.id}", headers=HTML)
    assert 'data-testid="start-countdown"' in page.text and "Starting soon" in page.text

    # A hold that ran out: expired, and an offer to join again; no more polling.
    runtime.extras["flashsale.keeper"] = make_keeper(runtime, hold=timedelta(0))
    dee = await _signed_in(make_client, "dee@example.com")
    r = await _join(dee, later.id)  # the pre-queue: not admitted yet
    assert _state(r.text) == "waiting"
    third = await new_sale(
        runtime.db,
        variant,
        1,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        now=now,
    )
    r = await _join(dee, third.id)
    assert _state(r.text) == "expired" and "Join again" in r.text and "hx-trigger" not in r.text
    runtime.extras["flashsale.keeper"] = make_keeper(runtime)

    # Bought: Ann's unit sold as the checkout will sell it.
    keeper = service.keeper_for(runtime)
    async with runtime.db.transaction() as uow:
        await service.mark_purchased(uow, keeper.gate, live.id, ids["ann"], [(variant, 1)])
    r = await _panel(ann, live.id)
    assert _state(r.text) == "purchased" and "You bought 1 unit" in r.text
    assert "hx-trigger" not in r.text

    # Everything sold: Bob's place says so, and stops asking.
    r = await _panel(bob, live.id)
    assert _state(r.text) == "sold_out" and "hx-trigger" not in r.text

    # The shop's list and the home page's link show the live and upcoming sales.
    r = await client.get("/flash-sales", headers=HTML)
    assert r.status_code == 200
    assert (
        f'href="/flash-sales/{live.id}"' in r.text and f'href="/flash-sales/{later.id}"' in r.text
    )
    r = await client.get("/", headers=HTML)
    assert 'data-testid="flash-sale-link"' in r.text and "/flash-sales" in r.text
    for c in (ann, bob, cy, dee):
        await c.aclose()


async def test_joining_an_ended_sale_says_so(app: FastAPI, make_client: ClientFactory) -> None:
    runtime = _runtime(app)
    now = utcnow()
    variant = await stocked_variant(runtime.db, 3)
    sale = await new_sale(
        runtime.db,
        variant,
        1,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        now=now,
    )
    await _user(runtime, "ann@example.com")
    ann = await _signed_in(make_client, "ann@example.com")
    token = await page_token(ann, f"/flash-sales/{sale.id}")
    async with runtime.db.transaction() as uow:
        await service.end_sale(uow, service.gate_for(runtime), sale.id)
    r = await ann.post(f"/flash-sales/{sale.id}/queue", data={"csrf_token": token}, headers=HX)
    assert r.status_code == 200 and _state(r.text) == "ended"
    # Without htmx the form goes back to the page; the list no longer shows the sale.
    r = await ann.post(f"/flash-sales/{sale.id}/queue", data={"csrf_token": token}, headers=HTML)
    assert r.status_code == 303 and r.headers["location"] == f"/flash-sales/{sale.id}"
    assert f"/flash-sales/{sale.id}" not in (await ann.get("/flash-sales", headers=HTML)).text
    missing = await ann.get("/flash-sales/fls_missing", headers=HTML)
    assert missing.status_code == 404


async def test_the_back_office_is_for_staff_only(app: FastAPI, client: httpx.AsyncClient) -> None:
    runtime = _runtime(app)
    now = utcnow()
    variant = await stocked_variant(runtime.db, 3)
    sale = await new_sale(
        runtime.db,
        variant,
        1,
        starts_at=now + timedelta(hours=1),
        ends_at=now + timedelta(hours=2),
        now=now,
    )
    pages = [
        "/admin/flash-sales",
        "/admin/flash-sales/new",
        f"/admin/flash-sales/{sale.id}",
        f"/admin/flash-sales/{sale.id}/counters",
    ]
    for url in pages:
        r = await client.get(url, headers=HTML)
        assert r.status_code == 303, url
        assert unquote(r.headers["location"]) == f"/account/login?next={url}"
    await _user(runtime, "ann@example.com")
    await api_login(client, "ann@example.com")
    for url in pages:
        r = await client.get(url, headers=HTML)
        assert r.status_code == 403 and "Staff only" in r.text, url
    token = csrf_of(r.text)
    r = await client.post(f"/admin/flash-sales/{sale.id}/end", data={"csrf_token": token})
    assert r.status_code == 403
    async with runtime.db.transaction() as uow:
        assert (await service.get_sale(uow, sale.id)).status == "scheduled"


async def test_staff_schedule_watch_and_end_a_sale(app: FastAPI, client: httpx.AsyncClient) -> None:
    runtime = _runtime(app)
    variant = await stocked_variant(runtime.db, 5)
    async with runtime.db.transaction() as uow:
        sku = (await catalog.get_variants(uow, [variant]))[variant].sku
    await _user(runtime, STAFF, "staff")
    await api_login(client, STAFF)
    token = await page_token(client, "/admin/flash-sales/new")
    now = utcnow()
    good = {
        "csrf_token": token,
        "title": "Sneaker drop",
        "variants": f"{sku}, 3",
        "price": "49.99",
        "starts_at": (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S"),
        "ends_at": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "per_customer_limit": "1",
        "admission_rate": "120",
    }

    # Refusals, each next to its field; the values typed are kept.
    r = await client.post("/admin/flash-sales", data={"csrf_token": token})
    assert r.status_code == 422
    for name in ("title", "variants", "price", "ends_at", "admission_rate"):
        assert _field_error(r.text, name), name
    cases = [
        ({"variants": "NO-SUCH-SKU, 2"}, "variants", "no variant has SKU NO-SUCH-SKU", 422),
        ({"variants": f"{sku} lots"}, "variants", "line 1: write a SKU and units", 422),
        ({"variants": f"{sku}, 0"}, "variants", "line 1:", 422),
        ({"price": "4.999"}, "price", "", 422),
        ({"price": "cheap"}, "price", "", 422),
        (
            {"ends_at": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")},
            "ends_at",
            "must be after starts_at",
            422,
        ),
        ({"admission_rate": "0"}, "admission_rate", "", 422),
        ({"variants": f"{sku}, 50"}, "variants", f"{sku}: 50 requested, 5 available", 409),
    ]
    for change, field, message, status in cases:
        r = await client.post("/admin/flash-sales", data={**good, **change})
        assert r.status_code == status, (change, r.text[:300])
        error = _field_error(r.text, field)
        assert error and message in error, (change, error)
        assert 'value="Sneaker drop"' in r.text
    async with runtime.db.transaction() as uow:
        assert await service.list_sales(uow) == []  # nothing set aside by the refusals

    # Scheduled: its page shows the counters, which ask for themselves again.
    r = await client.post("/admin/flash-sales", data=good)
    assert r.status_code == 303, r.text
    url = r.headers["location"]
    sale_id = url.rsplit("/", 1)[1]
    r = await client.get(url, headers=HTML)
    assert "Flash sale Sneaker drop scheduled" in r.text
    assert 'data-testid="count-remaining">Remaining<strong>3<' in r.text
    assert f'hx-get="/admin/flash-sales/{sale_id}/counters" hx-trigger="every 2s"' in r.text
    assert 'data-testid="end-sale"' in r.text and "data-confirm=" in r.text
    r = await client.get(f"{url}/counters", headers=HX)
    assert r.status_code == 200 and 'data-testid="count-queued">Queued<strong>0<' in r.text
    r = await client.get("/admin/flash-sales", headers=HTML)
    assert f'href="/admin/flash-sales/{sale_id}"' in r.text and sku in r.text

    # "End now": a CSRF-checked POST; the units go back to regular stock.
    r = await client.post(f"{url}/end", data={})
    assert r.status_code == 403
    r = await client.post(f"{url}/end", data={"csrf_token": token})
    assert r.status_code == 303
    r = await client.get(url, headers=HTML)
    assert "ended: 0 sold" in r.text and 'data-status="ended"' in r.text
    assert 'data-testid="end-sale"' not in r.text and "hx-trigger" not in r.text
