"""Durable workflows: a business process as an ordered list of steps, each with its compensation.

Every flow that spans steps or modules (checkout, cancellation, ship-and-capture,
return-and-refund…) is a :class:`Workflow`: a name, a state model (Pydantic, stored as JSON) and
an ordered tuple of :class:`Step` s. One file per workflow, read top to bottom like the business
process. The engine gives every one of them the same guarantees:

* **One row per run** (``workflow_runs``): status, the next step, the state, attempts, a lease
  and a version. Unique per (workflow, key): the key is what makes starting it idempotent (a
  customer's ``Idempotency-Key``, an order id, a shipment id).
* **A transactional step** runs inside a unit of work, and its progress (the next step, the
  state) is written *in that same transaction* by a conditional ``UPDATE … WHERE version = :v``.
  A crash before the commit leaves nothing of the step; after it, the row says it is done.
  The first step runs in the transaction that inserts the row, so starting a workflow costs one
  transaction, not two.
* **An external step** (a payment processor call) runs outside any transaction, and must be
  idempotent by a key of its own. With ``checkpoint=False`` its outcome is recorded with the
  next transactional step (one transaction less on the hot path); after a crash it simply runs
  again, with ``ctx.resuming`` set so it can look its earlier outcome up instead of redoing it.
* **A step fails** by raising a :class:`~mercato.problems.Problem`: the steps done so far are
  compensated in reverse order, then the run is ``failed`` with that problem, and the caller gets
  it. A step that cannot tell yet (a processor timeout) raises :class:`RetryLater`: the run waits
  (``waiting``) and the worker resumes it after the delay, or sooner if the same key is started
  again. Any other exception is a crash: the run stays where its row says, and recovery resumes
  it once the lease has passed.
* **Compensation** is durable too: the run is ``compensating`` (written before any external
  compensation runs), each compensation is idempotent, and a transactional one writes the
  progress in its own transaction. A compensation that fails is retried later; the run only
  becomes ``failed`` when every compensation is done.
* **Leases and fencing**: whoever runs a step holds the lease; :func:`recover` (the worker job
  ``workflows.recover``) takes over runs whose lease has passed. Every write is conditional on
  the version it read, so a runner whose run was taken over stops at its next write (its
  transaction rolls back with everything the step did), compensates what it did outside the
  database if the run is being undone, and answers with the run's outcome.
* **Replays**: starting a key that already has a run answers from the row: the stored result
  of a completed run, the stored problem of a failed one (``idempotency_conflict`` when the
  request differs), or waits a bounded time for a running one.

Tests crash a workflow at every step boundary by wrapping its steps (``tests/workflows``); no
crash hook lives here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, Database, JSONType, UnitOfWork, UTCDateTime, utcnow
from mercato.ids import new_id
from mercato.problems import Problem

if TYPE_CHECKING:
    from mercato.runtime import Runtime

log = logging.getLogger("mercato.workflows")

S = TypeVar("S", bound=BaseModel)

STATUSES = ("running", "waiting", "compensating", "completed", "failed")
ACTIVE = ("running", "waiting", "compensating")


class WorkflowRun(Base):
    __tablename__ = "workflow_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(60))
    key: Mapped[str] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(20))
    step: Mapped[str] = mapped_column(String(60))
    state: Mapped[dict[str, Any]] = mapped_column(JSONType)
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("workflow", "key"),
        Index("ix_workflow_runs_status_lease_until", "status", "lease_until"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="status"),
    )


RUNS = cast(Table, WorkflowRun.__table__)


# -- defining a workflow -----------------------------------------------------------------------


class RetryLater(Exception):
    """Raised by a step (or a compensation) that cannot finish yet, e.g. a payment processor
    that has not answered: the run waits ``delay`` seconds, then the worker resumes it. The
    live caller is answered with ``problem``."""

    def __init__(self, problem: Problem, delay: float = 30.0) -> None:
        super().__init__(problem.code)
        self.problem = problem
        self.delay = delay


@dataclass
class StepContext:
    """What a step gets besides the run's state."""

    runtime: Runtime
    run_id: str
    key: str
    attempt: int
    resuming: bool
    """True when this is not the request that started the run (recovery, or a replay that took
    over): in-memory inputs (``memo``) are gone, and an external step should look up what it
    did before rather than assume it did nothing."""
    memo: dict[str, Any]
    """In-memory inputs of the live request that are never stored (a payment token)."""
    _uow: UnitOfWork | None = None

    @property
    def uow(self) -> UnitOfWork:
        """The step's unit of work (transactional steps only)."""
        if self._uow is None:
            raise RuntimeError("an external step has no unit of work; it runs between them")
        return self._uow

    @property
    def db(self) -> Database:
        return self.runtime.db


