"""Running workflows: starting a run, driving its steps, compensating, replays and recovery
(the rules are in the package's docstring)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.logs import REQUEST_ID_KEY, bound_request_id, current_request_id
from mercato.metrics import WORKFLOW_OUTCOMES
from mercato.problems import Problem
from mercato.workflows.definitions import (
    RetryLater,
    S,
    Step,
    StepContext,
    StepFunc,
    Workflow,
    definition,
)
from mercato.workflows.runs import (
    ACTIVE,
    RUNS,
    RunInfo,
    default_in_progress,
    find_run,
    get_run,
    idempotency_conflict,
    problem_from_json,
    problem_to_json,
)

if TYPE_CHECKING:
    from mercato.runtime import Runtime

log = logging.getLogger("mercato.workflows")


class _Moved(Exception):
    """The run's row is not at the version this runner read: someone else took it over."""


class _Replay(Exception):
    """The key already names a run: the request is a replay of it."""

    def __init__(self, run: RunInfo) -> None:
        super().__init__(run.id)
        self.run = run


class _Refused(Exception):
    """The first step refused; its transaction was rolled back (the refusal is recorded)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.code)
        self.problem = problem


@dataclass
class _Run(Generic[S]):
    """A run as its current runner holds it."""

    workflow: Workflow[S]
    id: str
    key: str
    version: int
    status: str
    index: int
    """Running: the next step to run. Compensating: the next step to compensate."""
    state: S
    dumped: dict[str, Any]
    error: dict[str, Any] | None
    attempts: int
    memo: dict[str, Any]
    resuming: bool
    result: dict[str, Any] | None = None
    request_id: str | None = field(default_factory=current_request_id)
    """The request that started the run: kept on its row, bound again when it is resumed."""
    compensated: bool = False
    """Some step was undone (a failed end then counts as ``compensated``)."""

    def context(self, runtime: Runtime, uow: UnitOfWork | None) -> StepContext:
        return StepContext(
            runtime=runtime,
            run_id=self.id,
            key=self.key,
            attempt=self.attempts,
            resuming=self.resuming,
            memo=self.memo,
            _uow=uow,
        )


_WRITES: dict[tuple[str, ...], Any] = {}


def _write_statement(columns: tuple[str, ...]) -> Any:
    """``UPDATE workflow_runs SET … WHERE id = :id AND version = :v`` for one set of columns,
    built once: a checkout runs few statements, and building them is much of their cost."""
    statement = _WRITES.get(columns)
    if statement is None:
        statement = (
            update(RUNS)
            .where(RUNS.c.id == bindparam("w_id"), RUNS.c.version == bindparam("w_version"))
            .values({c: bindparam(c) for c in columns})
        )
        _WRITES[columns] = statement
    return statement


def _stored(run: _Run[Any], state: dict[str, Any]) -> dict[str, Any]:
    """The state as the row keeps it: with the request id (stripped again on reading)."""
    return {**state, REQUEST_ID_KEY: run.request_id} if run.request_id is not None else state


def _count_outcome(uow: UnitOfWork, run: _Run[Any], status: str | None) -> None:
    if status == "completed":
        outcome = "completed"
    elif status == "failed":
        outcome = "compensated" if run.compensated else "failed"
    else:
        return
    uow.after_commit(WORKFLOW_OUTCOMES.labels(run.workflow.name, outcome).inc)


async def _write(uow: UnitOfWork, run: _Run[Any], **values: Any) -> None:
    """Move the run on, conditional on the version this runner read (raises :class:`_Moved`)."""
    now = utcnow()
    values.setdefault("lease_until", now + timedelta(seconds=run.workflow.lease_seconds))
    values["updated_at"] = now
    values["version"] = run.version + 1
    if "state" not in values:
        dumped = run.state.model_dump(mode="json")
        if dumped != run.dumped:
            values["state"] = dumped
    state = values.get("state")
    if state is not None:
        values["state"] = _stored(run, state)
    columns = tuple(sorted(values))
    done = await uow.changed(
        _write_statement(columns), {**values, "w_id": run.id, "w_version": run.version}
    )
    if done != 1:
        raise _Moved(run.id)
    run.version += 1
    if state is not None:
        run.dumped = state
    if "status" in values:
        run.status = values["status"]
        _count_outcome(uow, run, values["status"])


def _progress_values(run: _Run[Any], next_index: int) -> dict[str, Any]:
    wf = run.workflow
    if next_index >= len(wf.steps):
        run.result = wf.result(run.state)
        return {"status": "completed", "step": "", "result": run.result}
    values: dict[str, Any] = {"step": wf.steps[next_index].name}
    if run.status != "running":
        values["status"] = "running"
    return values


_INSERTS: dict[str, Any] = {}


def _insert_statement(dialect: str) -> Any:
    statement = _INSERTS.get(dialect)
    if statement is None:
        ins = postgresql.insert(RUNS) if dialect == "postgresql" else sqlite.insert(RUNS)
        statement = ins.on_conflict_do_nothing(index_elements=[RUNS.c.workflow, RUNS.c.key])
        _INSERTS[dialect] = statement
    return statement


async def _insert(uow: UnitOfWork, run: _Run[Any], values: Mapping[str, Any]) -> bool:
    now = utcnow()
    row = {
        "id": run.id,
        "workflow": run.workflow.name,
        "key": run.key,
        "status": "running",
        "step": "",
        "state": _stored(run, run.dumped),
        "fingerprint": None,
        "error": None,
        "result": None,
        "attempts": 1,
        "version": run.version,
        "lease_until": now + timedelta(seconds=run.workflow.lease_seconds),
        "created_at": now,
        "updated_at": now,
        **values,
    }
    inserted = await uow.changed(_insert_statement(uow.dialect.name), row) == 1
    if inserted:
        _count_outcome(uow, run, row["status"])
    return inserted


KeyFunc = Callable[[UnitOfWork], Awaitable[str]]
Prepare = Callable[[UnitOfWork, str], Awaitable[S]]


async def start(
    runtime: Runtime,
    workflow: Workflow[S],
    *,
    key: str | KeyFunc,
    prepare: Prepare[S],
    fingerprint: str | None = None,
    memo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start a run of ``workflow`` for ``key`` (or replay the run the key already names) and
    drive it to its end; returns its result, or raises the problem it failed with.

    One transaction does it all up to the first step's end: ``key`` (a string, or a function
    of the unit of work, e.g. authenticating the caller first), ``prepare`` (reads and checks
    the input and builds the initial state; a problem raised here writes nothing), the first
    step, and the run's row. ``fingerprint`` says what the request was: a replay with another
    fingerprint is 422 ``idempotency_conflict``.
    """
    run_id = new_id(workflow.id_prefix)
    memo = memo if memo is not None else {}
    first = workflow.steps[0]
    holder: dict[str, Any] = {}

    async def begin(uow: UnitOfWork) -> _Run[S]:
        run_key = key if isinstance(key, str) else await key(uow)
        holder["key"] = run_key
        try:
            state = await prepare(uow, run_id)
        except Problem:
            # A replay finds its run even when its input has changed since (a checkout's cart
            # emptied by the very order it placed); only a new key gets the problem.
            existing = await find_run(uow, workflow.name, run_key)
            if existing is not None:
                raise _Replay(existing) from None
            raise
        run = _Run(
            workflow=workflow,
            id=run_id,
            key=run_key,
            version=1,
            status="running",
            index=0,
            state=state,
            dumped=state.model_dump(mode="json"),
            error=None,
            attempts=1,
            memo=memo,
            resuming=False,
        )
        holder["run"] = run
        values: dict[str, Any] = {"fingerprint": fingerprint, "step": first.name}
        inserted = False

        async def insert() -> None:
            nonlocal inserted
            if first.transactional:
                values.update(_progress_values(run, 1))
                run.dumped = state.model_dump(mode="json")
            if not await _insert(uow, run, values):
                existing = await find_run(uow, workflow.name, run_key)
                assert existing is not None, "the key's row was committed before it gave way"
                raise _Replay(existing)
            inserted = True

        if first.transactional:
            ctx = run.context(runtime, uow)
            ctx._record = insert
            try:
                try:
                    await first.run(ctx, state)
                except RetryLater as later:
                    raise later.problem from None
            except Problem as problem:
                if workflow.remember_refusals:
                    raise _Refused(problem) from problem
                raise
            run.index = 1
        if not inserted:
            await insert()
        elif state.model_dump(mode="json") != run.dumped:
            await _write(uow, run)  # what the step changed after recording its progress
        run.status = values.get("status", "running")
        return run

    try:
        run = await runtime.db.run(begin)
    except _Replay as replay:
        return await _replay(runtime, workflow, replay.run, fingerprint)
    except _Refused as refused:
        return await _record_refusal(runtime, holder, refused.problem, fingerprint)
    if run.status == "completed":
        assert run.result is not None
        return dict(run.result)
    return await _drive(runtime, run, fingerprint)


