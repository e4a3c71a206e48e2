"""Many shoppers at once: the last units, the last promo uses, and one request sent ten times.

On SQLite every transaction takes the write lock, so these runs are serialised by the database;
they are slower there but must hold the same invariants.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
from sqlalchemy import func, select

from mercato.cart import service as cart_service
from mercato.checkout import service
from mercato.db import Database
from mercato.inventory import service as inventory
from mercato.payments.models import Intent
from tests.checkout.conftest import (
    BODY,
    Shop,
    assert_problem,
    check_invariants,
    fill_cart,
    make_customer,
    make_customers,
    make_variant,
    post_checkout,
    stock,
)


async def fill_carts(db: Database, user_ids: list[str], variant_id: str, quantity: int) -> None:
    async with db.transaction() as uow:
        for user_id in user_ids:
            await cart_service.add_item(
                uow,
                cart_service.CartOwner(user_id=user_id),
                variant_id,
                quantity,
                limits=cart_service.CartLimits(),
            )


async def test_one_request_sent_ten_times_at_once_makes_one_order(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, stock=5)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 1))

    answers = await asyncio.gather(*(post_checkout(client, buyer, "same-key") for _ in range(10)))

    assert [a.status_code for a in answers] == [201] * 10, [a.text for a in answers]
    assert len({a.json()["order_id"] for a in answers}) == 1
    async with db.transaction() as uow:
        intents = await uow.scalar(select(func.count()).select_from(Intent))
    assert intents == 1
    totals = await check_invariants(db)
    assert totals.orders == 1 and totals.live_charges == 1
    assert await stock(db, variant) == (4, 0)


async def test_one_refused_request_sent_ten_times_at_once_gets_one_answer(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, stock=2)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 2))
    async with db.transaction() as uow:  # one unit breaks after it went into the cart
        await inventory.adjust(uow, variant, "BER", -1, "damaged")

    answers = await asyncio.gather(*(post_checkout(client, buyer, "same-key") for _ in range(10)))

    bodies = [assert_problem(a, 409, "out_of_stock") for a in answers]
    assert all(b == bodies[0] for b in bodies)
    totals = await check_invariants(db)
    assert totals.checkouts == {"failed": 1} and totals.active_reservations == 0
    assert await stock(db, variant) == (1, 0)


async def test_hundred_shoppers_for_twenty_units(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, stock=20)
    shoppers = await make_customers(db, 100)
    await fill_carts(db, [s.id for s in shoppers], variant, 1)

    answers = await asyncio.gather(*(post_checkout(client, s, f"k-{s.id}") for s in shoppers))

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 20, 409: 80}, statuses
    for answer in answers:
        if answer.status_code == 409:
            assert_problem(answer, 409, "out_of_stock")
    assert await stock(db, variant) == (0, 0)
    totals = await check_invariants(db)
    assert totals.orders == 20 and totals.live_charges == 20
    assert totals.checkouts == {"completed": 20, "failed": 80}
    assert totals.active_reservations == 0


async def test_fifty_shoppers_race_for_the_last_five_promo_uses(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    async with db.transaction() as uow:
        promo = await service.create_promo_code(
            uow, code="LAST5", kind="percent", value=5000, usage_limit=5
        )
    variant = await make_variant(db, price=4000, stock=1000)
    shoppers = await make_customers(db, 50)
    await fill_carts(db, [s.id for s in shoppers], variant, 1)
    body = {**BODY, "promo_code": "LAST5"}

    answers = await asyncio.gather(*(post_checkout(client, s, "k", body) for s in shoppers))

    placed = [a.json() for a in answers if a.status_code == 201]
    assert len(placed) == 5, Counter(a.status_code for a in answers)
    assert all(p["discount"] == "20.00" and p["promo_code"] == "LAST5" for p in placed)
    for answer in answers:
        if answer.status_code != 201:
            assert assert_problem(answer, 422, "invalid_promo_code")["reason"] == "used_up"
    async with db.transaction() as uow:
        after = await service.get_promo(uow, promo.id)
        counts = await service.promo_redemption_counts(uow, promo.id)
    assert after is not None and after.used_count == 5
    assert counts["committed"] == 5 and counts["reserved"] == 0
    assert await stock(db, variant) == (995, 0)
    totals = await check_invariants(db)
    assert totals.orders == 5 and totals.live_charges == 5
