"""Allocation, picking, shipments with capture on shipment, delivery and tracking."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mercato.db import Database
from mercato.fulfilment import service as fulfilment
from mercato.fulfilment.carriers import SandboxCarrier
from mercato.fulfilment.events import consume_outbox
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.worker import run_once
from tests.fulfilment.conftest import (
    SECOND_WAREHOUSE,
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
    split_order,
)
from tests.orders.conftest import recover_later

pytestmark = pytest.mark.usefixtures("warehouses")

# real_order with quantities (2, 1): lines of 2 x 10.00 and 1 x 12.50, shipping 4.95.
TOTAL = 2 * 1000 + 1250 + 495


async def test_order_placed_is_allocated_one_fulfilment_per_warehouse(
    app: FastAPI, adb: Database, sandbox: SandboxProvider, ada: Shopper
) -> None:
    placed = await split_order(adb, sandbox, user_id=ada.id, email=ada.email)

    handled = await consume_outbox(rt(app))
    assert handled >= 1
    async with adb.transaction() as conn:
        found = await fulfilment.fulfilments_for_order(conn, placed.order.id)
    assert [(f.warehouse_code, f.status) for f in found] == [
        (WAREHOUSE, "pending"),
        (SECOND_WAREHOUSE, "pending"),
    ]
    lines = {line.variant_id: line.id for line in placed.order.lines}
    assert [[(i.order_line_id, i.quantity) for i in f.items] for f in found] == [
        [(lines[placed.variants[0]], 2)],
        [(lines[placed.variants[1]], 1)],
    ]

    # The whole worker pass (and allocating again directly) creates nothing more.
    await run_once(rt(app))
    async with adb.transaction() as conn:
        again = await fulfilment.allocate_order(conn, placed.order.id)
    assert [f.id for f in again] == [f.id for f in found]


async def test_full_shipment_captures_the_authorized_total_and_ships_the_order(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    assert placed.order.total == TOTAL

    r = await ship(client, staff, placed.order.id)

    assert r.status_code == 201, r.text
    body = r.json()
    assert body["carrier"] == "sandbox" and body["status"] == "in_transit"
    assert body["tracking_number"].startswith("SBX") and len(body["tracking_number"]) == 15
    assert body["captured"] == "37.45"
    assert [e["status"] for e in body["events"]] == ["label_created"]
    order = await get_order(adb, placed.order.id)
    assert order.status == "shipped"
    assert [line.quantity_shipped for line in order.lines] == [2, 1]
    paid = await intent(adb, placed.intent_id)
    assert (paid.amount_captured, paid.status) == (TOTAL, "captured")
    assert await assert_money(adb, order.id) == (TOTAL, 0)
    [created] = await events_of(adb, order.id, "ShipmentCreated")
    assert created["shipment_id"] == body["id"]
    assert created["tracking_number"] == body["tracking_number"]
    assert created["carrier"] == "sandbox"
    assert sorted((x["order_line_id"], x["quantity"]) for x in created["lines"]) == sorted(
        (line.id, line.quantity) for line in order.lines
    )

    # Nothing left: a second shipment is refused, and nothing more is captured.
    before = await snapshot(adb)
    again = await ship(client, staff, order.id)
    assert_problem(again, 409, "nothing_to_ship")
    assert await snapshot(adb) == before


async def test_partial_shipments_capture_their_share_then_the_rest(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    first_line, second_line = placed.order.lines

    r = await ship(
        client,
        staff,
        placed.order.id,
        {
            "carrier": "manual",
            "tracking_number": "1Z999AA10123456784",
            "lines": [{"order_line_id": first_line.id, "quantity": 1}],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["captured"] == "10.00"
    order = await get_order(adb, placed.order.id)
    assert order.status == "fulfilling"
    assert await assert_money(adb, order.id) == (1000, 0)

    r = await ship(
        client,
        staff,
        order.id,
        {
            "carrier": "sandbox",
            "lines": [{"order_line_id": second_line.id, "quantity": 1}],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["captured"] == "12.50"
    assert (await get_order(adb, order.id)).status == "fulfilling"
    assert await assert_money(adb, order.id) == (2250, 0)

    # The last unit takes the rest of the authorization, shipping included.
    r = await ship(client, staff, order.id, {"carrier": "sandbox"})
    assert r.status_code == 201, r.text
    assert r.json()["captured"] == "14.95"
    order = await get_order(adb, order.id)
    assert order.status == "shipped"
    assert await assert_money(adb, order.id) == (TOTAL, 0)
    assert (await intent(adb, placed.intent_id)).amount_captured == order.total


async def test_a_refused_capture_ships_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    async with adb.transaction() as conn:
        await fulfilment.allocate_order(conn, placed.order.id)
    # The authorization was voided behind the shop's back (e.g. expired at the bank).
    await payments.void(adb, sandbox, placed.intent_id, "test-void")
    before = await snapshot(adb)

    r = await ship(client, staff, placed.order.id)

    body = assert_problem(r, 402, "capture_failed")
    assert body["payment_code"] == "payment_voided"
    after = await snapshot(adb)
    # Only the payment's own record of the refused attempt exists; nothing shipped.
    assert after == before
    order = await get_order(adb, placed.order.id)
    assert order.status == "paid" and order.units_shipped == 0


async def test_a_capture_left_unresolved_is_finished_by_a_retry_capturing_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    # Every send times out after the processor acted, and lookups fail: the outcome is unknown.
    sandbox.inject_fault("capture", "timeout_after", times=3)
    sandbox.inject_fault("lookup", "unavailable", times=6)
    body = {"carrier": "sandbox", "shipment_id": "shp_retry0000000000000000001"}

    r = await ship(client, staff, placed.order.id, body)

    assert_problem(r, 503, "capture_pending")
    order = await get_order(adb, placed.order.id)
    assert order.units_shipped == 0 and order.status == "paid"
    async with adb.transaction() as conn:
        assert await fulfilment.shipments_for_order(conn, order.id) == []

    sandbox.clear_faults()
    r = await ship(client, staff, placed.order.id, body)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == body["shipment_id"]
    order = await get_order(adb, placed.order.id)
    assert order.status == "shipped"
    assert await assert_money(adb, order.id) == (TOTAL, 0)
    async with adb.transaction() as conn:
        charge = (await payments.list_charges(conn))[0]
    assert charge.amount_captured == TOTAL  # the processor took it once


async def test_pending_shipments_are_finished_by_the_worker_job(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    sandbox.inject_fault("capture", "timeout_before", times=3)
    sandbox.inject_fault("lookup", "unavailable", times=6)
    assert_problem(await ship(client, staff, placed.order.id), 503, "capture_pending")
    sandbox.clear_faults()

    assert await recover_later(rt(app)) == 1

    order = await get_order(adb, placed.order.id)
    assert order.status == "shipped"
    assert await assert_money(adb, order.id) == (TOTAL, 0)


@pytest.mark.parametrize(
    "status,code", [("cancelled", "order_cancelled"), ("delivered", "order_not_shippable")]
)
async def test_shipping_a_cancelled_or_unpaid_order_is_refused(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
    status: str,
    code: str,
) -> None:
    from tests.orders.conftest import force_status

    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    await force_status(adb, placed.order.id, status)
    before = await snapshot(adb)

    r = await ship(client, staff, placed.order.id)

    assert_problem(r, 409, code)
    assert await snapshot(adb) == before


async def test_bad_shipment_requests_are_refused_without_writing(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    line = placed.order.lines[0]
    before = await snapshot(adb)

    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"carrier": "sandbox", "lines": [{"order_line_id": line.id, "quantity": 3}]}, 422,
         "quantity_exceeds_unshipped"),
        ({"carrier": "sandbox", "lines": [{"order_line_id": "ol_nope", "quantity": 1}]}, 422,
         "unknown_order_line"),
        ({"carrier": "manual"}, 422, "tracking_number_required"),
        ({"carrier": "pigeon"}, 422, "unknown_carrier"),
        ({"carrier": "sandbox", "service": "teleport"}, 422, "unknown_service"),
        ({"carrier": "sandbox", "lines": [{"order_line_id": line.id, "quantity": 0}]}, 422,
         "validation_error"),
        ({"carrier": "sandbox", "lines": []}, 422, "validation_error"),
    ]  # fmt: skip
    for body, status, code in cases:
        assert_problem(await ship(client, staff, placed.order.id, body), status, code)
    assert_problem(await ship(client, staff, "ord_missing"), 404, "not_found")
    assert_problem(
        await client.post(
            f"/api/admin/orders/{placed.order.id}/shipments",
            json={"carrier": "sandbox"},
            headers=ada.headers,
        ),
        403,
        "forbidden",
    )
    assert await snapshot(adb) == before

    # One unit too many across two requests: the second is refused, the first stands.
    ok = await ship(
        client, staff, placed.order.id,
        {"carrier": "sandbox", "lines": [{"order_line_id": line.id, "quantity": 2}]},
    )  # fmt: skip
    assert ok.status_code == 201
    r = await ship(
        client, staff, placed.order.id,
        {"carrier": "sandbox", "lines": [{"order_line_id": line.id, "quantity": 1}]},
    )  # fmt: skip
    assert_problem(r, 422, "quantity_exceeds_unshipped")
    assert await assert_money(adb, placed.order.id) == (2000, 0)


async def test_concurrent_shipments_never_ship_a_unit_twice(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email, quantities=(3,))
    line = placed.order.lines[0]
    body = {"carrier": "sandbox", "lines": [{"order_line_id": line.id, "quantity": 1}]}

    answers = await asyncio.gather(*(ship(client, staff, placed.order.id, body) for _ in range(8)))

    assert sorted(r.status_code for r in answers) == [201] * 3 + [422] * 5
    order = await get_order(adb, placed.order.id)
    assert order.lines[0].quantity_shipped == 3 and order.status == "shipped"
    assert await assert_money(adb, order.id) == (order.total, 0)


async def test_pick_pack_and_the_pick_list(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await split_order(adb, sandbox, user_id=ada.id, email=ada.email)
    async with adb.transaction() as conn:
        await fulfilment.allocate_order(conn, placed.order.id)

    r = await client.get(
        "/api/admin/fulfilments",
        params={"warehouse": SECOND_WAREHOUSE, "status": "pending"},
        headers=staff.headers,
    )
    assert r.status_code == 200
    [listed] = r.json()["items"]
    assert (listed["warehouse"], listed["units"], listed["order_id"]) == (
        SECOND_WAREHOUSE,
        1,
        placed.order.id,
    )

    r = await client.post(f"/api/admin/fulfilments/{listed['id']}/pick", headers=staff.headers)
    assert r.status_code == 200 and r.json()["status"] == "picked"
    assert (await get_order(adb, placed.order.id)).status == "fulfilling"
    r = await client.post(f"/api/admin/fulfilments/{listed['id']}/pack", headers=staff.headers)
    assert r.status_code == 200 and r.json()["status"] == "packed"
    r = await client.post(f"/api/admin/fulfilments/{listed['id']}/pick", headers=staff.headers)
    assert_problem(r, 409, "invalid_fulfilment_state")
    r = await client.get(
        "/api/admin/fulfilments", params={"status": "bogus"}, headers=staff.headers
    )
    assert_problem(r, 422, "validation_error")

    # Ship the packed warehouse's parcel only: the order is still fulfilling.
    r = await ship(
        client, staff, placed.order.id, {"carrier": "sandbox", "fulfilment_id": listed["id"]}
    )
    assert r.status_code == 201, r.text
    assert r.json()["fulfilment_id"] == listed["id"]
    r = await client.get(f"/api/admin/fulfilments/{listed['id']}", headers=staff.headers)
    assert r.json()["status"] == "shipped"
    assert (await get_order(adb, placed.order.id)).status == "fulfilling"
    r = await ship(client, staff, placed.order.id)
    assert r.status_code == 201, r.text
    assert (await get_order(adb, placed.order.id)).status == "shipped"
    assert await assert_money(adb, placed.order.id) == (placed.order.total, 0)


async def test_deliver_and_tracking(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    shipment = (await ship(client, staff, placed.order.id)).json()
    bob = await shopper(app, "bob@example.com")

    r = await client.get(f"/api/orders/{placed.order.id}/tracking", headers=ada.headers)
    assert r.status_code == 200
    [tracked] = r.json()["shipments"]
    assert tracked["tracking_number"] == shipment["tracking_number"]
    assert [e["status"] for e in tracked["events"]] == ["label_created"]
    assert "captured" not in tracked and "label" not in tracked
    assert_problem(
        await client.get(f"/api/orders/{placed.order.id}/tracking", headers=bob.headers),
        404,
        "not_found",
    )
    r = await client.get(f"/api/orders/{placed.order.id}", headers=ada.headers)
    assert [s["tracking_number"] for s in r.json()["shipments"]] == [shipment["tracking_number"]]

    r = await client.post(f"/api/admin/shipments/{shipment['id']}/deliver", headers=staff.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "delivered"
    assert (await get_order(adb, placed.order.id)).status == "delivered"
    again = await client.post(
        f"/api/admin/shipments/{shipment['id']}/deliver", headers=staff.headers
    )
    assert again.status_code == 200
    assert len(await events_of(adb, placed.order.id, "ShipmentDelivered")) == 1
    assert_problem(
        await client.post("/api/admin/shipments/shp_nope/deliver", headers=staff.headers),
        404,
        "not_found",
    )
    r = await client.get(f"/api/orders/{placed.order.id}/tracking", headers=ada.headers)
    assert [e["status"] for e in r.json()["shipments"][0]["events"]] == [
        "label_created",
        "delivered",
    ]


async def test_the_sandbox_carrier_moves_parcels_along_by_time(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    made = (await ship(client, staff, placed.order.id)).json()
    async with adb.transaction() as conn:
        shipped = await fulfilment.get_shipment(conn, made["id"])
    assert shipped is not None and shipped.shipped_at is not None
    start = shipped.shipped_at
    assert shipped.tracking_number == SandboxCarrier.tracking_number_for(shipped.id)

    assert await fulfilment.advance_tracking(rt(app), now=start + timedelta(seconds=30)) == 0
    assert await fulfilment.advance_tracking(rt(app), now=start + timedelta(minutes=4)) == 2
    async with adb.transaction() as conn:
        moving = await fulfilment.get_shipment(conn, made["id"])
    assert moving is not None
    assert [e.status for e in moving.events] == ["label_created", "picked_up", "in_transit"]
    assert moving.status == "in_transit"

    await fulfilment.advance_tracking(rt(app), now=start + timedelta(minutes=11))
    async with adb.transaction() as conn:
        arrived = await fulfilment.get_shipment(conn, made["id"])
    assert arrived is not None and arrived.status == "delivered"
    assert arrived.delivered_at == start + timedelta(minutes=10)
    assert [e.status for e in arrived.events][-2:] == ["out_for_delivery", "delivered"]
    assert (await get_order(adb, placed.order.id)).status == "delivered"
    assert await fulfilment.advance_tracking(rt(app), now=start + timedelta(minutes=20)) == 0


async def test_a_cancelled_order_leaves_the_pick_list(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    from mercato.orders import service as orders

    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    await consume_outbox(rt(app))
    await orders.cancel_order(rt(app), placed.order.id, actor="test")

    await consume_outbox(rt(app))

    async with adb.transaction() as conn:
        [stopped] = await fulfilment.fulfilments_for_order(conn, placed.order.id)
    assert stopped.status == "cancelled"
    r = await client.get(
        "/api/admin/fulfilments", params={"status": "pending"}, headers=staff.headers
    )
    assert r.json()["items"] == []
    assert_problem(
        await client.post(f"/api/admin/fulfilments/{stopped.id}/pick", headers=staff.headers),
        409,
        "invalid_fulfilment_state",
    )


async def test_the_worker_runs_the_fulfilment_jobs(app: FastAPI) -> None:
    done = await run_once(rt(app))
    for name in ("outbox", "fulfilment.advance_tracking", "workflows.recover"):
        assert name in done
    assert "workflows.recover" in done


async def test_a_delivery_time_must_be_plausible(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    placed = await real_order(adb, sandbox, user_id=ada.id, email=ada.email)
    made = (await ship(client, staff, placed.order.id)).json()
    before = await snapshot(adb)
    for when in (made["shipped_at"][:4] + "-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00"):
        r = await client.post(
            f"/api/admin/shipments/{made['id']}/deliver",
            json={"delivered_at": when},
            headers=staff.headers,
        )
        assert_problem(r, 422, "validation_error")
    assert await snapshot(adb) == before


async def test_the_carriers_and_their_rates(client: httpx.AsyncClient, staff: Shopper) -> None:
    r = await client.get(
        "/api/admin/carriers", params={"country": "de", "units": 2}, headers=staff.headers
    )
    assert r.status_code == 200, r.text
    by_name = {c["name"]: c for c in r.json()}
    assert set(by_name) == {"manual", "sandbox"}
    assert by_name["manual"]["requires_tracking_number"] is True
    assert by_name["manual"]["rates"] == []
    assert [q["service"] for q in by_name["sandbox"]["rates"]] == ["standard", "express"]
    assert all(q["currency"] == "EUR" for q in by_name["sandbox"]["rates"])
