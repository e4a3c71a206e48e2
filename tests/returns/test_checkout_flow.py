"""From a real checkout (tax included, a percent promo spread over the lines, paid shipping)
to a full return: every step keeps captured - refunded equal to the order's net paid, and the
whole authorization is captured once, then refunded once, to the cent."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from mercato.db import Database
from mercato.fulfilment.events import consume_outbox
from mercato.inventory import service as inventory
from tests.checkout.conftest import (
    BODY,
    fill_cart,
    make_customer,
    make_shop,
    make_variant,
    post_checkout,
)
from tests.fulfilment.conftest import (
    Shopper,
    assert_money,
    get_order,
    intent,
    rt,
    ship,
)
from tests.returns.conftest import ask_return


async def test_checkout_to_full_return_to_the_cent(
    app: FastAPI, client: httpx.AsyncClient, adb: Database, staff: Shopper
) -> None:
    await make_shop(adb)
    mug = await make_variant(adb, price=999)
    pot = await make_variant(adb, price=1499)
    customer = await make_customer(adb)
    await fill_cart(adb, customer.id, (mug, 3), (pot, 1))

    r = await post_checkout(client, customer, body={**BODY, "promo_code": "WELCOME10"})
    assert r.status_code == 201, r.text
    order_id = r.json()["order_id"]
    order = await get_order(adb, order_id)
    assert order.discount > 0 and order.shipping > 0
    mugs, pots = sorted(order.lines, key=lambda line: line.quantity, reverse=True)
    assert (mugs.quantity, pots.quantity) == (3, 1)

    assert await consume_outbox(rt(app)) >= 1
    me = Shopper(customer.id, customer.user.email, customer.headers)

    # Two parcels: one mug, then everything else.
    r = await ship(
        client,
        staff,
        order_id,
        {"carrier": "sandbox", "lines": [{"order_line_id": mugs.id, "quantity": 1}]},
    )
    assert r.status_code == 201, r.text
    assert await assert_money(adb, order_id) == (mugs.total // 3, 0)
    r2 = await ship(client, staff, order_id)
    assert r2.status_code == 201, r2.text
    assert await assert_money(adb, order_id) == (order.total, 0)
    for shipment in (r.json(), r2.json()):
        done = await client.post(
            f"/api/admin/shipments/{shipment['id']}/deliver", headers=staff.headers
        )
        assert done.status_code == 200
    assert (await get_order(adb, order_id)).status == "delivered"

    refunded = 0
    for lines in ([(mugs.id, 1)], [(mugs.id, 2), (pots.id, 1)]):
        made = await ask_return(client, me, order_id, lines)
        assert made.status_code == 201, made.text
        rma = made.json()["id"]
        await client.post(f"/api/admin/returns/{rma}/approve", headers=staff.headers)
        received = await client.post(
            f"/api/admin/returns/{rma}/receive",
            json={
                "lines": [
                    {"order_line_id": line_id, "disposition": "restock"} for line_id, _ in lines
                ]
            },
            headers=staff.headers,
        )
        assert received.status_code == 200, received.text
        assert received.json()["status"] == "refunded"
        after = await get_order(adb, order_id)
        assert after.refunded_total > refunded
        refunded = after.refunded_total
        assert await assert_money(adb, order_id) == (order.total, refunded)

    final = await get_order(adb, order_id)
    assert (final.status, final.refunded_total) == ("refunded", final.total)
    paid = await intent(adb, final.payment_intent_id)
    assert (paid.amount_captured, paid.amount_refunded) == (final.total, final.total)
    assert paid.status == "refunded"
    async with adb.transaction() as conn:
        assert await inventory.check_ledger(conn) == []
        levels = {
            v: sum(s.on_hand for s in await inventory.stock_for_variant(conn, v))
            for v in (mug, pot)
        }
    assert levels == {mug: 100, pot: 100}  # every unit back on the shelf