async def resume(runtime: Runtime, workflow: Workflow[Any], key: str) -> dict[str, Any] | None:
    """Drive the run ``key`` names as far as it goes now: a waiting run is taken over and
    resumed at once, a finished one answers from its row (its result, or its problem raised),
    one its runner still holds is waited for a bounded time. None when the key has no run."""
    async with runtime.db.transaction() as uow:
        run = await find_run(uow, workflow.name, key)
    if run is None:
        return None
    return await _replay(runtime, workflow, run, None)


async def _record_refusal(
    runtime: Runtime, holder: Mapping[str, Any], problem: Problem, fingerprint: str | None
) -> dict[str, Any]:
    run: _Run[Any] = holder["run"]

    async def record(uow: UnitOfWork) -> None:
        values = {
            "status": "failed",
            "step": "",
            "fingerprint": fingerprint,
            "error": problem_to_json(problem),
        }
        if not await _insert(uow, run, values):
            existing = await find_run(uow, run.workflow.name, run.key)
            assert existing is not None
            raise _Replay(existing)

    try:
        await runtime.db.run(record)
    except _Replay as replay:
        return await _replay(runtime, run.workflow, replay.run, fingerprint)
    raise problem


async def _run_step(
    runtime: Runtime, uow: UnitOfWork, run: _Run[Any], step: Step[Any], index: int
) -> None:
    """A transactional step and its progress in ``uow``: the step may record its progress
    itself (``ctx.record``) before doing more; what it changed after that is written too."""
    recorded = False

    async def record() -> None:
        nonlocal recorded
        await _write(uow, run, **_progress_values(run, index + 1))
        recorded = True

    ctx = run.context(runtime, uow)
    ctx._record = record
    await step.run(ctx, run.state)
    if not recorded:
        await record()
    elif run.state.model_dump(mode="json") != run.dumped:
        await _write(uow, run)  # what the step changed after recording