StepFunc = Callable[[StepContext, S], Awaitable[None]]


@dataclass(frozen=True)
class Step(Generic[S]):
    name: str
    run: StepFunc[S]
    compensate: StepFunc[S] | None = None
    transactional: bool = True
    """Run inside a unit of work that also records the progress (False: an external call)."""
    checkpoint: bool = True
    """External steps only: record the progress in a transaction of its own right after the
    step (False: with the next transactional step; after a crash the step runs again)."""
    compensate_transactional: bool = True


@dataclass(frozen=True)
class Workflow(Generic[S]):
    name: str
    state: type[S]
    steps: tuple[Step[S], ...]
    result: Callable[[S], dict[str, Any]] = field(
        default=lambda state: state.model_dump(mode="json")
    )
    """The answer of a completed run, stored on its row for replays."""
    lease_seconds: float = 120.0
    """How long a runner owns a run without writing to it before recovery may take it over."""
    replay_wait_seconds: float = 15.0
    remember_refusals: bool = False
    """Record a run whose first step refused (``failed``, nothing done) so that a replay of its
    key gets the same answer (a customer's Idempotency-Key); otherwise nothing is written."""
    in_progress: Callable[[str], Problem] | None = None
    """The problem for a replay that gave up waiting (default 409 ``workflow_in_progress``)."""
    id_prefix: str = "wfr"
    """The runs' ids start with this (``chk`` makes a checkout's run id its checkout id)."""

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"workflow {self.name}: steps need unique names")

    def index(self, step: str) -> int:
        for n, s in enumerate(self.steps):
            if s.name == step:
                return n
        raise KeyError(f"workflow {self.name} has no step {step!r}")


# -- the registry (wired in mercato.modules) ---------------------------------------------------

_REGISTRY: dict[str, Workflow[Any]] = {}


def register(workflow: Workflow[Any]) -> None:
    _REGISTRY[workflow.name] = workflow


def registered() -> dict[str, Workflow[Any]]:
    return dict(_REGISTRY)


def _definition(name: str) -> Workflow[Any]:
    found = _REGISTRY.get(name)
    if found is None:
        raise LookupError(f"workflow {name!r} is not registered (see mercato.modules)")
    return found


# -- what callers see --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: str
    workflow: str
    key: str
    status: str
    step: str
    state: dict[str, Any]
    fingerprint: str | None
    error: dict[str, Any] | None
    result: dict[str, Any] | None
    attempts: int
    version: int
    lease_until: datetime
    created_at: datetime
    updated_at: datetime


