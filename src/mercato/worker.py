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

* A job with a ``channel`` also runs as soon as someone signals that channel (:func:`signal`
  in the transaction that made work for it: ``NOTIFY`` on PostgreSQL, at once in process), so
  a queue is drained promptly while its interval stays a slow safety net.

A failing job is logged and retried on its next turn; it never stops the loop.

**Several workers.** Any number of ``mercato worker`` processes may run against one database.
A job runs in one of them at a time: the runner holds the job's claim (:mod:`mercato.claims`)
while it runs, and writes when the job is next due on the claim, so the workers split a job's
turns rather than each running every one. A worker that finds the claim taken moves on and
looks again when the job is next due (or after a second, when it was woken for that job). The
outbox consumers are claimed the same way (see :mod:`mercato.events`). A job marked
``claimed=False`` is this host's own (the search index's sync) and runs in every worker, where
its own lock decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text

from mercato import events, workflows
from mercato.claims import Claimant
from mercato.db import Listener, UnitOfWork, utcnow
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
    channel: str | None = None
    """Also run at once when :func:`signal` is called for this channel (any process)."""
    claimed: bool = True
    """Run by one worker of the shop at a time (False: run by every worker: each host's own
    work, such as feeding this host's search index, or work that shares itself out, such as
    the flash-sale checkout, whose batches claim their purchases with ``SKIP LOCKED``)."""
    own_loop: bool = False
    """Run in a loop of its own beside the outbox's, so that a long delivery pass or another
    job never delays it (the flash-sale checkout: buyers are waiting on every pass)."""

    @property
    def claim(self) -> str:
        return f"job:{self.name}"


_JOBS: dict[str, Job] = {}


def register(job: Job) -> None:
    _JOBS[job.name] = job


_SIGNALLED: dict[str, set[Callable[[], None]]] = {}


async def signal(uow: UnitOfWork, channel: str) -> None:
    """Make the jobs of ``channel`` due once ``uow`` commits: a ``NOTIFY`` on PostgreSQL (sent
    by the server at the commit, to every process), and this process's own workers at once."""
    if not uow.is_sqlite:
        await uow.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})
    if _SIGNALLED.get(channel) and not uow.info.get(("signal", channel)):
        uow.info[("signal", channel)] = True
        uow.after_commit(lambda: poke(channel))


def poke(channel: str) -> None:
    """Make the jobs of ``channel`` due in this process now (a job with more work left)."""
    for callback in list(_SIGNALLED.get(channel, ())):
        callback()


async def _recover_workflows(runtime: Runtime) -> int:
    return await workflows.recover(runtime)


CORE_JOBS = (Job("workflows.recover", 15.0, _recover_workflows),)


def jobs() -> list[Job]:
    """The core jobs and every job the modules registered (see ``modules.wire``)."""
    return [*CORE_JOBS, *_JOBS.values()]


BUSY_RETRY = 1.0
"""Seconds before a worker woken for a job that another worker was running looks again."""


async def run_job(runtime: Runtime, job: Job, *, due_only: bool = False) -> int | None:
    """Run ``job`` once under its claim; how much work it did, or None when another worker is
    running it (or, with ``due_only``, when the shop does not want it run yet)."""
    if not job.claimed:
        return await job.func(runtime)
    claimant = Claimant(runtime.db, runtime.settings.worker_lease_seconds)
    async with claimant.holding(job.claim, due_only=due_only) as held:
        if held is None:
            return None
        try:
            return await job.func(runtime)
        finally:
            held.due_at = utcnow() + timedelta(seconds=job.interval)


async def _next_look(runtime: Runtime, job: Job, woken: bool) -> float:
    """Seconds until a worker that did not get ``job`` should look again: when the shop next
    wants it, or soon when this worker was woken for it (the runner may have missed that)."""
    if not woken:
        claimant = Claimant(runtime.db, runtime.settings.worker_lease_seconds)
        state = await claimant.state(job.claim)
        if state is not None and state.due_at is not None:
            wait = (state.due_at - utcnow()).total_seconds()
            if wait > 0:
                return min(wait, job.interval)
    return min(BUSY_RETRY, job.interval)


