"""The gate under concurrency, its repair after a Redis flush, admissions paused while Redis
is unreachable, and admission tokens."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mercato.db import Database
from mercato.flashsale import service
from mercato.flashsale.common import ENTRIES
from mercato.flashsale.service import Gate, Keeper, MemoryGate, RedisGate
from mercato.problems import Problem
from mercato.ratelimit import RedisTokenBucket
from mercato.runtime import Runtime
from tests.flashsale.conftest import (
    START,
    admit,
    dead_redis,
    join,
    make_keeper,
    new_sale,
    sale,
    state,
    stocked_variant,
)


async def _admitted(db: Database, sale_id: str) -> int:
    async with db.transaction() as uow:
        count = await uow.scalar(
            select(func.count()).where(ENTRIES.c.sale_id == sale_id, ENTRIES.c.state == "admitted")
        )
    return int(count or 0)


def _gates(runtime: Runtime) -> list[Gate]:
    gates: list[Gate] = [MemoryGate()]
    if runtime.redis is not None:
        gates.append(RedisGate(runtime.redis, prefix="test:gate:"))
    return gates


async def test_concurrent_takes_never_exceed_the_counter(runtime: Runtime) -> None:
    for gate in _gates(runtime):
        assert await gate.take("fls_x", 1) is None  # unknown until loaded
        assert await gate.load("fls_x", 20)
        assert not await gate.load("fls_x", 99)
        taken = await asyncio.gather(*(gate.take("fls_x", 1) for _ in range(200)))
        assert sum(t or 0 for t in taken) == 20, type(gate).__name__
        assert await gate.remaining("fls_x") == 0
        await gate.give_back("fls_x", 2)
        assert await gate.take("fls_x", 5) == 2
        await gate.forget("fls_x")


async def test_200_buyers_for_20_units_admit_exactly_20(
    db: Database, runtime: Runtime, keeper: Keeper
) -> None:
    """Every buyer polls at once and every poll runs an admission pass: the memory gate on
    the embedded backend, the Redis gate on the production-shaped one."""
    variant = await stocked_variant(db, 40)
    created = await new_sale(db, variant, 20, starts_at=START)
    buyers = [f"cus_{i:03d}" for i in range(200)]
    for i, buyer in enumerate(buyers):
        await join(db, keeper, created.id, buyer, START + timedelta(milliseconds=i))
    now = START + timedelta(seconds=1)
    states = await asyncio.gather(
        *(
            service.poll(db, keeper, created.id, b, ip=f"10.0.{i % 200}.1", now=now)
            for i, b in enumerate(buyers)
        )
    )
    assert await _admitted(db, created.id) == 20
    after = await sale(db, created.id)
    assert (after.held, after.sold, after.admissions) == (20, 0, 20)
    assert await keeper.gate.remaining(created.id) == 0
    # Whoever was told "admitted" is among the first twenty in line.
    told = {s.position for s in states if s.state == "admitted"}
    assert told <= set(range(1, 21))
    final = [await state(db, keeper, created.id, b, now) for b in buyers]
    assert [s.state for s in final] == ["admitted"] * 20 + ["waiting"] * 180


async def test_reconciliation_repairs_the_gate_after_a_flush(
    db: Database, runtime: Runtime, keeper: Keeper
) -> None:
    variant = await stocked_variant(db, 20)
    created = await new_sale(db, variant, 20)
    for i in range(5):
        await join(db, keeper, created.id, f"cus_{i:02d}", START)
    assert (await admit(db, keeper, created.id, START)).admitted == 5
    assert await keeper.gate.remaining(created.id) == 15

    if runtime.redis is not None:
        await runtime.redis.flushall()
    else:
        await keeper.gate.forget(created.id)  # a restarted process
    assert await keeper.gate.remaining(created.id) is None
    async with db.transaction() as uow:
        found = await service.reconcile(uow, keeper.gate, created.id)
    assert (found.gate_before, found.database, found.repaired) == (None, 15, True)
    assert await keeper.gate.remaining(created.id) == 15

    # A gate that says too much is brought down too.
    await keeper.gate.adjust(created.id, 7)
    async with db.transaction() as uow:
        found = await service.reconcile(uow, keeper.gate, created.id)
    assert (found.gate_before, found.database) == (22, 15)
    assert await keeper.gate.remaining(created.id) == 15


async def test_after_a_flush_no_oversell(db: Database, runtime: Runtime, keeper: Keeper) -> None:
    variant = await stocked_variant(db, 20)
    created = await new_sale(db, variant, 20)
    for i in range(5):
        await join(db, keeper, created.id, f"cus_{i:02d}", START)
    assert (await admit(db, keeper, created.id, START)).admitted == 5
    if runtime.redis is not None:
        await runtime.redis.flushall()
    else:
        await keeper.gate.forget(created.id)
    for i in range(5, 200):
        await join(db, keeper, created.id, f"cus_{i:03d}", START + timedelta(seconds=1))
    now = START + timedelta(seconds=2)
    await asyncio.gather(*(admit(db, keeper, created.id, now) for _ in range(10)))
    assert await _admitted(db, created.id) == 20
    assert (await sale(db, created.id)).held == 20
    assert await keeper.gate.remaining(created.id) == 0


async def test_redis_unreachable_pauses_admissions(db: Database, runtime: Runtime) -> None:
    down = dead_redis()
    try:
        keeper = make_keeper(runtime, gate=RedisGate(down), pace=RedisTokenBucket(down))
        keeper.limiter = RedisTokenBucket(down)
        variant = await stocked_variant(db, 5)
        created = await new_sale(db, variant, 5)
        for i in range(3):
            await join(db, keeper, created.id, f"cus_{i}", START)
        result = await admit(db, keeper, created.id, START)
        assert result.paused and result.admitted == 0
        answer = await service.poll(db, keeper, created.id, "cus_0", ip="10.0.0.1", now=START)
        assert answer.state == "waiting" and answer.paused
        assert await _admitted(db, created.id) == 0
        assert (await sale(db, created.id)).held == 0
        async with db.transaction() as uow:
            counters = await service.sale_counters(uow, keeper.gate, created.id)
        # The line lives in the gate: while it is unreachable nobody is counted as queued.
        assert not counters.gate_reachable and counters.queued == 0
    finally:
        await down.aclose()


async def test_admission_tokens_are_checked(db: Database, keeper: Keeper) -> None:
    variant = await stocked_variant(db, 5)
    created = await new_sale(db, variant, 5)
    await join(db, keeper, created.id, "cus_a", START)
    await admit(db, keeper, created.id, START)
    token = (await state(db, keeper, created.id, "cus_a", START)).admission_token
    assert token is not None and token.startswith("fsa1.")

    async def take(token: str, customer: str = "cus_a", now=START) -> str:  # type: ignore[no-untyped-def]
        async with db.transaction() as uow:
            try:
                await service.take_admitted_unit(uow, keeper.secret_key, token, customer, now)
            except Problem as problem:
                return problem.code
        return "ok"

    head, signature = token.rsplit(".", 1)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert await take(f"{head}.{flipped}") == "invalid_admission"
    parts = token.split(".")
    longer = ".".join([*parts[:3], str(int(parts[3]) + 3600), parts[4]])
    assert await take(longer) == "invalid_admission"
    assert await take("garbage") == "invalid_admission"
    assert await take(token, customer="cus_b") == "invalid_admission"
    assert await take(token, now=START + keeper.hold) == "admission_expired"
    forged = service.make_token("another-secret", created.id, "cus_a", START + keeper.hold)
    assert await take(forged) == "invalid_admission"
    assert await take(token) == "ok"
    assert await take(token) == "ok"  # a retried checkout step
    # The purchase fails: the unit goes back; the old token opens nothing any more.
    async with db.transaction() as uow:
        assert await service.return_unit(uow, keeper.gate, created.id, "cus_a", reason="failed")
    assert await take(token) == "not_admitted"


@pytest.mark.parametrize("limit", [2])
async def test_an_admission_holds_up_to_the_limit(db: Database, keeper: Keeper, limit: int) -> None:
    variant = await stocked_variant(db, 5)
    created = await new_sale(db, variant, 3, limit=limit)
    for customer in ("cus_a", "cus_b", "cus_c"):
        await join(db, keeper, created.id, customer, START)
    assert (await admit(db, keeper, created.id, START)).admitted == 2
    held = [(await state(db, keeper, created.id, c, START)).units for c in ("cus_a", "cus_b")]
    assert held == [2, 1]
    async with db.transaction() as uow:
        bought = await service.mark_purchased(uow, keeper.gate, created.id, "cus_a", [(variant, 1)])
    assert bought.returned == 1
    assert await keeper.gate.remaining(created.id) == 1
    assert (await admit(db, keeper, created.id, START)).admitted == 1


async def test_the_worker_admits_and_repairs_a_forgotten_gate(
    db: Database, runtime: Runtime
) -> None:
    keeper = service.keeper_for(runtime)
    variant = await stocked_variant(db, 10)
    created = await new_sale(db, variant, 10)
    for i in range(3):
        await join(db, keeper, created.id, f"cus_{i}", START)
    assert await service.watch_sales(runtime, now=START + timedelta(seconds=1)) == 3
    await keeper.gate.forget(created.id)
    await service.watch_sales(runtime, now=START + timedelta(seconds=2))
    assert await keeper.gate.remaining(created.id) == 7