def _info(row: Any) -> RunInfo:
    return RunInfo(
        id=row.id,
        workflow=row.workflow,
        key=row.key,
        status=row.status,
        step=row.step,
        state=dict(row.state),
        fingerprint=row.fingerprint,
        error=dict(row.error) if row.error is not None else None,
        result=dict(row.result) if row.result is not None else None,
        attempts=row.attempts,
        version=row.version,
        lease_until=row.lease_until,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def get_run(uow: UnitOfWork, run_id: str) -> RunInfo | None:
    row = (await uow.execute(select(RUNS).where(RUNS.c.id == run_id))).first()
    return _info(row) if row is not None else None


async def find_run(uow: UnitOfWork, workflow: str, key: str) -> RunInfo | None:
    row = (
        await uow.execute(select(RUNS).where(RUNS.c.workflow == workflow, RUNS.c.key == key))
    ).first()
    return _info(row) if row is not None else None


async def count_by_status(uow: UnitOfWork, workflow: str | None = None) -> dict[str, int]:
    query = select(RUNS.c.status, func.count()).group_by(RUNS.c.status)
    if workflow is not None:
        query = query.where(RUNS.c.workflow == workflow)
    return {status: int(n) for status, n in await uow.execute(query)}


def problem_to_json(problem: Problem) -> dict[str, Any]:
    body = problem.body()
    if problem.headers:
        body["_headers"] = dict(problem.headers)
    return body


def problem_from_json(data: Mapping[str, Any]) -> Problem:
    body = dict(data)
    status = int(body.pop("status"))
    code = str(body.pop("code"))
    detail = str(body.pop("detail"))
    title = body.pop("title", None)
    headers = body.pop("_headers", None)
    body.pop("type", None)
    body.pop("instance", None)
    return Problem(status, code, detail, title=title, headers=headers, **body)


def idempotency_conflict() -> Problem:
    return Problem(
        422,
        "idempotency_conflict",
        "This Idempotency-Key was already used for a different request",
        title="Idempotency conflict",
    )


def _default_in_progress(run_id: str) -> Problem:
    return Problem(
        409,
        "workflow_in_progress",
        "This request is still being processed; retry shortly",
        headers={"Retry-After": "1"},
        run_id=run_id,
    )


# -- running -----------------------------------------------------------------------------------


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
    columns = tuple(sorted(values))
    done = await uow.changed(
        _write_statement(columns), {**values, "w_id": run.id, "w_version": run.version}
    )
    if done != 1:
        raise _Moved(run.id)
    run.version += 1
    if "state" in values:
        run.dumped = values["state"]
    if "status" in values:
        run.status = values["status"]


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
        "state": run.dumped,
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
    return await uow.changed(_insert_statement(uow.dialect.name), row) == 1


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
        if first.transactional:
            try:
                try:
                    await first.run(run.context(runtime, uow), state)
                except RetryLater as later:
                    raise later.problem from None
            except Problem as problem:
                if workflow.remember_refusals:
                    raise _Refused(problem) from problem
                raise
            values.update(_progress_values(run, 1))
            run.dumped = state.model_dump(mode="json")
            run.index = 1
        if not await _insert(uow, run, values):
            existing = await find_run(uow, workflow.name, run_key)
            assert existing is not None, "the key's row was committed before the insert gave way"
            raise _Replay(existing)
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
                    await step.run(run.context(runtime, uow), run.state)
                    await _write(uow, run, **_progress_values(run, index + 1))

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
            maker = workflow.in_progress or _default_in_progress
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
        wf = _definition(found.workflow)
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
    wf = _definition(found.workflow)
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
    )
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


async def next_due(uow: UnitOfWork) -> datetime | None:
    """When the earliest active run's lease passes (the worker sleeps until then)."""
    return cast(
        datetime | None,
        await uow.scalar(select(func.min(RUNS.c.lease_until)).where(RUNS.c.status.in_(ACTIVE))),
    )


def retry_delay(attempt: int, *, base: float = 5.0, cap: float = 600.0) -> float:
    """Exponential back-off for :class:`RetryLater`: 5 s, 10 s, 20 s … up to ten minutes."""
    return float(min(cap, base * 2 ** max(attempt - 1, 0)))


__all__ = [
    "ACTIVE",
    "STATUSES",
    "RetryLater",
    "RunInfo",
    "Step",
    "StepContext",
    "Workflow",
    "count_by_status",
    "find_run",
    "get_run",
    "idempotency_conflict",
    "next_due",
    "problem_from_json",
    "problem_to_json",
    "recover",
    "register",
    "registered",
    "resume",
    "retry_delay",
    "start",
]
