"""Returns in a marketplace: a return of one seller's line is refunded from the order's single
payment and reverses that seller part's sale only; a return spanning two sellers is split per
part (their shipping included once the order is fully back); each seller reads only its own
returns, with its own lines and its share of the refund."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.checkout import service as checkout
from mercato.events import dispatcher
from mercato.marketplace import service
from mercato.marketplace.events import SALES_CONSUMER
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.returns import service as returns
from tests.checkout.conftest import ADDRESS
from tests.conftest import user_headers
from tests.marketplace.conftest import SellerAccount, Shop, approved_seller, make_shop, runtime_of
from tests.web.admin_helpers import HTML, api_login

RETURNS = "/api/admin/returns"


@pytest.fixture
async def shop(app: FastAPI) -> Shop:
    db = runtime_of(app).db
    made = await make_shop(db, house_stock=0)
    async with db.transaction() as uow:
        [zone] = await checkout.list_zones(uow)
        await checkout.create_shipping_method(
            uow, zone_id=zone.id, code="standard", name="Standard", kind="flat", amount=490,
            currency="EUR",
        )  # fmt: skip
        await service.create_rule(uow, service.RuleDraft(rate="10", currency="EUR"), None)
    return made


async def _delivered_order(
    client: httpx.AsyncClient,
    app: FastAPI,
    shop: Shop,
    staff: dict[str, str],
    buyer: dict[str, str],
    a: SellerAccount,
    b: SellerAccount,
) -> orders.OrderInfo:
    """A: one unit at 18.00 (+3.00 shipping); B: two at 19.00 (+4.50); shipped, delivered."""
    for seller, price, fee in ((a, "18.00", "3.00"), (b, "19.00", "4.50")):
        r = await client.post(
            "/api/seller/offers",
            headers=seller.headers,
            json={"sku": shop.sku, "price": price, "quantity": 5, "shipping": fee},
        )
        assert r.status_code == 201, r.text
    for seller, quantity in ((a, 1), (b, 2)):
        r = await client.post(
            "/api/cart/items?country=DE",
            headers=buyer,
            json={
                "variant_id": shop.variant_id,
                "seller_id": seller.seller_id,
                "quantity": quantity,
            },
        )
        assert r.status_code == 201, r.text
    r = await client.post(
        "/api/checkout",
        headers={**buyer, "Idempotency-Key": "split-return"},
        json={
            "shipping_address": ADDRESS,
            "shipping_method": "standard",
            "payment_token": "tok_visa",
        },
    )
    assert r.status_code == 201, r.text
    order_id = r.json()["order_id"]
    runtime = runtime_of(app)
    await dispatcher.dispatch_once(runtime)  # allocation, the sales in the ledger
    r = await client.post(
        f"/api/admin/orders/{order_id}/shipments", json={"carrier": "sandbox"}, headers=staff
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"/api/admin/shipments/{r.json()['id']}/deliver", headers=staff)
    assert r.status_code == 200, r.text
    async with runtime.db.transaction() as uow:
        order = await orders.get_order(uow, order_id)
    assert order is not None and order.status == "delivered", order
    return order


async def _return(
    client: httpx.AsyncClient,
    staff: dict[str, str],
    buyer: dict[str, str],
    order: orders.OrderInfo,
    lines: list[tuple[str, int]],
) -> str:
    r = await client.post(
        f"/api/orders/{order.id}/returns",
        headers=buyer,
        json={
            "lines": [{"order_line_id": k, "quantity": q} for k, q in lines],
            "reason": "Arrived broken",
        },
    )
    assert r.status_code == 201, r.text
    return_id = str(r.json()["id"])
    r = await client.post(f"{RETURNS}/{return_id}/approve", headers=staff, json={})
    assert r.status_code == 200, r.text
    receipt = [{"order_line_id": k, "disposition": "write_off"} for k, _ in lines]
    r = await client.post(f"{RETURNS}/{return_id}/receive", headers=staff, json={"lines": receipt})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refunded", r.text
    return return_id


@pytest.mark.usefixtures("backend")
async def test_returns_are_refunded_from_the_payment_and_reversed_per_seller_part(
    client: httpx.AsyncClient, app: FastAPI, shop: Shop, staff_headers: dict[str, str]
) -> None:
    runtime = runtime_of(app)
    a = await approved_seller(client, app, staff_headers, "Alpha")
    b = await approved_seller(client, app, staff_headers, "Beta")
    buyer = await user_headers(app, "customer", "buyer@example.com")
    order = await _delivered_order(client, app, shop, staff_headers, buyer, a, b)
    part = {p.seller_id: p for p in order.parts}
    line = {ln.seller_id: ln for ln in order.lines}
    assert (part[a.seller_id].total, part[b.seller_id].total) == (2100, 4250)
    async with runtime.db.transaction() as uow:
        before_a = await service.payable_balance(uow, a.seller_id, "EUR")
        before_b = await service.payable_balance(uow, b.seller_id, "EUR")
    assert (before_a, before_b) == (2100 - 210, 4250 - 425)

    # One of B's two units comes back: 19.00 refunded from the order's payment, B's sale only.
    first = await _return(client, staff_headers, buyer, order, [(line[b.seller_id].id, 1)])
    await dispatcher.dispatch_once(runtime, only=[SALES_CONSUMER])
    await dispatcher.dispatch_once(runtime, only=[SALES_CONSUMER])  # again: nothing more
    async with runtime.db.transaction() as uow:
        intent = await payments.get_intent(uow, order.payment_intent_id)
        sale_b = await service.get_sale(uow, part[b.seller_id].id)
        sale_a = await service.get_sale(uow, part[a.seller_id].id)
        assert await service.payable_balance(uow, a.seller_id, "EUR") == before_a
        # Kept 23.50 of 42.50: the commission is 10 % of what was kept, 2.35.
        assert await service.payable_balance(uow, b.seller_id, "EUR") == before_b - (1900 - 190)
        assert await service.check_ledger(uow) == []
    assert intent is not None and intent.amount_refunded == 1900
    assert sale_b is not None and (sale_b.returned, sale_b.reversed) == (1900, 190)
    assert sale_a is not None and (sale_a.returned, sale_a.reversed) == (0, 0)

    # The rest in one return spanning both sellers: the order is fully back, so each part's
    # parcel shipping is refunded with its lines, and both sales are wholly reversed.
    second = await _return(
        client,
        staff_headers,
        buyer,
        order,
        [(line[a.seller_id].id, 1), (line[b.seller_id].id, 1)],
    )
    async with runtime.db.transaction() as uow:
        found = await returns.get_return(uow, second)
        assert found is not None
        shares = await returns.refund_by_part(uow, found)
    assert {(s.seller_id, s.amount) for s in shares} == {(a.seller_id, 2100), (b.seller_id, 2350)}
    assert found.refund_amount == 2100 + 2350
    await dispatcher.dispatch_once(runtime, only=[SALES_CONSUMER])
    async with runtime.db.transaction() as uow:
        intent = await payments.get_intent(uow, order.payment_intent_id)
        sale_a = await service.get_sale(uow, part[a.seller_id].id)
        sale_b = await service.get_sale(uow, part[b.seller_id].id)
        assert await service.payable_balance(uow, a.seller_id, "EUR") == 0
        assert await service.payable_balance(uow, b.seller_id, "EUR") == 0
        assert await service.check_ledger(uow) == []
    assert intent is not None and intent.amount_refunded == order.total
    assert sale_a is not None and (sale_a.returned, sale_a.reversed) == (2100, 210)
    assert sale_b is not None and (sale_b.returned, sale_b.reversed) == (4250, 425)

    # Each seller reads its own returns: A only the second (its line, its share); B both.
    async with runtime.db.transaction() as uow:
        seen_a = await returns.seller_returns(uow, a.seller_id)
        seen_b = await returns.seller_returns(uow, b.seller_id)
    assert [(r.id, r.refund_amount, r.other_sellers) for r in seen_a] == [(second, 2100, True)]
    assert [r.id for r in seen_b] == [second, first]
    assert [[ln.order_line_id for ln in r.lines] for r in seen_b] == [[line[b.seller_id].id]] * 2

    await api_login(client, "alpha@example.com")
    r = await client.get("/seller/returns", headers=HTML)
    assert r.status_code == 200, r.text
    assert second in r.text and first not in r.text and "€21.00" in r.text
    assert 'href="/seller/returns"' in r.text
    r = await client.get(f"/seller/returns/{first}", headers=HTML)
    assert r.status_code == 404
    r = await client.get(f"/seller/returns/{second}", headers=HTML)
    assert r.status_code == 200 and "Kettle" in r.text


_PARTS = st.lists(st.integers(0, 900), min_size=1, max_size=4)  # each part's shipping


@settings(deadline=None)  # the first example pays for imports
@given(shipping=_PARTS, data=st.data(), refund_shipping=st.booleans())
def test_a_refund_splits_into_its_parts_exactly(
    shipping: list[int], data: st.DataObject, refund_shipping: bool
) -> None:
    """Whatever lines of whichever parts come back, the parts' shares add up to the refund (the
    lines' amounts, plus every parcel's shipping when it is refunded) and none is negative."""
    at = datetime(2026, 3, 1, tzinfo=UTC)
    parts = [
        orders.OrderPartInfo(f"op{n}", "ord", f"sel{n}", "open", 0, 0, fee, 0, 0, 1, at)
        for n, fee in enumerate(shipping)
    ]
    picked = data.draw(
        st.lists(st.tuples(st.sampled_from(parts), st.integers(0, 50_000)), max_size=6)
    )
    lines = tuple(
        returns.ReturnLineInfo(f"ol{n}", 1, "restock", "BER", amount, part.seller_id, part.id)
        for n, (part, amount) in enumerate(picked)
    )
    total = sum(a for _, a in picked) + (sum(shipping) if refund_shipping else 0)
    found = returns.ReturnInfo(
        "rma", "ord", None, "refunded", "Broken", None, "EUR", total, refund_shipping, at, at,
        at, at, at, lines,
    )  # fmt: skip
    shares = returns.split_refund(found, parts)
    assert sum(s.amount for s in shares) == total
    assert all(s.amount > 0 for s in shares)
    assert {s.part_id: s.seller_id for s in shares}.items() <= {
        p.id: p.seller_id for p in parts
    }.items()
