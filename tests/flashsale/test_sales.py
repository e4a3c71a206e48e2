"""Scheduling sets the allocation aside; the end gives the unsold units back; the checkout's
functions sell out of the sale's hold and keep the ledger clean."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mercato.db import Database
from mercato.flashsale import service
from mercato.flashsale.service import Keeper
from mercato.inventory import service as inventory
from mercato.problems import Problem
from mercato.runtime import Runtime
from tests.flashsale.conftest import (
    END,
    START,
    admit,
    available,
    join,
    ledger_clean,
    new_sale,
    sale,
    state,
    stocked_variant,
)


async def test_scheduling_sets_the_allocation_aside(db: Database) -> None:
    variant = await stocked_variant(db, 30)
    created = await new_sale(db, variant, 20)
    assert created.status == "scheduled" and created.allocation == 20
    assert await available(db, variant) == 10
    # Regular checkout cannot take the sale's units.
    async with db.transaction() as uow:
        with pytest.raises(Problem) as refused:
            await inventory.reserve(uow, "checkout-1", [(variant, 11)])
    assert refused.value.code == "out_of_stock"
    async with db.transaction() as uow:
        held = await inventory.reserve(uow, "checkout-2", [(variant, 10)])
    assert sum(r.quantity for r in held) == 10
    await ledger_clean(db)


async def test_not_enough_stock_sets_nothing_aside(db: Database) -> None:
    variant = await stocked_variant(db, 5)
    with pytest.raises(Problem) as refused:
        await new_sale(db, variant, 6)
    assert refused.value.status == 409
    assert refused.value.code == "insufficient_stock"
    assert await available(db, variant) == 5
    await ledger_clean(db)


async def test_bad_input_names_the_field(db: Database) -> None:
    variant = await stocked_variant(db, 5)
    with pytest.raises(Problem) as late:
        await new_sale(db, variant, 1, ends_at=START - timedelta(minutes=1))
    assert late.value.status == 422 and late.value.extra["errors"][0]["field"] == "ends_at"
    with pytest.raises(Problem) as unknown:
        await new_sale(db, "var_missing", 1)
    assert unknown.value.code == "unknown_variant"
    assert unknown.value.extra["errors"][0]["field"] == "variants[0].variant_id"


async def test_a_purchase_sells_out_of_the_hold_and_the_end_returns_the_rest(
    db: Database, runtime: Runtime, keeper: Keeper
) -> None:
    variant = await stocked_variant(db, 30)
    created = await new_sale(db, variant, 20)
    for customer in ("cus_a", "cus_b", "cus_c"):
        await join(db, keeper, created.id, customer, START)
    assert (await admit(db, keeper, created.id, START)).admitted == 3
    token = (await state(db, keeper, created.id, "cus_a", START)).admission_token
    assert token is not None

    async with db.transaction() as uow:
        units = await service.take_admitted_unit(
            uow, keeper.secret_key, token, "cus_a", START + timedelta(seconds=5)
        )
        assert units.units == 1 and units.price == 4999
        bought = await service.mark_purchased(
            uow, keeper.gate, created.id, "cus_a", [(variant, 1)], reference="ord_1"
        )
    assert bought.lines == ((variant, 1),)
    async with db.transaction() as uow:
        assert await service.return_unit(uow, keeper.gate, created.id, "cus_b") == 1
    after = await sale(db, created.id)
    assert (after.sold, after.held, after.remaining) == (1, 1, 18)
    assert (await state(db, keeper, created.id, "cus_a", START)).state == "purchased"
    assert (await state(db, keeper, created.id, "cus_b", START)).state == "expired"
    await ledger_clean(db)

    async with db.transaction() as uow:
        ended = await service.end_sale(uow, keeper.gate, created.id, now=START + timedelta(hours=1))
    assert ended.status == "ended" and ended.end_reason == "staff"
    assert await available(db, variant) == 29  # everything but the unit sold
    assert await keeper.gate.remaining(created.id) is None
    assert (await state(db, keeper, created.id, "cus_c", START)).state == "expired"
    await ledger_clean(db)
    async with db.transaction() as uow:  # ending again changes nothing
        again = await service.end_sale(uow, keeper.gate, created.id)
    assert again.ended_at == ended.ended_at


async def test_the_worker_ends_sales_past_their_end(db: Database, runtime: Runtime) -> None:
    variant = await stocked_variant(db, 10)
    created = await new_sale(db, variant, 10)
    assert await service.watch_sales(runtime, now=START - timedelta(minutes=1)) == 0
    await service.watch_sales(runtime, now=END + timedelta(seconds=1))
    ended = await sale(db, created.id)
    assert ended.status == "ended" and ended.end_reason == "time"
    assert await available(db, variant) == 10
    await ledger_clean(db)


async def test_a_variant_sold_out_in_the_sale_is_refused(db: Database, keeper: Keeper) -> None:
    first = await stocked_variant(db, 5)
    second = await stocked_variant(db, 5)
    async with db.transaction() as uow:
        created = await service.schedule_sale(
            uow,
            service.NewSale(
                title="Two sizes",
                variants=[(first, 1), (second, 2)],
                price=1000,
                currency="EUR",
                starts_at=START,
                ends_at=END,
                admission_rate=6000,
            ),
            now=START - timedelta(hours=1),
        )
    for customer in ("cus_a", "cus_b"):
        await join(db, keeper, created.id, customer, START)
    await admit(db, keeper, created.id, START)
    async with db.transaction() as uow:
        await service.mark_purchased(uow, keeper.gate, created.id, "cus_a", [(first, 1)])
    with pytest.raises(Problem) as refused:  # the refusal's transaction rolls back
        async with db.transaction() as uow:
            await service.mark_purchased(uow, keeper.gate, created.id, "cus_b", [(first, 1)])
    assert refused.value.code == "variant_sold_out"
    async with db.transaction() as uow:
        await service.mark_purchased(uow, keeper.gate, created.id, "cus_b", [(second, 1)])
    await ledger_clean(db)
