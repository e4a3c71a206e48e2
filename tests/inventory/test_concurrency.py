"""Many clients at once: the last units are held exactly once, and the ledger stays whole."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from mercato.db import Database, UnitOfWork, utcnow
from mercato.inventory import service
from mercato.inventory.service import STOCK
from mercato.problems import Problem
from tests.inventory.conftest import Warehouses, ledger_ok, new_variants, receive, stock_of

CLIENTS = 200
UNITS = 50


async def _shopper(
    db: Database, owner: str, variant: str, wanted: int, ttl: int, now: datetime
) -> int:
    """Try to hold ``wanted`` units; when told fewer are left, settle for what is left, like a
    shopper lowering the quantity. Returns the units held (0 when none were left)."""
    while True:
        try:
            async with db.transaction() as conn:
                held = await service.reserve(
                    conn, owner, [(variant, wanted)], ttl_seconds=ttl, now=now
                )
            return sum(r.quantity for r in held)
        except Problem as exc:
            if exc.code == "stock_contention":  # every re-plan lost its race: try again
                continue
            assert exc.code == "out_of_stock", exc.body()
            available = int(exc.extra["available"])
            assert 0 <= available < wanted
            if available == 0:
                return 0
            wanted = available


async def test_200_clients_race_for_the_last_50_units(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    # 50 units spread over three warehouses, with the rest of the stock already sold.
    for code, units in (("BER", 30), ("LYS", 15), ("LDN", 25)):
        await receive(db, variant, code, units)
    async with db.transaction() as conn:
        await service.reserve(conn, "earlier", [(variant, 20)], warehouse="LDN")
        await service.commit(conn, "earlier")
        assert await service.availability(conn, [variant]) == {variant: UNITS}

    rng = random.Random(4)
    now = utcnow()
    wants = [rng.randint(1, 3) for _ in range(CLIENTS)]
    # Every fourth client's hold is already past its expiry when the worker looks.
    ttls = [1 if i % 4 == 0 else 3600 for i in range(CLIENTS)]
    held = await asyncio.gather(
        *(_shopper(db, f"co_{i}", variant, wants[i], ttls[i], now) for i in range(CLIENTS))
    )
    assert sum(held) == UNITS
    stock = await stock_of(db, variant)
    assert sum(reserved for _, reserved in stock.values()) == UNITS
    assert all(0 <= reserved <= on_hand for on_hand, reserved in stock.values())
    async with db.transaction() as conn:
        assert await service.availability(conn, [variant]) == {variant: 0}
    await ledger_ok(db)

    # Settle concurrently: some buy, some give up, the worker expires the overdue ones.
    winners = [i for i in range(CLIENTS) if held[i]]
    buyers = [i for i in winners if i % 3 == 0]
    quitters = [i for i in winners if i % 3 == 1]

    async def settle(i: int) -> None:
        async def work(conn: UnitOfWork) -> list[service.ReservationInfo]:
            if i in buyers:
                return await service.commit(conn, f"co_{i}")
            return await service.release(conn, f"co_{i}", "abandoned")

        await db.run(work)

    async def expire() -> None:
        async with db.transaction() as conn:
            await service.expire_due(conn, now + timedelta(seconds=5), limit=10_000)

    await asyncio.gather(*(settle(i) for i in buyers + quitters), expire(), expire())
    await expire()

    async with db.transaction() as conn:
        active = await service.active_reservations(conn, variant_id=variant, limit=1000)
        rows = (await conn.execute(select(STOCK).where(STOCK.c.variant_id == variant))).all()
        committed = await service.list_reservations(
            conn, state="committed", variant_id=variant, limit=1000
        )
    survivors = {i for i in winners if ttls[i] == 3600 and i not in buyers + quitters}
    assert {r.owner for r in active} == {f"co_{i}" for i in survivors}
    assert sum(r.reserved for r in rows) == sum(r.quantity for r in active)
    sold = sum(r.quantity for r in committed if r.owner != "earlier")
    assert sum(r.on_hand for r in rows) == 70 - 20 - sold
    await ledger_ok(db)


async def test_concurrent_reserves_for_one_owner_hold_once(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 100)

    async def attempt() -> list[str]:
        async with db.transaction() as conn:
            return [r.id for r in await service.reserve(conn, "co_same", [(variant, 3)])]

    results = await asyncio.gather(*(attempt() for _ in range(10)))
    assert all(r == results[0] for r in results)
    assert await stock_of(db, variant) == {"BER": (100, 3)}
    await ledger_ok(db)


@pytest.mark.parametrize("spread", [False, True])
async def test_concurrent_multi_line_reserves_never_oversell(
    db: Database, warehouses: Warehouses, spread: bool
) -> None:
    """Carts of two variants competing for split stock: all-or-nothing holds, no deadlock."""
    a, b = await new_variants(db, 2)
    for v in (a, b):
        await receive(db, v, "BER", 7)
        await receive(db, v, "LYS", 6 if spread else 1)
    rng = random.Random(11)

    async def cart(i: int) -> int:
        lines = [(a, rng.randint(1, 4)), (b, rng.randint(1, 4))]

        async def work(conn: UnitOfWork) -> int:
            held = await service.reserve(conn, f"cart_{i}", lines)
            return sum(r.quantity for r in held)

        try:
            return await db.run(work)
        except Problem as exc:
            assert exc.code in {"out_of_stock", "stock_contention"}
            return 0

    held = await asyncio.gather(*(cart(i) for i in range(40)))
    async with db.transaction() as conn:
        active = await service.active_reservations(conn, limit=1000)
    assert sum(held) == sum(r.quantity for r in active)
    for v in (a, b):
        stock = await stock_of(db, v)
        assert all(0 <= reserved <= on_hand for on_hand, reserved in stock.values())
        assert sum(r.quantity for r in active if r.variant_id == v) == sum(
            reserved for _, reserved in stock.values()
        )
    # Each cart holds both of its lines or nothing.
    owners = {r.owner for r in active}
    for owner in owners:
        assert {r.variant_id for r in active if r.owner == owner} == {a, b}
    await ledger_ok(db)
