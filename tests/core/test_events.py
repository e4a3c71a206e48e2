"""The outbox: events are written with the change, delivered at least once per consumer."""

from __future__ import annotations

from sqlalchemy import func, select

from mercato.db import Database
from mercato.events import (
    Consumer,
    Dispatcher,
    Event,
    OutboxDelivery,
    OutboxEvent,
    publish,
    publish_many,
)
from mercato.runtime import Runtime


async def test_event_rolls_back_with_its_transaction(db: Database) -> None:
    class Boom(Exception):
        pass

    try:
        async with db.transaction() as uow:
            await publish(uow, "ProductUpdated", "prd_1", {"title": "x"})
            raise Boom
    except Boom:
        pass
    async with db.transaction() as uow:
        assert await uow.scalar(select(func.count()).select_from(OutboxEvent)) == 0


async def test_each_consumer_gets_each_event_once(runtime: Runtime, db: Database) -> None:
    async with db.transaction() as uow:
        await publish(uow, "A", "x1", {"n": 1})
        await publish_many(uow, [("A", "x2", {"n": 2}), ("B", "x3", {"n": 3})])

    seen: dict[str, list[int]] = {"first": [], "second": []}

    async def first(_rt: Runtime, ev: Event) -> None:
        seen["first"].append(ev.payload["n"])

    async def second(_rt: Runtime, ev: Event) -> None:
        seen["second"].append(ev.payload["n"])

    dispatcher = Dispatcher()
    dispatcher.register(Consumer.of("first", ["A"], first))
    dispatcher.register(Consumer.of("second", ["A", "B"], second))
    assert await dispatcher.dispatch_once(runtime, only=["first"]) == 2
    assert seen == {"first": [1, 2], "second": []}
    assert await dispatcher.dispatch_once(runtime) == 3
    assert await dispatcher.dispatch_once(runtime) == 0
    assert seen == {"first": [1, 2], "second": [1, 2, 3]}


async def test_failing_consumer_retries_in_order_without_blocking_others(
    runtime: Runtime, db: Database
) -> None:
    async with db.transaction() as uow:
        await publish_many(uow, [("A", "x", {"n": n}) for n in range(3)])

    flaky_seen: list[int] = []
    steady_seen: list[int] = []
    fail_once = {1}

    async def flaky(_rt: Runtime, ev: Event) -> None:
        n = ev.payload["n"]
        if n in fail_once:
            fail_once.discard(n)
            raise RuntimeError("receiver down")
        flaky_seen.append(n)

    async def steady(_rt: Runtime, ev: Event) -> None:
        steady_seen.append(ev.payload["n"])

    dispatcher = Dispatcher()
    dispatcher.register(Consumer.of("flaky", ["A"], flaky))
    dispatcher.register(Consumer.of("steady", ["A"], steady))
    await dispatcher.dispatch_once(runtime)
    assert flaky_seen == [0]
    assert steady_seen == [0, 1, 2]
    await dispatcher.dispatch_once(runtime)
    assert flaky_seen == [0, 1, 2]
    async with db.transaction() as uow:
        delivered = await uow.scalar(select(func.count()).select_from(OutboxDelivery))
    assert delivered == 6
