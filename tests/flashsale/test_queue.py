"""The waiting room: the pre-queue drawn at random at the start, first come first served
after it, one place per customer, places that lapse, admissions in order at the sale's pace,
holds that run out."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update

from mercato.db import Database
from mercato.flashsale import service
from mercato.flashsale.common import SALES
from mercato.flashsale.service import Keeper
from mercato.runtime import Runtime
from tests.flashsale.conftest import (
    START,
    FakeClock,
    admit,
    join,
    make_keeper,
    new_sale,
    sale,
    state,
    stocked_variant,
)


async def test_pre_queue_is_drawn_at_random_at_the_start_then_first_come_first_served(
    db: Database, keeper: Keeper
) -> None:
    variant = await stocked_variant(db, 5)
    created = await new_sale(db, variant, 5)
    early = [f"cus_{i:02d}" for i in range(30)]
    for i, customer in enumerate(early):
        entry = await join(db, keeper, created.id, customer, START - timedelta(seconds=30 - i))
        assert entry.position is None  # the pre-queue has no order yet
    before = await state(db, keeper, created.id, early[0], START - timedelta(seconds=1))
    assert before.state == "waiting" and before.position is None
    assert before.sale_status == "scheduled"

    # The first join after the start opens the sale: the pre-queue is numbered at random.
    late = ["cus_late_1", "cus_late_2", "cus_late_3"]
    positions = [
        (await join(db, keeper, created.id, c, START + timedelta(seconds=i))).position
        for i, c in enumerate(late)
    ]
    assert positions == [31, 32, 33]
    drawn = []
    for customer in early:
        found = await state(db, keeper, created.id, customer, START + timedelta(seconds=5))
        drawn.append(found.position)
    assert sorted(drawn) == list(range(1, 31))
    assert drawn != list(range(1, 31))  # 1 chance in 30! of failing by accident
    assert (await sale(db, created.id)).status == "live"


async def test_one_place_per_customer_across_devices(db: Database, keeper: Keeper) -> None:
    variant = await stocked_variant(db, 5)
    created = await new_sale(db, variant, 5)
    now = START + timedelta(seconds=1)
    first, second = await asyncio.gather(
        join(db, keeper, created.id, "cus_a", now), join(db, keeper, created.id, "cus_a", now)
    )
    assert first.position == second.position == 1
    again = await join(db, keeper, created.id, "cus_a", now + timedelta(seconds=3))
    assert again.position == 1
    async with db.transaction() as uow:
        assert (await service.sale_counters(uow, keeper.gate, created.id)).queued == 1
    assert (await join(db, keeper, created.id, "cus_b", now)).position == 2


async def test_a_buyer_who_stops_polling_loses_the_place(db: Database, keeper: Keeper) -> None:
    variant = await stocked_variant(db, 5)
    created = await new_sale(db, variant, 1)
    grace = keeper.grace
    await join(db, keeper, created.id, "cus_first", START)  # admitted, holds the only unit
    await admit(db, keeper, created.id, START)
    await join(db, keeper, created.id, "cus_a", START)
    polled = START + grace - timedelta(seconds=1)
    assert (await state(db, keeper, created.id, "cus_a", polled)).state == "waiting"
    # The poll just before the grace ran out kept the place for another grace period.
    kept = polled + grace - timedelta(seconds=1)
    assert (await state(db, keeper, created.id, "cus_a", kept)).state == "waiting"
    gone = kept + grace + timedelta(seconds=1)
    assert (await state(db, keeper, created.id, "cus_a", gone)).state == "expired"
    assert (await admit(db, keeper, created.id, gone)).lapsed == 1
    # Joining again queues at the back.
    back = await join(db, keeper, created.id, "cus_b", gone)
    rejoined = await join(db, keeper, created.id, "cus_a", gone)
    assert rejoined.state == "waiting" and rejoined.position > back.position


async def test_admissions_go_in_queue_order_at_the_sales_pace(
    db: Database, paced: Keeper, clock: FakeClock
) -> None:
    variant = await stocked_variant(db, 50)
    created = await new_sale(db, variant, 50, rate=60)  # one a second, bursts of five
    customers = [f"cus_{i:02d}" for i in range(20)]
    for i, customer in enumerate(customers):
        await join(db, paced, created.id, customer, START + timedelta(milliseconds=i))
    now = START + timedelta(seconds=1)
    assert (await admit(db, paced, created.id, now)).admitted == 5
    assert (await admit(db, paced, created.id, now)).admitted == 0
    clock.now += 3
    assert (await admit(db, paced, created.id, now)).admitted == 3
    states = [(await state(db, paced, created.id, c, now)).state for c in customers]
    assert states == ["admitted"] * 8 + ["waiting"] * 12
    ninth = await state(db, paced, created.id, customers[8], now)
    assert ninth.position == 9 and ninth.ahead == 0
    last = await state(db, paced, created.id, customers[-1], now)
    assert last.ahead == 11 and last.estimated_wait_seconds == 11
    # Units remain for both: each asks again when the pace reaches them (at most every 10 s).
    assert ninth.poll_after_seconds == 1
    assert last.poll_after_seconds == min(10, service.slow_poll(paced), 11)


async def test_a_hold_that_runs_out_goes_to_the_next_in_line(db: Database, keeper: Keeper) -> None:
    variant = await stocked_variant(db, 5)
    created = await new_sale(db, variant, 1)
    await join(db, keeper, created.id, "cus_a", START)
    await join(db, keeper, created.id, "cus_b", START)
    assert (await admit(db, keeper, created.id, START)).admitted == 1
    first = await state(db, keeper, created.id, "cus_a", START)
    assert first.state == "admitted" and first.units == 1 and first.admission_token
    behind = await state(db, keeper, created.id, "cus_b", START)
    # Behind the whole allocation: only a unit coming back would let cus_b in, so it asks
    # again slowly rather than every second.
    assert behind.state == "waiting" and behind.ahead == 0
    assert behind.poll_after_seconds == service.slow_poll(keeper) > 1
    # cus_b keeps polling; cus_a never buys.
    later = START
    while later < START + keeper.hold:
        later += keeper.grace / 2
        await state(db, keeper, created.id, "cus_b", later)
    result = await admit(db, keeper, created.id, later)
    assert (result.returned, result.admitted) == (1, 1)
    assert (await state(db, keeper, created.id, "cus_a", later)).state == "expired"
    assert (await state(db, keeper, created.id, "cus_b", later)).state == "admitted"
    assert (await sale(db, created.id)).held == 1


async def test_the_crowd_beyond_every_held_unit_asks_least_often(
    db: Database, keeper: Keeper
) -> None:
    from mercato.flashsale import service

    variant = await stocked_variant(db, 5)
    created = await new_sale(db, variant, 2)
    customers = ["cus_a", "cus_b", "cus_c", "cus_d", "cus_e"]
    for i, customer in enumerate(customers):
        await join(db, keeper, created.id, customer, START + timedelta(milliseconds=i))
    assert (await admit(db, keeper, created.id, START)).admitted == 2
    waiting = [await state(db, keeper, created.id, c, START) for c in customers[2:]]
    assert [w.ahead for w in waiting] == [0, 1, 2]
    # Two units held, none left: the first two in line would be let in if both came back; the
    # third would not, whatever happens to the holds, and asks least often.
    assert [w.poll_after_seconds for w in waiting] == [
        service.slow_poll(keeper),
        service.slow_poll(keeper),
        service.far_poll(keeper),
    ]
    assert service.far_poll(keeper) > service.slow_poll(keeper)
    # Often enough still to keep the place: three polls within the grace period.
    assert 3 * service.far_poll(keeper) <= keeper.grace.total_seconds()


async def test_sold_out_when_everything_is_sold(db: Database, keeper: Keeper) -> None:
    from mercato.flashsale import service

    variant = await stocked_variant(db, 5)
    created = await new_sale(db, variant, 1)
    await join(db, keeper, created.id, "cus_a", START)
    await join(db, keeper, created.id, "cus_b", START)
    await admit(db, keeper, created.id, START)
    # While the unit is held it may come back: cus_b waits.
    assert (await state(db, keeper, created.id, "cus_b", START)).state == "waiting"
    async with db.transaction() as uow:
        await service.mark_purchased(uow, keeper.gate, created.id, "cus_a", [(variant, 1)])
    assert (await state(db, keeper, created.id, "cus_b", START)).state == "sold_out"


async def test_an_old_copy_of_the_sale_is_answered_while_it_is_read_again(
    db: Database, runtime: Runtime, clock: FakeClock
) -> None:
    """In a rush a read of the sale may wait for a pooled connection: buyers are answered
    from this process's copy meanwhile, and the copy is read again in the background. Only an
    end is heard of at once (in this process)."""
    keeper = make_keeper(runtime, admit_every=0.5, clock=clock)
    variant = await stocked_variant(db, 5)
    created = await new_sale(db, variant, 2)
    first = await keeper.sale(db, created.id)
    async with db.transaction() as uow:  # behind the keeper's back, as another process would
        await uow.execute(update(SALES).where(SALES.c.id == created.id).values(title="Renamed"))
    assert (await keeper.sale(db, created.id)).title == first.title  # still fresh: no read
    clock.now += 1.0
    assert (await keeper.sale(db, created.id)).title == first.title  # old: answered at once
    for _ in range(200):  # the read in the background
        if (await keeper.sale(db, created.id)).title == "Renamed":
            break
        await asyncio.sleep(0.01)
    assert (await keeper.sale(db, created.id)).title == "Renamed"

    async with db.transaction() as uow:
        await service.end_sale(uow, keeper.gate, created.id, reason="staff")
    assert (await keeper.sale(db, created.id)).status == "ended"
