"""Cancelling: state first, then the stock back and the money back, each exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from mercato import workflows
from mercato.db import Database, utcnow
from mercato.orders import service
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.worker import jobs
from tests.orders.conftest import (
    Shopper,
    assert_problem,
    finish_cancellations,
    get,
    intent_ops,
    ledger_clean,
    move,
    on_hand,
    real_order,
    shopper,
    snapshot,
)

pytestmark = pytest.mark.usefixtures("warehouse")


async def test_cancel_voids_the_authorization_and_restocks(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed = await real_order(db, provider, quantities=(2, 1))
    assert [await on_hand(db, v) for v in placed.variants] == [(8, 0), (9, 0)]

    order = await service.cancel_order(
        runtime, placed.order.id, actor="customer:usr_test", user_id="usr_test"
    )

    assert order.status == "cancelled"
    assert order.stock_returned_at is not None and order.payment_released_at is not None
    assert order.refunded_total == 0
    assert (order.history[-1].from_status, order.history[-1].actor) == (
        "paid",
        "customer:usr_test",
    )
    assert await intent_ops(db, placed.intent_id) == [
        ("authorize", f"auth:{placed.checkout_id}", "succeeded"),
        ("void", f"cancel:{order.id}", "succeeded"),
    ]
    async with db.transaction() as conn:
        payment = await service.payment_summary(conn, order)
    assert payment is not None and payment.status == "voided"
    assert [await on_hand(db, v) for v in placed.variants] == [(10, 0), (10, 0)]
    await ledger_clean(db)


async def test_cancel_after_a_capture_refunds_it(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed = await real_order(db, provider, capture=True)
    order = await service.cancel_order(runtime, placed.order.id, actor="staff:usr_staff")
    assert order.refunded_total == order.total
    async with db.transaction() as conn:
        payment = await service.payment_summary(conn, order)
    assert payment is not None
    assert (payment.status, payment.captured, payment.refunded) == (
        "refunded",
        order.total,
        order.total,
    )
    assert ("refund", f"cancel:{order.id}", "succeeded") in await intent_ops(db, placed.intent_id)
    assert [await on_hand(db, v) for v in placed.variants] == [(10, 0), (10, 0)]
    await ledger_clean(db)


async def test_someone_elses_order_is_not_found(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed = await real_order(db, provider)
    before = await snapshot(db)
    with pytest.raises(Problem) as caught:
        await service.cancel_order(
            runtime, placed.order.id, actor="customer:usr_other", user_id="usr_other"
        )
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert await snapshot(db) == before
    assert len(await intent_ops(db, placed.intent_id)) == 1


async def test_a_shipped_order_cannot_be_cancelled(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed = await real_order(db, provider)
    async with db.transaction() as conn:
        await service.record_shipped(
            conn, placed.order.id, [(ln.id, ln.quantity) for ln in placed.order.lines]
        )
    await move(db, placed.order.id, "shipped")
    before = await snapshot(db)
    with pytest.raises(Problem) as caught:
        await service.cancel_order(runtime, placed.order.id, actor="staff:usr_staff")
    assert (caught.value.status, caught.value.code) == (409, "invalid_transition")
    assert (caught.value.extra["from"], caught.value.extra["to"]) == ("shipped", "cancelled")
    assert await snapshot(db) == before
    assert [await on_hand(db, v) for v in placed.variants] == [(8, 0), (9, 0)]
    assert len(await intent_ops(db, placed.intent_id)) == 1


async def test_money_left_behind_is_finished_by_the_worker(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed = await real_order(db, provider)
    provider.inject_fault("void", "unavailable", times=10)
    order = await service.cancel_order(runtime, placed.order.id, actor="staff:usr_staff")
    # The order is cancelled and the goods are back; the money step waits for the worker.
    assert order.status == "cancelled"
    assert order.stock_returned_at is not None and order.payment_released_at is None
    assert [await on_hand(db, v) for v in placed.variants] == [(10, 0), (10, 0)]

    provider.clear_faults()
    assert "workflows.recover" in {j.name for j in jobs()}
    assert await finish_cancellations(runtime) == 1
    assert await finish_cancellations(runtime) == 0
    done = await get(db, order.id)
    assert done.payment_released_at is not None
    voids = [op for op in await intent_ops(db, placed.intent_id) if op[0] == "void"]
    assert voids == [("void", f"cancel:{order.id}", "succeeded")]
    assert [await on_hand(db, v) for v in placed.variants] == [(10, 0), (10, 0)]
    await ledger_clean(db)


async def test_the_worker_job_finishes_what_a_cancel_left_behind(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed = await real_order(db, provider)
    provider.inject_fault("void", "unavailable", times=10)
    await service.cancel_order(runtime, placed.order.id, actor="staff:usr_staff")
    provider.clear_faults()
    # A cancel that just happened waits out its run's back-off before the worker retries it.
    recover_job = next(j for j in jobs() if j.name == "workflows.recover")
    assert await recover_job.func(runtime) == 0
    five_minutes_on = utcnow() + timedelta(minutes=5)
    assert await workflows.recover(runtime, now=five_minutes_on) == 1
    assert (await get(db, placed.order.id)).payment_released_at is not None


async def test_a_lost_refund_answer_is_retried_without_refunding_twice(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed = await real_order(db, provider, capture=True)
    # The processor refunds, but every answer is lost and it cannot be asked either.
    provider.inject_fault("refund", "timeout_after", times=3)
    provider.inject_fault("lookup", "unavailable", times=20)
    order = await service.cancel_order(runtime, placed.order.id, actor="staff:usr_staff")
    assert order.payment_released_at is None and order.refunded_total == 0

    provider.clear_faults()
    assert await finish_cancellations(runtime) == 1
    done = await get(db, order.id)
    assert done.refunded_total == done.total
    intent = await payments_intent(db, placed.intent_id)
    assert (intent.amount_captured, intent.amount_refunded) == (done.total, done.total)
    async with db.transaction() as conn:
        summary = await payments.sandbox_charge_summary(conn)
    assert summary.amount_refunded == done.total


async def payments_intent(db: Database, intent_id: str) -> payments.IntentInfo:
    async with db.transaction() as conn:
        intent = await payments.get_intent(conn, intent_id)
    assert intent is not None
    return intent


async def test_a_cancel_by_plain_transition_is_finished_by_the_worker(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed = await real_order(db, provider)
    await move(db, placed.order.id, "cancelled")
    assert (await get(db, placed.order.id)).stock_returned_at is None
    assert await finish_cancellations(runtime) == 1
    done = await get(db, placed.order.id)
    assert done.stock_returned_at is not None and done.payment_released_at is not None
    assert [await on_hand(db, v) for v in placed.variants] == [(10, 0), (10, 0)]
    assert ("void", f"cancel:{done.id}", "succeeded") in await intent_ops(db, placed.intent_id)
    await ledger_clean(db)


# -- over HTTP -------------------------------------------------------------------------------------


async def test_ten_concurrent_cancels_one_wins(
    app: FastAPI, client: httpx.AsyncClient, db: Database, provider: SandboxProvider
) -> None:
    ada = await shopper(app, "ada@example.com")
    placed = await real_order(db, provider, user_id=ada.id, capture=True)
    url = f"/api/orders/{placed.order.id}/cancel"

    responses = await asyncio.gather(*(client.post(url, headers=ada.headers) for _ in range(10)))

    assert sorted(r.status_code for r in responses) == [200] + [409] * 9
    for r in responses:
        if r.status_code == 409:
            body = assert_problem(r, 409, "invalid_transition")
            assert (body["from"], body["to"]) == ("cancelled", "cancelled")
    won = next(r.json() for r in responses if r.status_code == 200)
    assert won["status"] == "cancelled"
    assert won["cancellation"] == {"stock_returned": True, "payment_released": True}
    assert won["totals"]["refunded"] == won["totals"]["total"]
    refunds = [op for op in await intent_ops(db, placed.intent_id) if op[0] in ("refund", "void")]
    assert refunds == [("refund", f"cancel:{placed.order.id}", "succeeded")]
    assert [await on_hand(db, v) for v in placed.variants] == [(10, 0), (10, 0)]
    await ledger_clean(db)
    order = await get(db, placed.order.id)
    assert [h.to_status for h in order.history] == ["paid", "cancelled"]


async def test_customer_cancel_over_http(
    app: FastAPI, client: httpx.AsyncClient, db: Database, provider: SandboxProvider
) -> None:
    ada = await shopper(app, "ada@example.com")
    bob = await shopper(app, "bob@example.com")
    placed = await real_order(db, provider, user_id=ada.id)
    url = f"/api/orders/{placed.order.id}/cancel"

    before = await snapshot(db)
    r = await client.post(url, headers=bob.headers)
    assert_problem(r, 404, "not_found")
    assert_problem(await client.post(url), 401, "unauthorized")
    r = await client.post(url, headers=ada.headers, json={"reason": "x" * 501})
    assert_problem(r, 422, "validation_error")
    assert await snapshot(db) == before

    r = await client.post(url, headers=ada.headers, json={"reason": "changed my mind"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled" and body["can_cancel"] is False
    assert body["payment"]["status"] == "voided"
    assert body["timeline"][-1] == {
        "from_status": "paid",
        "to_status": "cancelled",
        "actor": "customer",
        "reason": "changed my mind",
        "at": body["timeline"][-1]["at"],
    }


async def test_staff_cancel_and_the_shipped_refusal_over_http(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: Database,
    provider: SandboxProvider,
    staff_headers: dict[str, str],
) -> None:
    ada: Shopper = await shopper(app, "ada@example.com")
    first = await real_order(db, provider, user_id=ada.id)
    r = await client.post(f"/api/admin/orders/{first.order.id}/cancel", headers=staff_headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["timeline"][-1]["actor"].startswith("staff:")
    assert_problem(
        await client.post(f"/api/admin/orders/{first.order.id}/cancel", headers=ada.headers),
        403,
        "forbidden",
    )

    shipped = await real_order(db, provider, user_id=ada.id)
    async with db.transaction() as conn:
        await service.record_shipped(conn, shipped.order.id, [(shipped.order.lines[0].id, 1)])
    await move(db, shipped.order.id, "fulfilling", "shipped")
    before = await snapshot(db)
    r = await client.post(f"/api/orders/{shipped.order.id}/cancel", headers=ada.headers)
    body = assert_problem(r, 409, "invalid_transition")
    assert (body["from"], body["to"]) == ("shipped", "cancelled")
    r = await client.post(
        f"/api/admin/orders/{shipped.order.id}/transition",
        headers=staff_headers,
        json={"to": "cancelled"},
    )
    assert_problem(r, 409, "invalid_transition")
    assert await snapshot(db) == before
    assert len(await intent_ops(db, shipped.intent_id)) == 1