async def _drive(runtime: Runtime, run: _Run[Any], fingerprint: str | None) -> dict[str, Any]:
    """Run the remaining steps; the result, or the problem the run failed with."""
    wf = run.workflow
    external_done: list[int] = []  # external steps done by this runner, not yet recorded
    while run.index < len(wf.steps):
        index = run.index
        step = wf.steps[index]
        try:
            if step.transactional:

                async def work(uow: UnitOfWork, step: Step[Any] = step, index: int = index) -> None:
                    await _run_step(runtime, uow, run, step, index)

                await _attempt(runtime, run, work)
                external_done.clear()
            else:
                await step.run(run.context(runtime, None), run.state)
                external_done.append(index)
                if step.checkpoint or index + 1 == len(wf.steps):

                    async def record(uow: UnitOfWork, index: int = index) -> None:
                        await _write(uow, run, **_progress_values(run, index + 1))

                    await _attempt(runtime, run, record)
                    external_done.clear()
        except RetryLater as later:
            await _postpone(runtime, run, later)
            raise later.problem from None
        except Problem as problem:
            try:
                await _compensate(runtime, run, index - 1, problem)
            except _Moved:
                return await _lost(runtime, run, external_done, fingerprint)
            raise
        except _Moved:
            return await _lost(runtime, run, external_done, fingerprint)
        run.index = index + 1
    if run.result is None:  # resumed with nothing left to run
        run.result = wf.result(run.state)
    return dict(run.result)


async def _attempt(
    runtime: Runtime, run: _Run[Any], work: Callable[[UnitOfWork], Awaitable[None]]
) -> None:
    """One unit of work for the run (retried on a deadlock); the in-memory run is put back as
    it was before each attempt, so a rolled-back step leaves no trace in memory either."""
    # A plain dump is a quarter of the cost of a deep copy; it is read back only on a retry.
    before = run.state.model_dump()
    version, dumped, status = run.version, run.dumped, run.status
    tries = 0

    def restore() -> None:
        run.state = run.workflow.state.model_validate(before)
        run.version, run.dumped, run.status = version, dumped, status

    async def once(uow: UnitOfWork) -> None:
        nonlocal tries
        if tries:
            restore()
        tries += 1
        await work(uow)

    try:
        await runtime.db.run(once)
    except BaseException:
        restore()
        raise


