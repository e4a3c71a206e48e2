"""Return requests, receiving (restock, write-off) and the refund saga, with the money invariant
checked after every step."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mercato.db import Database, utcnow
from mercato.fulfilment import service as fulfilment
from mercato.inventory import service as inventory
from mercato.inventory.service import MOVEMENTS
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.problems import Problem
from mercato.returns import service as returns
from tests.fulfilment.conftest import (
    WAREHOUSE,
    Shopper,
    assert_money,
    assert_problem,
    events_of,
    get_order,
    intent,
    real_order,
    rt,
    ship,
    shopper,
    snapshot,
)
from tests.orders.conftest import recover_later
from tests.returns.conftest import ask_return, delivered_order, level

pytestmark = pytest.mark.usefixtures("warehouses")

# quantities (2, 1): lines of 2 x 10.00 and 1 x 12.50, shipping 4.95 -> 37.45.
TOTAL = 3745


async def staff_post(
    client: httpx.AsyncClient, staff: Shopper, path: str, body: object = None
) -> httpx.Response:
    return await client.post(f"/api/admin/returns/{path}", json=body, headers=staff.headers)


async def test_return_flow_restock_and_write_off_refunds_the_right_amount(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await delivered_order(client, adb, sandbox, ada, staff)
    first, second = placed.order.lines
    assert await assert_money(adb, placed.order.id) == (TOTAL, 0)
    assert await level(adb, first.variant_id, WAREHOUSE) == (8, 0)
    assert await level(adb, second.variant_id, WAREHOUSE) == (9, 0)

    r = await ask_return(client, ada, placed.order.id, [(first.id, 1), (second.id, 1)])
    assert r.status_code == 201, r.text
    rma = r.json()
    assert rma["status"] == "requested" and rma["id"].startswith("rma_")
    assert (await get_order(adb, placed.order.id)).status == "return_requested"
    [requested] = await events_of(adb, placed.order.id, "ReturnRequested")
    assert requested["return_id"] == rma["id"]
    r = await client.get(f"/api/orders/{placed.order.id}/returns", headers=ada.headers)
    assert [x["id"] for x in r.json()["items"]] == [rma["id"]]
    await assert_money(adb, placed.order.id)

    # Goods cannot be received before the return is approved.
    body = {
        "lines": [
            {"order_line_id": first.id, "disposition": "restock"},
            {"order_line_id": second.id, "disposition": "write_off", "warehouse": WAREHOUSE},
        ]
    }
    assert_problem(
        await staff_post(client, staff, f"{rma['id']}/receive", body), 409, "invalid_return_state"
    )
    r = await client.get(
        "/api/admin/returns", params={"status": "requested"}, headers=staff.headers
    )
    assert [x["id"] for x in r.json()["items"]] == [rma["id"]]
    r = await staff_post(client, staff, f"{rma['id']}/approve", {"note": "ok"})
    assert r.status_code == 200 and r.json()["status"] == "approved"
    await assert_money(adb, placed.order.id)

    r = await staff_post(client, staff, f"{rma['id']}/receive", body)

    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "refunded" and done["refund_pending"] is False
    assert done["refund_amount"] == "22.50" and done["refund_shipping"] is False
    assert {x["order_line_id"]: x["refund"] for x in done["lines"]} == {
        first.id: "10.00",
        second.id: "12.50",
    }
    order = await get_order(adb, placed.order.id)
    assert order.status == "refunded"
    assert order.refunded_total == 2250
    assert [line.quantity_returned for line in order.lines] == [1, 1]
    assert await assert_money(adb, order.id) == (TOTAL, 2250)
    # One unit back on the shelf; the damaged one came in and was written off with a reason.
    assert await level(adb, first.variant_id, WAREHOUSE) == (9, 0)
    assert await level(adb, second.variant_id, WAREHOUSE) == (9, 0)
    async with adb.transaction() as conn:
        assert await inventory.check_ledger(conn) == []
        moves = (
            await conn.execute(
                select(MOVEMENTS.c.kind, MOVEMENTS.c.quantity, MOVEMENTS.c.reason).where(
                    MOVEMENTS.c.variant_id == second.variant_id,
                    MOVEMENTS.c.kind.in_(("restock", "adjust")),
                )
            )
        ).all()
    assert sorted((m.kind, m.quantity) for m in moves) == [("adjust", -1), ("restock", 1)]
    assert any(m.reason and "written off" in m.reason for m in moves)
    [received] = await events_of(adb, order.id, "ReturnReceived")
    assert sorted((x["order_line_id"], x["disposition"]) for x in received["lines"]) == sorted(
        [(first.id, "restock"), (second.id, "write_off")]
    )
    [issued] = await events_of(adb, order.id, "RefundIssued")
    assert (issued["amount"], issued["currency"], issued["return_id"]) == (2250, "EUR", rma["id"])

    # Receiving again changes nothing and refunds nothing more.
    again = await staff_post(client, staff, f"{rma['id']}/receive", body)
    assert again.status_code == 200 and again.json()["status"] == "refunded"
    assert await assert_money(adb, order.id) == (TOTAL, 2250)

    # The last unit: the order is now fully returned, so the shipping comes back too.
    r = await ask_return(client, ada, order.id, [(first.id, 1)], "Changed my mind")
    assert r.status_code == 201, r.text
    last = r.json()["id"]
    assert (await get_order(adb, order.id)).status == "return_requested"
    await staff_post(client, staff, f"{last}/approve")
    r = await staff_post(
        client,
        staff,
        f"{last}/receive",
        {"lines": [{"order_line_id": first.id, "disposition": "restock"}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["refund_amount"] == "14.95" and r.json()["refund_shipping"] is True
    order = await get_order(adb, order.id)
    assert (order.status, order.refunded_total) == ("refunded", TOTAL)
    assert await assert_money(adb, order.id) == (TOTAL, TOTAL)
    paid = await intent(adb, placed.intent_id)
    assert paid.status == "refunded"

    # Nothing is left to return.
    before = await snapshot(adb)
    r = await ask_return(client, ada, order.id, [(second.id, 1)])
    assert_problem(r, 422, "return_exceeds_delivered")
    assert await snapshot(adb) == before


async def test_over_return_and_bad_requests_are_refused_without_writing(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await delivered_order(client, adb, sandbox, ada, staff)
    first, second = placed.order.lines
    bob = await shopper(app, "bob@example.com")
    before = await snapshot(adb)

    r = await ask_return(client, ada, placed.order.id, [(first.id, 3)])
    body = assert_problem(r, 422, "return_exceeds_delivered")
    assert body["returnable"] == 2
    r = await ask_return(client, ada, placed.order.id, [(first.id, 2), (first.id, 1)])
    assert_problem(r, 422, "return_exceeds_delivered")
    assert_problem(
        await ask_return(client, ada, placed.order.id, [("ol_nope", 1)]), 422, "unknown_order_line"
    )
    assert_problem(
        await ask_return(client, ada, placed.order.id, [(first.id, 1)], "   "),
        422,
        "validation_error",
    )
    assert_problem(
        await ask_return(client, ada, placed.order.id, [(first.id, 0)]), 422, "validation_error"
    )
    assert_problem(
        await ask_return(client, bob, placed.order.id, [(first.id, 1)]), 404, "not_found"
    )
    assert await snapshot(adb) == before

    # Two units asked for, then one more: refused (units pending return count).
    assert (await ask_return(client, ada, placed.order.id, [(first.id, 2)])).status_code == 201
    before = await snapshot(adb)
    r = await ask_return(client, ada, placed.order.id, [(first.id, 1), (second.id, 1)])
    assert_problem(r, 422, "return_exceeds_delivered")
    assert await snapshot(adb) == before


async def test_undelivered_lines_and_the_return_window(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    shipped = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    assert (await ship(client, staff, shipped.order.id)).status_code == 201
    before = await snapshot(adb)
    r = await ask_return(client, ada, shipped.order.id, [(shipped.order.lines[0].id, 1)])
    assert_problem(r, 422, "line_not_delivered")
    assert await snapshot(adb) == before

    window = app.state.runtime.settings.return_window_days
    old = await delivered_order(
        client, adb, sandbox, ada, staff, delivered_at=utcnow() - timedelta(days=window + 1)
    )
    before = await snapshot(adb)
    r = await ask_return(client, ada, old.order.id, [(old.order.lines[0].id, 1)])
    assert_problem(r, 422, "return_window_closed")
    assert await snapshot(adb) == before

    # At the service, with a fixed clock: the last day of the window still counts.
    async with adb.transaction() as conn:
        delivered = await fulfilment.delivered_units(conn, old.order.id)
    when = delivered[old.order.lines[0].id].last_delivered_at
    async with adb.transaction() as conn:
        made = await returns.request_return(
            conn,
            old.order.id,
            user_id=ada.id,
            lines=[(old.order.lines[0].id, 1)],
            reason="late",
            window_days=window,
            now=when + timedelta(days=window),
        )
    assert made.status == "requested"


async def test_rejecting_puts_the_order_back_and_frees_the_units(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await delivered_order(client, adb, sandbox, ada, staff)
    line = placed.order.lines[0]
    rma = (await ask_return(client, ada, placed.order.id, [(line.id, 2)])).json()

    r = await staff_post(client, staff, f"{rma['id']}/reject", {"note": "Worn"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert (await get_order(adb, placed.order.id)).status == "delivered"
    assert_problem(
        await staff_post(client, staff, f"{rma['id']}/approve"), 409, "invalid_return_state"
    )
    assert_problem(await staff_post(client, staff, "rma_nope/approve"), 404, "not_found")
    assert (await ask_return(client, ada, placed.order.id, [(line.id, 2)])).status_code == 201
    await assert_money(adb, placed.order.id)


async def test_a_refund_retried_after_a_provider_timeout_refunds_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await delivered_order(client, adb, sandbox, ada, staff)
    line = placed.order.lines[1]
    rma = (await ask_return(client, ada, placed.order.id, [(line.id, 1)])).json()
    await staff_post(client, staff, f"{rma['id']}/approve")
    # The processor refunds, but every answer is lost and lookups fail: outcome unknown.
    sandbox.inject_fault("refund", "timeout_after", times=3)
    sandbox.inject_fault("lookup", "unavailable", times=6)

    r = await staff_post(
        client,
        staff,
        f"{rma['id']}/receive",
        {"lines": [{"order_line_id": line.id, "disposition": "restock"}]},
    )

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "received" and r.json()["refund_pending"] is True
    order = await get_order(adb, placed.order.id)
    assert (order.status, order.refunded_total) == ("returned", 0)
    await assert_money(adb, order.id)

    sandbox.clear_faults()
    r = await staff_post(client, staff, f"{rma['id']}/refund")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refunded"
    again = await staff_post(client, staff, f"{rma['id']}/refund")
    assert again.json()["status"] == "refunded"
    assert await recover_later(rt(app)) == 0
    order = await get_order(adb, order.id)
    assert (order.status, order.refunded_total) == ("refunded", 1250)
    assert await assert_money(adb, order.id) == (TOTAL, 1250)
    async with adb.transaction() as conn:
        [charge] = await payments.list_charges(conn)
        refunds = [
            e
            for e in await payments.intent_events(conn, placed.intent_id)
            if e.operation == "refund"
        ]
    assert charge.amount_refunded == 1250  # the processor refunded once
    assert [(e.idempotency_key, e.outcome) for e in refunds] == [
        (f"return:{rma['id']}", "succeeded")
    ]
    assert len(await events_of(adb, order.id, "RefundIssued")) == 1


async def test_the_worker_finishes_pending_refunds(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await delivered_order(client, adb, sandbox, ada, staff)
    line = placed.order.lines[0]
    rma = (await ask_return(client, ada, placed.order.id, [(line.id, 1)])).json()
    await staff_post(client, staff, f"{rma['id']}/approve")
    sandbox.inject_fault("refund", "timeout_before", times=3)
    sandbox.inject_fault("lookup", "unavailable", times=6)
    r = await staff_post(
        client,
        staff,
        f"{rma['id']}/receive",
        {"lines": [{"order_line_id": line.id, "disposition": "restock"}]},
    )
    assert r.json()["refund_pending"] is True
    sandbox.clear_faults()

    assert await recover_later(rt(app)) == 1
    assert await assert_money(adb, placed.order.id) == (TOTAL, 1000)


async def test_concurrent_return_requests_never_exceed_delivered_units(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await delivered_order(client, adb, sandbox, ada, staff)
    line = placed.order.lines[0]  # 2 units delivered

    answers = await asyncio.gather(
        *(ask_return(client, ada, placed.order.id, [(line.id, 1)]) for _ in range(10))
    )

    assert sorted(r.status_code for r in answers) == [201] * 2 + [422] * 8
    for r in answers:
        if r.status_code == 422:
            assert r.json()["code"] == "return_exceeds_delivered"
    async with adb.transaction() as conn:
        assert (await returns.units_spoken_for(conn, placed.order.id)) == {line.id: 2}


async def test_a_refund_larger_than_captured_is_refused(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    first = placed.order.lines[0]
    r = await ship(
        client,
        staff,
        placed.order.id,
        {"carrier": "sandbox", "lines": [{"order_line_id": first.id, "quantity": 1}]},
    )
    assert r.status_code == 201
    before = await snapshot(adb)

    # (Nothing is recorded by refund_payment itself: the workflow that calls it records.)
    with pytest.raises(Problem) as refused:
        await orders.refund_payment(adb, sandbox, placed.order.id, 1001, "manual:1")
    assert (refused.value.status, refused.value.code) == (422, "refund_exceeds_captured")
    with pytest.raises(Problem) as too_much:
        await orders.refund_payment(adb, sandbox, placed.order.id, TOTAL + 1, "manual:2")
    assert (too_much.value.status, too_much.value.code) == (409, "refund_exceeds_total")
    assert await snapshot(adb) == before
    assert await assert_money(adb, placed.order.id) == (1000, 0)
