"""The queue-fed flash-sale checkout: join, admission, the purchase queued, placed by the worker
in batches; idempotency; a declined card gives the unit to the next buyer; a refusal inside a
batch does not fail the others; many buyers for few units end as exactly that many orders."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mercato import workflows
from mercato.checkout import flash
from mercato.checkout import service as checkout
from mercato.db import Database, utcnow
from mercato.flashsale import service as flashsale
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.workflows import RUNS
from tests.checkout.conftest import ADDRESS, Customer, make_customers, make_shop, make_variant
from tests.conftest import user_headers
from tests.flashsale.conftest import make_keeper, new_sale

DECLINED = "tok_chargeDeclined"


async def a_sale(runtime: Runtime, allocation: int = 20) -> tuple[str, str]:
    """A live sale of ``allocation`` units of a stocked variant; (sale id, variant id)."""
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
    return sale.id, variant


async def admitted(runtime: Runtime, sale_id: str, customer: Customer) -> str | None:
    """Join (or poll) the waiting room; the admission token once admitted."""
    keeper = flashsale.keeper_for(runtime)
    state = await flashsale.join(runtime.db, keeper, sale_id, customer.user.id, ip="10.0.0.1")
    return state.admission_token if state.state == "admitted" else None


def request(token: str, payment: str = "tok_visa") -> checkout.PurchaseRequest:
    return checkout.PurchaseRequest(
        admission_token=token, shipping_address=ADDRESS, payment_token=payment
    )


async def enqueue(
    runtime: Runtime, sale_id: str, customer: Customer, token: str, payment: str = "tok_visa"
) -> str:
    queued = await checkout.enqueue_purchase(
        runtime, customer.user, sale_id, f"key-{customer.user.id}", request(token, payment)
    )
    return queued.purchase_id


async def drain(runtime: Runtime) -> None:
    while await checkout.drain_purchases(runtime):
        pass


async def status_of(
    runtime: Runtime, sale_id: str, purchase_id: str, customer: Customer
) -> checkout.PurchaseStatus:
    return await checkout.purchase_status(runtime.db, sale_id, purchase_id, customer.user.id)


async def sale_orders(db: Database) -> list[orders.OrderInfo]:
    async with db.transaction() as uow:
        ids = [
            r.state["order_id"]
            for r in await uow.execute(
                select(RUNS).where(
                    RUNS.c.workflow == flash.PURCHASE.name, RUNS.c.status == "completed"
                )
            )
        ]
        found = [await orders.get_order(uow, i) for i in ids]
    return [o for o in found if o is not None]


async def check_the_sale(runtime: Runtime, sale_id: str, sold: int) -> None:
    """Sold units = orders = live authorizations; the ledger balances; one order per buyer."""
    placed = await sale_orders(runtime.db)
    async with runtime.db.transaction() as uow:
        sale = await flashsale.get_sale(uow, sale_id, variants=True)
        assert await inventory.check_ledger(uow) == []
        intents = [await payments.get_intent(uow, o.payment_intent_id) for o in placed]
        processor = await payments.sandbox_charge_summary(uow)
    assert sale.sold == sold == len(placed) == sum(v.sold for v in sale.variants)
    assert sale.sold + sale.held <= sale.allocation
    assert all(i is not None and i.status == "authorized" for i in intents)
    assert processor.charges == sold  # no live authorization without an order
    assert max(Counter(o.user_id for o in placed).values(), default=0) <= 1
    assert all(o.total > 0 and o.lines[0].unit_price == 4999 for o in placed)


async def test_join_admit_check_out_and_follow_the_purchase_to_its_order(
    runtime: Runtime,
) -> None:
    sale_id, _ = await a_sale(runtime, 3)
    [buyer] = await make_customers(runtime.db, 1)
    token = await admitted(runtime, sale_id, buyer)
    assert token is not None
    purchase_id = await enqueue(runtime, sale_id, buyer, token)
    assert (await status_of(runtime, sale_id, purchase_id, buyer)).status == "queued"
    await drain(runtime)
    done = await status_of(runtime, sale_id, purchase_id, buyer)
    assert done.status == "completed" and done.order_id and done.problem is None
    async with runtime.db.transaction() as uow:
        order = await orders.get_order(uow, done.order_id)
    assert order is not None and order.status == "paid" and order.user_id == buyer.user.id
    # The sale price, with the shop's tax and shipping for the address.
    assert order.lines[0].unit_price == 4999 and order.shipping > 0
    state = await flashsale.poll(
        runtime.db, flashsale.keeper_for(runtime), sale_id, buyer.user.id, ip="10.0.0.1"
    )
    assert state.state == "purchased"
    await check_the_sale(runtime, sale_id, 1)


async def test_the_same_key_answers_the_same_purchase_and_another_body_conflicts(
    runtime: Runtime,
) -> None:
    sale_id, _ = await a_sale(runtime, 3)
    [buyer] = await make_customers(runtime.db, 1)
    token = await admitted(runtime, sale_id, buyer)
    assert token is not None
    first = await enqueue(runtime, sale_id, buyer, token)
    assert await enqueue(runtime, sale_id, buyer, token) == first
    await drain(runtime)
    # Still the same purchase once it is placed (the token opens nothing any more).
    assert await enqueue(runtime, sale_id, buyer, token) == first
    with pytest.raises(Problem) as info:
        await enqueue(runtime, sale_id, buyer, token, payment="tok_mastercard")
    assert (info.value.status, info.value.code) == (409, "idempotency_conflict")
    await check_the_sale(runtime, sale_id, 1)


async def test_a_declined_card_gives_the_unit_to_the_next_buyer(runtime: Runtime) -> None:
    sale_id, _ = await a_sale(runtime, 1)
    first, second = await make_customers(runtime.db, 2)
    token = await admitted(runtime, sale_id, first)
    assert token is not None
    assert await admitted(runtime, sale_id, second) is None  # one unit: second waits
    purchase = await enqueue(runtime, sale_id, first, token, payment=DECLINED)
    await drain(runtime)
    failed = await status_of(runtime, sale_id, purchase, first)
    assert failed.status == "failed" and failed.order_id is None
    assert failed.problem is not None and failed.problem["code"] == "payment_declined"
    next_token = await admitted(runtime, sale_id, second)
    assert next_token is not None
    bought = await enqueue(runtime, sale_id, second, next_token)
    await drain(runtime)
    assert (await status_of(runtime, sale_id, bought, second)).status == "completed"
    await check_the_sale(runtime, sale_id, 1)


async def test_a_refusal_inside_a_batch_sets_one_purchase_aside_and_commits_the_others(
    runtime: Runtime,
) -> None:
    sale_id, _ = await a_sale(runtime, 5)
    buyers = await make_customers(runtime.db, 5)
    purchases = []
    for buyer in buyers:
        token = await admitted(runtime, sale_id, buyer)
        assert token is not None
        purchases.append(await enqueue(runtime, sale_id, buyer, token))
    # The third buyer's units run out under them (the hold lapsed and was given back) before
    # the batch: their order step refuses, alone.
    gate = flashsale.gate_for(runtime)
    async with runtime.db.transaction() as uow:
        await flashsale.return_unit(uow, gate, sale_id, buyers[2].user.id, reason="test")
    result = await workflows.drive_batch(runtime, flash.PURCHASE, 50)
    assert (result.claimed, result.committed, result.set_aside) == (5, 4, 1)
    statuses = [
        (await status_of(runtime, sale_id, p, b)).status
        for p, b in zip(purchases, buyers, strict=True)
    ]
    assert statuses == ["completed", "completed", "failed", "completed", "completed"]
    aside = await status_of(runtime, sale_id, purchases[2], buyers[2])
    assert aside.problem is not None and aside.problem["code"] == "not_admitted"
    await check_the_sale(runtime, sale_id, 4)


async def test_sixty_buyers_for_twenty_units_make_twenty_orders(runtime: Runtime) -> None:
    sale_id, _ = await a_sale(runtime, 20)
    buyers = await make_customers(runtime.db, 60)
    pending: dict[str, Customer] = {}
    seen: set[str] = set()
    for _ in range(40):
        tokens = await asyncio.gather(*(admitted(runtime, sale_id, b) for b in buyers))
        fresh = [(b, t) for b, t in zip(buyers, tokens, strict=True) if t and b.user.id not in seen]
        for buyer, token in fresh:
            seen.add(buyer.user.id)
            card = DECLINED if int(buyer.user.id[-1], 36) % 7 == 0 else "tok_visa"
            pid = await enqueue(runtime, sale_id, buyer, token, card)
            pending[pid] = buyer
        # Two workers at once (SKIP LOCKED on PostgreSQL; serial on SQLite).
        await asyncio.gather(drain(runtime), drain(runtime))
        async with runtime.db.transaction() as uow:
            sale = await flashsale.get_sale(uow, sale_id)
        if sale.sold == 20:
            break
    await check_the_sale(runtime, sale_id, 20)
    statuses = Counter(
        [(await status_of(runtime, sale_id, p, b)).status for p, b in pending.items()]
    )
    assert statuses["completed"] == 20 and set(statuses) <= {"completed", "failed"}


async def test_the_api_contract(
    app: FastAPI, client: httpx.AsyncClient, customer_headers: dict[str, str]
) -> None:
    runtime: Runtime = app.state.runtime
    sale_id, _ = await a_sale(runtime, 2)
    base = f"/api/flash-sales/{sale_id}"
    joined = await client.post(f"{base}/queue", headers=customer_headers)
    token = joined.json()["admission_token"]
    body: dict[str, Any] = {
        "admission_token": token,
        "shipping_address": ADDRESS,
        "payment_token": "tok_visa",
    }
    headers = {**customer_headers, "Idempotency-Key": "k1"}
    assert (await client.post(f"{base}/checkout", json=body)).status_code == 401
    missing = await client.post(f"{base}/checkout", json=body, headers=customer_headers)
    assert missing.status_code == 400
    forged = await client.post(
        f"{base}/checkout", json={**body, "admission_token": token + "x"}, headers=headers
    )
    assert forged.status_code == 403 and forged.json()["code"] == "invalid_admission"
    queued = await client.post(f"{base}/checkout", json=body, headers=headers)
    assert queued.status_code == 202, queued.text
    answer = queued.json()
    assert answer["status"] == "queued"
    assert answer["poll"] == f"{base}/purchases/{answer['purchase_id']}"
    again = await client.post(f"{base}/checkout", json=body, headers=headers)
    assert again.status_code == 202 and again.json() == answer
    other = await client.post(
        f"{base}/checkout", json={**body, "payment_token": "tok_amex"}, headers=headers
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    await drain(runtime)
    polled = await client.get(answer["poll"], headers=customer_headers)
    assert polled.status_code == 200
    assert polled.json()["status"] == "completed" and polled.json()["order_id"]
    assert polled.json()["problem"] is None
    stranger = await user_headers(app, "customer", "stranger@example.com")
    assert (await client.get(answer["poll"], headers=stranger)).status_code == 404