async def run_once(runtime: Runtime) -> dict[str, int]:
    """Deliver the outbox, then run every job once (tests and ``mercato worker --once``); a job
    another worker is running at that moment counts as -1."""
    done: dict[str, int] = {"outbox": await events.dispatcher.dispatch_once(runtime)}
    for j in jobs():
        ran = await run_job(runtime, j)
        done[j.name] = -1 if ran is None else ran
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
    """Deliver the outbox and run the jobs until ``stop`` is set: the outbox and most jobs take
    turns in one loop; a job marked ``own_loop`` runs in a loop of its own beside it."""
    all_jobs = jobs()
    shared = [j for j in all_jobs if not j.own_loop]
    async with asyncio.TaskGroup() as loops:
        loops.create_task(_run_loop(runtime, stop, shared, outbox=True))
        for j in all_jobs:
            if j.own_loop:
                loops.create_task(_run_loop(runtime, stop, [j], outbox=False))


async def _run_loop(
    runtime: Runtime, stop: asyncio.Event, loop_jobs: list[Job], *, outbox: bool
) -> None:
    next_run = dict.fromkeys((j.name for j in loop_jobs), 0.0)
    wake = events.waker() if outbox else asyncio.Event()
    box = _Outbox(runtime, wake) if outbox else None
    channels = _Channels(runtime, [j for j in loop_jobs if j.channel], next_run)
    owed: set[str] = set()  # woken for these, but another worker was running them
    try:
        while not stop.is_set():
            delivered = 0
            if box is not None:
                await box.listen()
            await channels.listen()
            try:
                if box is not None and await box.due():
                    delivered = await events.dispatcher.dispatch_once(runtime)
                    box.delivered(delivered)
            except Exception:
                log.exception("outbox delivery failed")
            channels.poked.clear()
            now = time.monotonic()
            for j in loop_jobs:
                if now < next_run[j.name] and not (delivered and j.after_delivery):
                    continue
                woken = bool(delivered and j.after_delivery) or j.name in channels.pending
                woken = woken or j.name in owed
                channels.pending.discard(j.name)
                owed.discard(j.name)
                wait = j.interval
                try:
                    if await run_job(runtime, j, due_only=not woken) is None:
                        wait = await _next_look(runtime, j, woken)
                        if woken:
                            owed.add(j.name)
                except Exception:
                    log.exception("job %s failed", j.name)
                next_run[j.name] = time.monotonic() + wait
                channels.again_if_signalled(j.name)
            if wake.is_set() or channels.poked.is_set():
                continue
            now = time.monotonic()
            polls = [box.next_poll - now] if box is not None else []
            sleep = min([*polls, *(t - now for t in next_run.values())])
            if sleep <= 0:
                continue
            waiters = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(wake.wait()),
                asyncio.ensure_future(channels.poked.wait()),
            ]
            try:
                await asyncio.wait(waiters, timeout=sleep, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await w
    finally:
        if box is not None:
            events.drop_waker(wake)
            await box.close()
        await channels.close()


class _Channels:
    """Jobs woken by a channel: a ``LISTEN`` per channel on PostgreSQL, and in process."""

    def __init__(self, runtime: Runtime, woken: list[Job], next_run: dict[str, float]) -> None:
        self.runtime = runtime
        self.by_channel: dict[str, list[str]] = {}
        for j in woken:
            assert j.channel is not None
            self.by_channel.setdefault(j.channel, []).append(j.name)
        self.next_run = next_run
        self.poked = asyncio.Event()
        self.pending: set[str] = set()
        self.listeners: dict[str, Listener] = {}
        self.next_listen = 0.0
        self.callbacks = {c: self._callback(c) for c in self.by_channel}
        for channel, callback in self.callbacks.items():
            _SIGNALLED.setdefault(channel, set()).add(callback)

    def _callback(self, channel: str) -> Callable[[], None]:
        def due_now() -> None:
            for name in self.by_channel[channel]:
                self.next_run[name] = 0.0
                self.pending.add(name)
            self.poked.set()

        return due_now

    def again_if_signalled(self, name: str) -> None:
        """A signal that came while the job ran: run it again at once (its work may have been
        committed just after the job looked)."""
        if name in self.pending:
            self.next_run[name] = 0.0
            self.poked.set()

    async def listen(self) -> None:
        if not self.by_channel or self.runtime.db.is_sqlite:
            return
        if all(c in self.listeners and self.listeners[c].alive for c in self.by_channel):
            return
        now = time.monotonic()
        if now < self.next_listen:
            return
        self.next_listen = now + 10.0
        for channel, callback in self.callbacks.items():
            old = self.listeners.pop(channel, None)
            if old is not None and old.alive:
                self.listeners[channel] = old
                continue
            if old is not None:
                await old.close()
            listener = await self.runtime.db.listen(channel, callback)
            if listener is not None:
                self.listeners[channel] = listener

    async def close(self) -> None:
        for channel, callback in self.callbacks.items():
            _SIGNALLED.get(channel, set()).discard(callback)
        for listener in self.listeners.values():
            await listener.close()