async def _postpone(runtime: Runtime, run: _Run[Any], later: RetryLater) -> None:
    """Park the run until ``later.delay`` has passed (the worker resumes it then)."""
    log.info("workflow %s run %s: waits (%s)", run.workflow.name, run.id, later.problem.code)
    until = utcnow() + timedelta(seconds=later.delay)
    status = "waiting" if run.status == "running" else run.status

    async def park(uow: UnitOfWork) -> None:
        values: dict[str, Any] = {"lease_until": until}
        if status != run.status:
            values["status"] = status
        await _write(uow, run, **values)

    try:
        await _attempt(runtime, run, park)
    except _Moved:
        log.info("workflow %s run %s: taken over while waiting", run.workflow.name, run.id)


async def _lost(
    runtime: Runtime, run: _Run[Any], external_done: Sequence[int], fingerprint: str | None
) -> dict[str, Any]:
    """This runner's run was taken over. If it is being undone, undo what this runner did
    outside the database and the new owner cannot know of; then answer with its outcome."""
    async with runtime.db.transaction() as uow:
        now = await get_run(uow, run.id)
    assert now is not None
    log.info("workflow %s run %s: taken over (%s)", run.workflow.name, run.id, now.status)
    if now.status in ("compensating", "failed"):
        for index in reversed(external_done):
            step = run.workflow.steps[index]
            if step.compensate is not None:
                try:
                    await step.compensate(run.context(runtime, None), run.state)
                except Exception:
                    log.exception("run %s: undoing %s after a takeover failed", run.id, step.name)
    return await _replay(runtime, run.workflow, now, fingerprint, recovered=True)


async def _compensate(
    runtime: Runtime, run: _Run[Any], last_done: int, problem: Problem | None
) -> None:
    """Undo steps ``last_done`` … 0 in reverse order, then the run is ``failed``. Raises
    :class:`_Moved` when someone else took the run over meanwhile."""
    wf = run.workflow
    todo = [j for j in range(last_done, -1, -1) if wf.steps[j].compensate is not None]
    run.compensated = run.compensated or bool(todo) or run.status == "compensating"
    error = problem_to_json(problem) if problem is not None else run.error
    if problem is not None:
        log.info("workflow %s run %s: compensating (%s)", wf.name, run.id, problem.code)
    marked = run.status == "compensating"
    try:
        if not todo:

            async def fail(uow: UnitOfWork) -> None:
                await _write(uow, run, status="failed", step="", error=error)

            await _attempt(runtime, run, fail)
            return
        if not marked and not wf.steps[todo[0]].compensate_transactional:
            # Durably "being undone" before anything is undone outside the database: from here
            # on nobody may run a step forward.
            first = wf.steps[todo[0]].name

            async def mark(uow: UnitOfWork) -> None:
                await _write(uow, run, status="compensating", step=first, error=error)

            await _attempt(runtime, run, mark)
            run.error = error
        for n, j in enumerate(todo):
            step = wf.steps[j]
            compensate = step.compensate
            assert compensate is not None
            following = todo[n + 1] if n + 1 < len(todo) else None
            values: dict[str, Any] = {
                "status": "compensating" if following is not None else "failed",
                "step": wf.steps[following].name if following is not None else "",
            }
            if run.error != error:
                values["error"] = error
            if step.compensate_transactional:

                async def undo(
                    uow: UnitOfWork, compensate: StepFunc[Any] = compensate, values: Any = values
                ) -> None:
                    await compensate(run.context(runtime, uow), run.state)
                    await _write(uow, run, **values)

                await _attempt(runtime, run, undo)
                run.error = error
            else:
                await compensate(run.context(runtime, None), run.state)
                if following is None:

                    async def close(uow: UnitOfWork, values: Any = values) -> None:
                        await _write(uow, run, **values)

                    await _attempt(runtime, run, close)
                    run.error = error
            run.index = following if following is not None else -1
    except RetryLater as later:
        await _postpone(runtime, run, later)
    except Problem as refused:
        # A compensation must end up done: park the run and try again later.
        log.warning(
            "workflow %s run %s: compensation refused (%s), retried later",
            wf.name,
            run.id,
            refused.code,
        )
        await _postpone(runtime, run, RetryLater(refused, delay=60.0))


