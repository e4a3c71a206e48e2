"""Queued runs and group commit: many runs of one workflow driven together, their transactional
step committed for all of them in one transaction.

* :func:`enqueue` runs a workflow's first (transactional) step in the transaction that inserts
  its row, like :func:`~mercato.workflows.engine.start`, but then leaves the run ``waiting``
  in a queue instead of driving it on: the caller answers at once, a worker takes it from there.
  If no worker claims it within ``pickup_seconds``, ``workflows.recover`` drives it alone.
* :func:`drive_batch` claims up to ``limit`` queued runs (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, so several workers never claim the same run; SQLite's writers are serial anyway),
  runs their external steps concurrently (each must be idempotent by a key of its own), then
  runs the next transactional step of every one of them in **one** transaction, each inside a
  savepoint and each writing its own progress there. A run whose step refuses (or breaks) is
  rolled back to its savepoint alone and set aside; the others commit. Set-aside runs are then
  driven one by one by the ordinary engine, which runs the step again alone and compensates it
  on a refusal. Whatever remains of a run after the batched step is driven alone too.

Every guarantee of the engine holds per run: the progress row is written in the same
transaction as the step's effects (the batch's), writes are fenced by the run's version (a run
taken over meanwhile rolls back alone, in its savepoint), and a crash anywhere leaves each run
where its row says, for recovery.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.logs import bound_request_id
from mercato.problems import Problem
from mercato.workflows.definitions import RetryLater, S, Workflow
from mercato.workflows.engine import (
    Prepare,
    _attempt,
    _compensate,
    _drive,
    _insert,
    _Moved,
    _postpone,
    _progress_values,
    _Run,
    _run_step,
    _write,
)
from mercato.workflows.runs import RUNS, RunInfo, _info, find_run

if TYPE_CHECKING:
    from mercato.runtime import Runtime

log = logging.getLogger("mercato.workflows")


@dataclass(frozen=True, slots=True)
class Queued:
    """A run put in the queue, or (``existing``) the run its key named already."""

    run_id: str
    existing: RunInfo | None = None


class _Existing(Exception):
    def __init__(self, run: RunInfo) -> None:
        super().__init__(run.id)
        self.run = run


async def enqueue(
    runtime: Runtime,
    workflow: Workflow[S],
    *,
    key: str,
    prepare: Prepare[S],
    fingerprint: str | None = None,
    pickup_seconds: float = 30.0,
    also: Any = None,
) -> Queued:
    """Run ``prepare`` and the workflow's first step in one transaction with the insert of the
    run's row, ``waiting`` at the second step. A key that names a run already answers that run
    (nothing is prepared or written; the caller compares its fingerprint). A problem raised by
    ``prepare`` or the first step writes nothing. ``also(uow, run_id)``, if given, runs last in
    the same transaction (e.g. to signal the workers)."""
    first = workflow.steps[0]
    if not first.transactional or len(workflow.steps) < 2:
        raise ValueError(f"workflow {workflow.name}: a queued run starts with a transactional step")
    run_id = new_id(workflow.id_prefix)

    async def begin(uow: UnitOfWork) -> None:
        existing = await find_run(uow, workflow.name, key)
        if existing is not None:
            raise _Existing(existing)
        state = await prepare(uow, run_id)
        run = _Run(
            workflow=workflow,
            id=run_id,
            key=key,
            version=1,
            status="running",
            index=0,
            state=state,
            dumped={},
            error=None,
            attempts=1,
            memo={},
            resuming=False,
        )
        try:
            await first.run(run.context(runtime, uow), state)
        except RetryLater as later:
            raise later.problem from None
        run.dumped = state.model_dump(mode="json")
        values = {
            "fingerprint": fingerprint,
            "status": "waiting",
            "step": workflow.steps[1].name,
            "lease_until": utcnow() + timedelta(seconds=pickup_seconds),
        }
        if not await _insert(uow, run, values):
            found = await find_run(uow, workflow.name, key)
            assert found is not None, "the key's row was committed before it gave way"
            raise _Existing(found)
        if also is not None:
            await also(uow, run_id)

    try:
        await runtime.db.run(begin)
    except _Existing as existing:
        return Queued(existing.run.id, existing.run)
    return Queued(run_id)


@dataclass(frozen=True, slots=True)
class BatchResult:
    claimed: int
    committed: int
    """Runs whose batched step committed together."""
    set_aside: int
    """Runs that left the batch (a refusal, a crash, a takeover) and were handled alone."""


async def _claim(runtime: Runtime, workflow: Workflow[Any], limit: int) -> list[RunInfo]:
    """Take up to ``limit`` queued runs (never claimed yet: ``attempts = 1``), oldest first."""

    async def claim(uow: UnitOfWork) -> list[RunInfo]:
        query = (
            select(RUNS)
            .where(
                RUNS.c.workflow == workflow.name,
                RUNS.c.status == "waiting",
                RUNS.c.attempts == 1,
            )
            .order_by(RUNS.c.created_at)
            .limit(limit)
        )
        if not uow.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        rows = [_info(r) for r in await uow.execute(query)]
        if not rows:
            return []
        now = utcnow()
        await uow.execute(
            update(RUNS)
            .where(RUNS.c.id.in_([r.id for r in rows]))
            .values(
                version=RUNS.c.version + 1,
                attempts=RUNS.c.attempts + 1,
                lease_until=now + timedelta(seconds=workflow.lease_seconds),
                updated_at=now,
            )
        )
        return [
            RunInfo(**{**_as_dict(r), "version": r.version + 1, "attempts": r.attempts + 1})
            for r in rows
        ]

    return await runtime.db.run(claim)


def _as_dict(run: RunInfo) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RunInfo.__slots__}


def _held(workflow: Workflow[Any], found: RunInfo) -> _Run[Any]:
    return _Run(
        workflow=workflow,
        id=found.id,
        key=found.key,
        version=found.version,
        status=found.status,
        index=workflow.index(found.step) if found.step else len(workflow.steps),
        state=workflow.state.model_validate(found.state),
        dumped=dict(found.state),
        error=found.error,
        attempts=found.attempts,
        memo={},
        resuming=True,
        request_id=found.request_id,
    )


async def _external_steps(runtime: Runtime, run: _Run[Any]) -> bool:
    """Run the run's external steps up to its next transactional one; whether it got there."""
    with bound_request_id(run.request_id):
        return await _external_steps_of(runtime, run)


