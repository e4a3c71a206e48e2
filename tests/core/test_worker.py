"""The worker sleeps until something happens, and still delivers every event.

Three ways an event reaches a sleeping worker: a transaction of the same process wakes it at
commit; on PostgreSQL, a commit by any other process signals it (the outbox trigger's NOTIFY);
otherwise (SQLite with the worker in another process) its poll sees the database files change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import insert

from mercato import events, worker
from mercato.db import utcnow
from mercato.events import Consumer, Event, OutboxEvent
from mercato.ids import new_id
from mercato.runtime import Runtime
from mercato.settings import Settings

# Generous: the point is that the event arrives without anything else happening, not how
# fast (the worker's own pace is a benchmark's business).
ARRIVES_WITHIN = 20.0


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, poll_seconds: float
) -> AsyncIterator[tuple[Runtime, asyncio.Queue[Event]]]:
    """A worker over its own runtime whose only consumer puts ``Ping`` events on a queue."""
    runtime = Runtime.from_settings(
        settings.model_copy(update={"worker_idle_poll_seconds": poll_seconds})
    )
    got: asyncio.Queue[Event] = asyncio.Queue()

    async def handle(_runtime: Runtime, event: Event) -> None:
        await got.put(event)

    saved = dict(events.dispatcher.consumers)
    events.dispatcher.consumers.clear()
    events.dispatcher.register(Consumer.of("test-ping", ["Ping"], handle))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(runtime, stop))
    try:
        await asyncio.sleep(0.2)  # let it go to sleep
        yield runtime, got
    finally:
        stop.set()
        await task
        events.dispatcher.consumers.clear()
        events.dispatcher.consumers.update(saved)
        await runtime.close()


# With the fallback poll slowed down to ten minutes, only a wake-up can deliver in time.
NO_POLL = 600.0


async def test_a_commit_in_this_process_wakes_the_worker(settings: Settings) -> None:
    async with running_worker(settings, NO_POLL) as (runtime, got):
        async with runtime.db.transaction() as uow:
            await events.publish(uow, "Ping", "a1", {"n": 1})
        event = await asyncio.wait_for(got.get(), ARRIVES_WITHIN)
    assert event.payload == {"n": 1}


async def test_a_commit_elsewhere_reaches_the_worker(backend: str, settings: Settings) -> None:
    """Written behind the worker's back (as another process would): on PostgreSQL the NOTIFY
    wakes it (the poll is off); on SQLite its half-second poll sees the files change."""
    poll = NO_POLL if backend == "postgresql" else 0.5
    async with running_worker(settings, poll) as (_runtime, got):
        other = Runtime.from_settings(settings)
        try:
            async with other.db.raw_connection() as conn:
                await conn.execute(
                    insert(OutboxEvent.__table__),  # type: ignore[arg-type]
                    [
                        {
                            "id": new_id("evt"),
                            "type": "Ping",
                            "aggregate_id": "a2",
                            "payload": {"n": 2},
                            "occurred_at": utcnow(),
                        }
                    ],
                )
        finally:
            await other.close()
        event = await asyncio.wait_for(got.get(), ARRIVES_WITHIN)
    assert event.payload == {"n": 2}


async def test_an_idle_worker_runs_no_query_between_its_jobs(
    settings: Settings, backend: str
) -> None:
    """With nothing happening, the outbox costs a stat (SQLite) or nothing (PostgreSQL, which
    signals): no query is run to find out there is nothing to do."""
    runtime = Runtime.from_settings(settings.model_copy(update={"worker_idle_poll_seconds": 0.05}))
    outbox = worker._Outbox(runtime, asyncio.Event())
    try:
        assert await outbox.due() is True  # the first look reads the newest event number
        outbox.next_poll = 0.0
        await outbox.due()  # (opening the first connection may touch the files once)
        queries = 0
        original = runtime.db.transaction

        def counting() -> object:
            nonlocal queries
            queries += 1
            return original()

        runtime.db.transaction = counting  # type: ignore[method-assign]
        for _ in range(5):
            outbox.next_poll = 0.0
            assert await outbox.due() is False
        assert queries == (0 if backend == "sqlite" else 5)
    finally:
        await runtime.close()


async def test_a_job_of_its_own_loop_runs_while_a_delivery_is_stuck(settings: Settings) -> None:
    """A consumer that takes its time (here: until the job has run) holds up the outbox's loop
    and the jobs that take turns with it, never a job marked ``own_loop``."""
    ran = asyncio.Event()
    stuck = asyncio.Event()

    async def job(_runtime: Runtime) -> int:
        ran.set()
        return 1

    async def slow(_runtime: Runtime, _event: Event) -> None:
        stuck.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ran.wait(), 3 * ARRIVES_WITHIN)

    saved_jobs = dict(worker._JOBS)
    saved = dict(events.dispatcher.consumers)
    events.dispatcher.consumers.clear()
    events.dispatcher.register(Consumer.of("test-slow", ["Ping"], slow))
    worker._JOBS.clear()
    worker.register(
        worker.Job("test.own", NO_POLL, job, channel="test_own", claimed=False, own_loop=True)
    )
    runtime = Runtime.from_settings(settings.model_copy(update={"worker_idle_poll_seconds": 600}))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(runtime, stop))
    try:
        await asyncio.wait_for(ran.wait(), ARRIVES_WITHIN)  # its first run, at the start
        ran.clear()
        async with runtime.db.transaction() as uow:
            await events.publish(uow, "Ping", "a3", {"n": 3})
        await asyncio.wait_for(stuck.wait(), ARRIVES_WITHIN)
        async with runtime.db.transaction() as uow:
            await worker.signal(uow, "test_own")
        # The delivery waits for the job: it only ends if the job ran beside it.
        await asyncio.wait_for(ran.wait(), ARRIVES_WITHIN)
    finally:
        stop.set()
        await asyncio.wait_for(task, ARRIVES_WITHIN)
        worker._JOBS.clear()
        worker._JOBS.update(saved_jobs)
        events.dispatcher.consumers.clear()
        events.dispatcher.consumers.update(saved)
        await runtime.close()