async def _replay(
    runtime: Runtime,
    workflow: Workflow[Any],
    run: RunInfo,
    fingerprint: str | None,
    *,
    recovered: bool = False,
) -> dict[str, Any]:
    """Answer a request whose key already names ``run`` from the run's row."""
    if fingerprint is not None and run.fingerprint is not None and run.fingerprint != fingerprint:
        raise idempotency_conflict()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + workflow.replay_wait_seconds
    delay = 0.02
    while True:
        if run.status == "completed":
            assert run.result is not None
            return dict(run.result)
        if run.status == "failed":
            assert run.error is not None
            raise problem_from_json(run.error)
        if not recovered and (run.status == "waiting" or run.lease_until <= utcnow()):
            # Nobody is working on it now: take it over and finish or undo it here.
            recovered = True
            resumed = await _resume(runtime, run.id, utcnow(), force=run.status == "waiting")
            if resumed is not None:
                return resumed
        elif loop.time() >= deadline:
            maker = workflow.in_progress or default_in_progress
            raise maker(run.id)
        else:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        async with runtime.db.transaction() as uow:
            found = await get_run(uow, run.id)
        assert found is not None
        run = found


# -- recovery ----------------------------------------------------------------------------------


async def _claim(runtime: Runtime, run_id: str, now: datetime, force: bool) -> RunInfo | None:
    """Take a run over (lease passed, or ``force`` for a waiting run); None if someone else
    has it."""

    async def claim(uow: UnitOfWork) -> RunInfo | None:
        found = await get_run(uow, run_id)
        if found is None or found.status not in ACTIVE:
            return None
        if found.lease_until > now and not (force and found.status == "waiting"):
            return None
        wf = definition(found.workflow)
        done = await uow.changed(
            update(RUNS)
            .where(RUNS.c.id == run_id, RUNS.c.version == found.version)
            .values(
                version=found.version + 1,
                attempts=found.attempts + 1,
                lease_until=max(now, utcnow()) + timedelta(seconds=wf.lease_seconds),
                updated_at=utcnow(),
            )
        )
        if done != 1:
            return None
        return await get_run(uow, run_id)

    return await runtime.db.run(claim)


async def _resume(
    runtime: Runtime, run_id: str, now: datetime, *, force: bool = False
) -> dict[str, Any] | None:
    """Take a run over and drive it to its end (or as far as it goes). Returns its result when
    it completed; raises its problem when it failed; None when it is not ours to run."""
    found = await _claim(runtime, run_id, now, force)
    if found is None:
        return None
    wf = definition(found.workflow)
    state = wf.state.model_validate(found.state)
    run: _Run[Any] = _Run(
        workflow=wf,
        id=found.id,
        key=found.key,
        version=found.version,
        status=found.status,
        index=wf.index(found.step) if found.step else len(wf.steps),
        state=state,
        dumped=dict(found.state),
        error=found.error,
        attempts=found.attempts,
        memo={},
        resuming=True,
        request_id=found.request_id,
    )
    with bound_request_id(found.request_id) if found.request_id else nullcontext():
        return await _resume_run(runtime, run, found)


async def _resume_run(runtime: Runtime, run: _Run[Any], found: RunInfo) -> dict[str, Any] | None:
    wf, run_id = run.workflow, run.id
    if found.status == "compensating":
        last = run.index if found.step else -1
        try:
            await _compensate(runtime, run, last, None)
        except _Moved:
            log.info("workflow %s run %s: compensation taken over", wf.name, run.id)
            return None
        async with runtime.db.transaction() as uow:
            after = await get_run(uow, run_id)
        if after is not None and after.status == "failed" and after.error is not None:
            raise problem_from_json(after.error)
        return None
    if run.status == "waiting":
        run.status = "waiting"  # the next write moves it back to running
    return await _drive(runtime, run, found.fingerprint)


async def recover(runtime: Runtime, *, now: datetime | None = None, limit: int = 100) -> int:
    """Take over every run whose lease has passed (a crashed runner, or a wait that is over)
    and drive it on; returns how many were handled. The worker job ``workflows.recover``."""
    now = now or utcnow()
    query = (
        select(RUNS.c.id)
        .where(RUNS.c.status.in_(ACTIVE), RUNS.c.lease_until <= now)
        .order_by(RUNS.c.lease_until)
        .limit(limit)
    )
    async with runtime.db.transaction() as uow:
        ids = list((await uow.execute(query)).scalars())
    handled = 0
    for run_id in ids:
        try:
            await _resume(runtime, run_id, now)
        except Problem as problem:
            log.info("workflow run %s: ended with %s", run_id, problem.code)
        except LookupError:
            log.error("workflow run %s: its workflow is not registered", run_id)
            continue
        except Exception:
            log.exception("workflow run %s: recovery failed; it will be retried", run_id)
            continue
        handled += 1
    return handled
