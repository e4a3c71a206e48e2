"""The background worker: outbox delivery and each module's periodic jobs.

Modules register jobs with :func:`job`; the loop runs every job on its interval and keeps going
when one fails (it is logged and retried on the next tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mercato.events import dispatcher
from mercato.modules import load_event_handlers
from mercato.runtime import Runtime

log = logging.getLogger("mercato.worker")

JobFunc = Callable[[Runtime], Awaitable[int]]


@dataclass
class Job:
    name: str
    interval: float
    func: JobFunc
    next_run: float = 0.0


_JOBS: dict[str, Job] = {}


def job(name: str, interval: float) -> Callable[[JobFunc], JobFunc]:
    """Register a periodic job: ``async def f(runtime) -> int`` (how much work it did)."""

    def register(func: JobFunc) -> JobFunc:
        _JOBS[name] = Job(name, interval, func)
        return func

    return register


async def _deliver_outbox(runtime: Runtime) -> int:
    return await dispatcher.dispatch_once(runtime)


def jobs() -> list[Job]:
    load_event_handlers()
    return [Job("outbox", 0.0, _deliver_outbox), *_JOBS.values()]


async def run_once(runtime: Runtime) -> dict[str, int]:
    """Run every job once (used by tests and by ``mercato worker --once``)."""
    done: dict[str, int] = {}
    for j in jobs():
        done[j.name] = await j.func(runtime)
    return done


async def run_forever(runtime: Runtime, stop: asyncio.Event) -> None:
    all_jobs = jobs()
    poll = runtime.settings.worker_poll_seconds
    while not stop.is_set():
        busy = False
        now = time.monotonic()
        for j in all_jobs:
            if now < j.next_run:
                continue
            try:
                busy = (await j.func(runtime)) > 0 or busy
            except Exception:
                log.exception("job %s failed", j.name)
            j.next_run = now + j.interval
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)