async def _external_steps_of(runtime: Runtime, run: _Run[Any]) -> bool:
    steps = run.workflow.steps
    index = run.index
    try:
        while index < len(steps) and not steps[index].transactional:
            step = steps[index]
            await step.run(run.context(runtime, None), run.state)
            if step.checkpoint:

                async def record(uow: UnitOfWork, index: int = index) -> None:
                    await _write(uow, run, **_progress_values(run, index + 1))

                await _attempt(runtime, run, record)
            index += 1
            run.index = index
    except RetryLater as later:
        await _postpone(runtime, run, later)
        return False
    except Problem as problem:
        try:
            await _compensate(runtime, run, index - 1, problem)
        except _Moved:
            log.info("workflow %s run %s: taken over while undone", run.workflow.name, run.id)
        return False
    except _Moved:
        return False
    except Exception:
        # A crash of this run only: it stays where its row says; recovery resumes it.
        log.exception("workflow %s run %s: step failed in a batch", run.workflow.name, run.id)
        return False
    return index < len(steps)


async def _group_commit(
    runtime: Runtime, runs: list[_Run[Any]]
) -> tuple[list[_Run[Any]], list[_Run[Any]]]:
    """Run the next (transactional) step of every run in one transaction, each in a savepoint
    with its own progress; (committed, set aside)."""
    before = [(r.state.model_dump(), r.version, r.dumped, r.status, r.result) for r in runs]

    def restore(n: int) -> None:
        run = runs[n]
        state, run.version, run.dumped, run.status, run.result = before[n]
        run.state = run.workflow.state.model_validate(state)

    async def work(uow: UnitOfWork) -> tuple[list[int], list[int]]:
        for n in range(len(runs)):
            restore(n)  # a retried transaction (a deadlock) starts from what was read
        done: list[int] = []
        aside: list[int] = []
        for n, run in enumerate(runs):
            try:
                async with uow.savepoint():
                    await _run_step(runtime, uow, run, run.workflow.steps[run.index], run.index)
                done.append(n)
            except _Moved:
                restore(n)  # taken over meanwhile: its new owner finishes it
            except Exception as exc:
                if not isinstance(exc, Problem | RetryLater):
                    log.warning("run %s set aside from a batch: %r", run.id, exc)
                restore(n)
                aside.append(n)
        return done, aside

    try:
        done, aside = await runtime.db.run(work)
    except BaseException:
        for n in range(len(runs)):
            restore(n)
        raise
    return [runs[n] for n in done], [runs[n] for n in aside]


async def _alone(runtime: Runtime, run: _Run[Any]) -> None:
    with bound_request_id(run.request_id):
        try:
            await _drive(runtime, run, None)
        except Problem as problem:
            log.info("workflow %s run %s: ended with %s", run.workflow.name, run.id, problem.code)
        except Exception:
            log.exception(
                "workflow %s run %s: failed; recovery resumes it", run.workflow.name, run.id
            )


async def drive_batch(
    runtime: Runtime, workflow: Workflow[Any], limit: int, *, concurrency: int | None = None
) -> BatchResult:
    """Claim up to ``limit`` queued runs and drive them (see the module's docstring); at most
    ``concurrency`` runs in their external steps at once (all of them if ``None``): each such
    step may take connections of its own, which the batch's transaction must not wait for."""
    claimed = await _claim(runtime, workflow, limit)
    if not claimed:
        return BatchResult(0, 0, 0)
    runs = [_held(workflow, found) for found in claimed]
    bound = asyncio.Semaphore(concurrency or len(runs))

    async def external(run: _Run[Any]) -> bool:
        async with bound:
            return await _external_steps(runtime, run)

    ready_flags = await asyncio.gather(*(external(r) for r in runs))
    ready = [r for r, ok in zip(runs, ready_flags, strict=True) if ok]
    committed: list[_Run[Any]] = []
    aside: list[_Run[Any]] = []
    if ready:
        try:
            committed, aside = await _group_commit(runtime, ready)
        except Exception:
            # The batch's transaction itself broke (the database went away): every run stays
            # where its row says, and recovery resumes each once its lease has passed.
            log.exception("workflow %s: a batch of %d failed", workflow.name, len(ready))
            return BatchResult(len(claimed), 0, len(ready))
    for run in committed:
        run.index += 1
    rest = [r for r in committed if r.index < len(workflow.steps)]
    await asyncio.gather(*(_alone(runtime, r) for r in [*aside, *rest]))
    return BatchResult(len(claimed), len(committed), len(aside))
