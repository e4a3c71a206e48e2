"""The background worker: outbox delivery, workflow recovery and each module's periodic jobs.

Modules declare their jobs as data (``JOBS`` in their ``events.py``); ``modules.wire`` registers
them here. The loop sleeps until the next thing is due:

* **Outbox delivery** runs when a transaction of this process committed events (an in-process
  wake-up), when PostgreSQL signals that another process did (``LISTEN mercato_outbox``), and
  otherwise on a poll (``worker_idle_poll_seconds``; how a SQLite shop with a separate worker
  process learns of new events) that first looks whether the database files changed at all
  (a ``stat``), and only then asks for the newest event's number.
* **Jobs** run on their interval; a job marked ``after_delivery`` also runs right after the
  outbox delivered something (the search index sync, the mail and webhook senders), so a
  change travels end to end in well under a second while an idle shop does next to nothing.

A failing job is logged and retried on its next turn; it never stops the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mercato import events, workflows
from mercato.db import Listener
from mercato.runtime import Runtime

log = logging.getLogger("mercato.worker")

JobFunc = Callable[[Runtime], Awaitable[int]]


@dataclass(frozen=True)
class Job:
    """A periodic job: ``async def f(runtime) -> int`` (how much work it did)."""

    name: str
    interval: float
    func: JobFunc
    after_delivery: bool = False
    """Also run right after an outbox pass that delivered events."""


_JOBS: dict[str, Job] = {}


def register(job: Job) -> None:
    _JOBS[job.name] = job


async def _recover_workflows(runtime: Runtime) -> int:
    return await workflows.recover(runtime)


CORE_JOBS = (Job("workflows.recover", 15.0, _recover_workflows),)


def jobs() -> list[Job]:
    """The core jobs and every job the modules registered (see ``modules.wire``)."""
    return [*CORE_JOBS, *_JOBS.values()]


async def run_once(runtime: Runtime) -> dict[str, int]:
    """Deliver the outbox, then run every job once (tests and ``mercato worker --once``)."""
    done: dict[str, int] = {"outbox": await events.dispatcher.dispatch_once(runtime)}
    for j in jobs():
        done[j.name] = await j.func(runtime)
    return done


class _Outbox:
    """When to deliver the outbox: woken in process or by PostgreSQL, else a slow cheap poll."""

    def __init__(self, runtime: Runtime, wake: asyncio.Event) -> None:
        self.runtime = runtime
        self.wake = wake
        self.seen = -1
        self.marker: tuple[int, ...] | None = None
        self.listener: Listener | None = None
        self.next_listen = 0.0
        self.next_poll = 0.0

    async def listen(self) -> None:
        if self.listener is not None and self.listener.alive:
            return
        now = time.monotonic()
        if now < self.next_listen:
            return
        self.next_listen = now + 10.0
        if self.listener is not None:
            await self.listener.close()
        self.listener = await self.runtime.db.listen(events.OUTBOX_CHANNEL, self.wake.set)

    def poll_interval(self) -> float:
        idle = self.runtime.settings.worker_idle_poll_seconds
        # With PostgreSQL's signal the poll is only a safety net.
        return idle * 10 if self.listener is not None and self.listener.alive else idle

    async def due(self) -> bool:
        """Whether to run a delivery pass now."""
        if self.wake.is_set():
            self.wake.clear()
            return True
        now = time.monotonic()
        if now < self.next_poll:
            return False
        self.next_poll = now + self.poll_interval()
        marker = self.runtime.db.write_marker()
        if marker is not None and marker == self.marker:
            return False  # nobody committed anything since the last look
        self.marker = marker
        async with self.runtime.db.transaction() as uow:
            newest = await events.last_seq(uow)
        changed = newest != self.seen
        self.seen = newest
        return changed

    def delivered(self, count: int) -> None:
        # More may be waiting behind a full batch: go again at once.
        if count:
            self.wake.set()

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()


async def run_forever(runtime: Runtime, stop: asyncio.Event) -> None:
    all_jobs = jobs()
    next_run = dict.fromkeys((j.name for j in all_jobs), 0.0)
    wake = events.waker()
    outbox = _Outbox(runtime, wake)
    try:
        while not stop.is_set():
            await outbox.listen()
            delivered = 0
            try:
                if await outbox.due():
                    delivered = await events.dispatcher.dispatch_once(runtime)
                    outbox.delivered(delivered)
            except Exception:
                log.exception("outbox delivery failed")
            now = time.monotonic()
            for j in all_jobs:
                if now < next_run[j.name] and not (delivered and j.after_delivery):
                    continue
                try:
                    await j.func(runtime)
                except Exception:
                    log.exception("job %s failed", j.name)
                next_run[j.name] = time.monotonic() + j.interval
            if wake.is_set():
                continue
            now = time.monotonic()
            sleep = min([outbox.next_poll - now, *(t - now for t in next_run.values())])
            if sleep <= 0:
                continue
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
            try:
                await asyncio.wait(waiters, timeout=sleep, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await w
    finally:
        events.drop_waker(wake)
        await outbox.close()
