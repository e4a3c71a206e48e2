"""A flash sale's checkout page and its purchase's page over HTTP: the form for an admitted
buyer (the held unit at the sale price, the time left, the default address, shipping and the
test cards), the state instead of the form for anyone else, the CSRF check, errors next to
their fields, a double submit that is one purchase, the purchase followed from "Placing your
order…" to its order once the worker has run, a declined card, and another customer's
purchase (404)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from html.parser import HTMLParser

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.checkout import flash
from mercato.checkout import service as checkout
from mercato.db import utcnow
from mercato.identity import service as identity
from mercato.runtime import Runtime
from mercato.workflows import RUNS
from tests.checkout.conftest import ADDRESS, TEST_PASSWORD, make_shop, make_variant
from tests.flashsale.conftest import make_keeper, new_sale
from tests.web.admin_helpers import HTML, api_login, page_token

HX = {**HTML, "HX-Request": "true"}
ClientFactory = Callable[[], httpx.AsyncClient]


class _Form(HTMLParser):
    """The values a browser would post from the page's checkout form."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and "name" in a:
            if a.get("type") == "radio" and "checked" not in a:
                return
            self.values[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def form_of(html: str) -> dict[str, str]:
    parser = _Form()
    parser.feed(html)
    parser.values.setdefault("payment_token", "tok_visa")
    return parser.values


async def a_sale(app: FastAPI, allocation: int = 3) -> tuple[Runtime, str]:
    runtime: Runtime = app.state.runtime
    runtime.extras["flashsale.keeper"] = make_keeper(runtime)
    await make_shop(runtime.db)
    variant = await make_variant(runtime.db, price=9999, stock=allocation + 10)
    now = utcnow()
    sale = await new_sale(
        runtime.db,
        variant,
        allocation,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        now=now - timedelta(minutes=2),
    )
    return runtime, sale.id


async def signed_in(
    runtime: Runtime, make_client: ClientFactory, email: str, *, address: bool = True
) -> httpx.AsyncClient:
    """A customer (with a default address) signed in on a client of their own."""
    async with runtime.db.transaction() as uow:
        user = await identity.create_user(
            uow, email=email, password=TEST_PASSWORD, role="customer", name="Erika"
        )
        if address:
            fields = identity.AddressFields(**ADDRESS)
            await identity.add_address(uow, user.id, fields, make_default=True)
    client = make_client()
    await api_login(client, email)
    return client


async def join(client: httpx.AsyncClient, sale_id: str) -> str:
    """Take a place from the sale's page; the panel's state."""
    token = await page_token(client, f"/flash-sales/{sale_id}")
    r = await client.post(f"/flash-sales/{sale_id}/queue", data={"csrf_token": token}, headers=HX)
    assert r.status_code == 200, r.text
    return "admitted" if 'data-state="admitted"' in r.text else "other"


async def checkout_form(client: httpx.AsyncClient, sale_id: str) -> dict[str, str]:
    r = await client.get(f"/flash-sales/{sale_id}/checkout", headers=HTML)
    assert r.status_code == 200, r.text
    assert 'data-testid="place-order"' in r.text, r.text
    return form_of(r.text)


async def place(client: httpx.AsyncClient, sale_id: str, form: dict[str, str]) -> httpx.Response:
    return await client.post(
        f"/flash-sales/{sale_id}/checkout", data={**form, "action": "place"}, headers=HTML
    )


async def purchases(runtime: Runtime) -> int:
    async with runtime.db.transaction() as uow:
        count = await uow.scalar(
            select(func.count()).select_from(RUNS).where(RUNS.c.workflow == flash.PURCHASE.name)
        )
    return int(count or 0)


async def drain(runtime: Runtime) -> None:
    while await checkout.drain_purchases(runtime):
        pass


def state_of(html: str, testid: str) -> str:
    marker = f'data-testid="{testid}" data-state="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


async def test_an_admitted_buyer_gets_the_form_and_a_guest_the_login(
    app: FastAPI, client: httpx.AsyncClient, make_client: ClientFactory
) -> None:
    runtime, sale_id = await a_sale(app)
    r = await client.get(f"/flash-sales/{sale_id}/checkout", headers=HTML)
    assert r.status_code in (302, 303)
    assert r.headers["location"] == f"/account/login?next=/flash-sales/{sale_id}/checkout"

    ann = await signed_in(runtime, make_client, "ann@example.com")
    assert await join(ann, sale_id) == "admitted"
    r = await ann.get(f"/flash-sales/{sale_id}/checkout", headers=HTML)
    assert r.status_code == 200
    html = r.text
    # The held unit at the sale price, and the time left on the admission (counted down by
    # the static script from its data attribute).
    assert 'data-testid="held-items"' in html and "€49.99" in html and "€99.99" in html
    assert 'data-testid="buy-countdown"' in html and "data-countdown=" in html
    assert "js/flashsale.js" in html and "<script>" not in html and "style=" not in html
    # The default address, the destination's shipping with its price, the test cards.
    form = form_of(html)
    assert (form["line1"], form["postal_code"], form["country"]) == (
        "Heidestrasse 17",
        "10557",
        "DE",
    )
    assert form["shipping_method"] and 'data-testid="shipping-methods"' in html
    assert 'data-testid="checkout-total"' in html
    assert 'value="tok_visa"' in html and 'value="tok_chargeDeclined"' in html
    assert form["idempotency_key"] and form["admission_token"].startswith("fsa1.")
    # The summary for another destination, as htmx asks for it.
    r = await ann.get(
        f"/flash-sales/{sale_id}/checkout/summary",
        params={"country": "FR", "shipping_method": form["shipping_method"]},
        headers=HX,
    )
    assert r.status_code == 200 and 'data-testid="checkout-total"' in r.text


async def test_a_buyer_not_admitted_sees_the_state_and_the_way_back(
    app: FastAPI, make_client: ClientFactory
) -> None:
    runtime, sale_id = await a_sale(app, allocation=1)
    ann = await signed_in(runtime, make_client, "ann@example.com")
    r = await ann.get(f"/flash-sales/{sale_id}/checkout", headers=HTML)
    assert r.status_code == 200 and state_of(r.text, "buy-state") == "none"
    assert f'href="/flash-sales/{sale_id}" data-testid="back-to-sale"' in r.text
    assert 'data-testid="place-order"' not in r.text

    assert await join(ann, sale_id) == "admitted"  # the one unit
    bob = await signed_in(runtime, make_client, "bob@example.com")
    assert await join(bob, sale_id) == "other"
    r = await bob.get(f"/flash-sales/{sale_id}/checkout", headers=HTML)
    assert state_of(r.text, "buy-state") == "waiting" and "not your turn" in r.text
    assert 'name="admission_token"' not in r.text


async def test_placing_the_order_needs_the_forms_csrf_token(
    app: FastAPI, make_client: ClientFactory
) -> None:
    runtime, sale_id = await a_sale(app)
    ann = await signed_in(runtime, make_client, "ann@example.com")
    await join(ann, sale_id)
    form = await checkout_form(ann, sale_id)
    del form["csrf_token"]
    r = await place(ann, sale_id, form)
    assert r.status_code == 403
    assert await purchases(runtime) == 0


async def test_errors_are_shown_next_to_their_fields(
    app: FastAPI, make_client: ClientFactory
) -> None:
    runtime, sale_id = await a_sale(app)
    ann = await signed_in(runtime, make_client, "ann@example.com")
    await join(ann, sale_id)
    form = await checkout_form(ann, sale_id)
    r = await place(ann, sale_id, {**form, "line1": "", "postal_code": ""})
    assert r.status_code == 422
    assert '<p class="field-error" id="e-line1">This field is required.</p>' in r.text
    assert 'id="e-postal_code"' in r.text and 'data-testid="checkout-error"' in r.text
    assert await purchases(runtime) == 0


async def test_a_double_submit_is_one_purchase_followed_to_its_order(
    app: FastAPI, make_client: ClientFactory
) -> None:
    runtime, sale_id = await a_sale(app)
    ann = await signed_in(runtime, make_client, "ann@example.com")
    await join(ann, sale_id)
    form = await checkout_form(ann, sale_id)
    first = await place(ann, sale_id, form)
    again = await place(ann, sale_id, form)
    assert first.status_code == again.status_code == 303
    url = first.headers["location"]
    assert url == again.headers["location"]
    assert url.startswith(f"/flash-sales/{sale_id}/purchases/fsp")
    assert await purchases(runtime) == 1

    # Queued: "Placing your order…", asking for itself every second.
    r = await ann.get(url, headers=HTML)
    assert r.status_code == 200 and state_of(r.text, "purchase-state") == "queued"
    assert "Placing your order" in r.text
    assert f'hx-get="{url}/status" hx-trigger="every 1s"' in r.text
    r = await ann.get(f"{url}/status", headers=HX)
    assert r.status_code == 200 and state_of(r.text, "purchase-state") == "queued"

    # The worker places it: the order, its number and its page; the polling stops.
    await drain(runtime)
    r = await ann.get(f"{url}/status", headers=HX)
    assert state_of(r.text, "purchase-state") == "completed" and "Order placed" in r.text
    assert "hx-get" not in r.text
    status = await _status(runtime, url)
    assert status.order_id is not None
    assert f'href="/account/orders/{status.order_id}"' in r.text
    assert f'data-testid="order-number">{status.order_id}<' in r.text
    order = await ann.get(f"/account/orders/{status.order_id}", headers=HTML)
    assert order.status_code == 200 and "€49.99" in order.text
    # Buying again from the form: the place is bought, no second purchase.
    r = await ann.get(f"/flash-sales/{sale_id}/checkout", headers=HTML)
    assert state_of(r.text, "buy-state") == "purchased"
    assert await purchases(runtime) == 1


async def _status(runtime: Runtime, url: str) -> checkout.PurchaseStatus:
    _, _, sale_id, _, purchase_id = url.split("/")
    async with runtime.db.transaction() as uow:
        run = await uow.execute(select(RUNS.c.state).where(RUNS.c.id == purchase_id))
        user_id = run.one().state["user_id"]
    return await checkout.purchase_status(runtime.db, sale_id, purchase_id, user_id)


async def test_a_declined_card_fails_and_the_unit_goes_back_to_the_sale(
    app: FastAPI, make_client: ClientFactory
) -> None:
    runtime, sale_id = await a_sale(app, allocation=1)
    ann = await signed_in(runtime, make_client, "ann@example.com")
    await join(ann, sale_id)
    form = await checkout_form(ann, sale_id)
    r = await place(ann, sale_id, {**form, "payment_token": "tok_chargeDeclined"})
    assert r.status_code == 303
    await drain(runtime)
    page = await ann.get(r.headers["location"], headers=HTML)
    assert state_of(page.text, "purchase-state") == "failed" and '/status"' not in page.text
    assert 'data-code="payment_declined"' in page.text
    assert "Your card was declined, so nothing was charged" in page.text
    assert "gone back to the sale for the next buyer" in page.text
    assert f'href="/flash-sales/{sale_id}" data-testid="back-to-sale"' in page.text
    # The unit is the next buyer's: the place is over, and another customer gets it.
    r = await ann.get(f"/flash-sales/{sale_id}/checkout", headers=HTML)
    assert state_of(r.text, "buy-state") == "expired"
    bob = await signed_in(runtime, make_client, "bob@example.com")
    assert await join(bob, sale_id) == "admitted"


async def test_another_customers_purchase_is_not_found(
    app: FastAPI, make_client: ClientFactory
) -> None:
    runtime, sale_id = await a_sale(app)
    ann = await signed_in(runtime, make_client, "ann@example.com")
    await join(ann, sale_id)
    r = await place(ann, sale_id, await checkout_form(ann, sale_id))
    url = r.headers["location"]
    bob = await signed_in(runtime, make_client, "bob@example.com", address=False)
    for asked in (url, f"{url}/status"):
        r = await bob.get(asked, headers=HTML)
        assert r.status_code == 404, asked
        assert "Placing your order" not in r.text
    # Nor under another sale's address.
    other = url.replace(sale_id, "fs_nope")
    assert (await ann.get(other, headers=HTML)).status_code == 404
