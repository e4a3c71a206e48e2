"""What a workflow is: its steps, what a step gets, how a step says "not yet", the registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from mercato.db import Database, UnitOfWork
from mercato.problems import Problem

if TYPE_CHECKING:
    from mercato.runtime import Runtime

S = TypeVar("S", bound=BaseModel)


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
    _record: Callable[[], Awaitable[None]] | None = None

    async def record_progress(self) -> None:
        """Write this step's progress now, in its transaction, instead of after the step. A
        step whose last statements lock rows every run queues for (a popular variant's stock)
        calls this before them, so the lock is held up to the commit and not one statement
        longer. The state as it is now is what the progress records (and, after the last step,
        what the result is made of); a change made after this is written after the step."""
        if self._record is not None:
            record, self._record = self._record, None
            await record()

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


# -- the registry (wired in mercato.modules) ---------------------------------------------

_REGISTRY: dict[str, Workflow[Any]] = {}


def register(workflow: Workflow[Any]) -> None:
    _REGISTRY[workflow.name] = workflow


def registered() -> dict[str, Workflow[Any]]:
    return dict(_REGISTRY)


def definition(name: str) -> Workflow[Any]:
    found = _REGISTRY.get(name)
    if found is None:
        raise LookupError(f"workflow {name!r} is not registered (see mercato.modules)")
    return found


def retry_delay(attempt: int, *, base: float = 5.0, cap: float = 600.0) -> float:
    """Exponential back-off for :class:`RetryLater`: 5 s, 10 s, 20 s … up to ten minutes."""
    return float(min(cap, base * 2 ** max(attempt - 1, 0)))
