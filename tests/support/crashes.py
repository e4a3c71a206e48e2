"""Crash injection for workflows, from the outside.

A boundary is the moment right after a step (or a compensation) became durable: its
transaction committed, or, for an outside call, it returned. The fixture wraps the workflow's
step functions (to note which one ran) and the database's ``run`` (to act once the transaction
that ran it has committed), then does what the test asks there, outside any transaction:
"die" (raise :class:`SimulatedCrash`, exactly as if the process had been killed between two
transactions) or run something (a recovery pass racing the live request). Production code
carries no crash hook; these wrappers are the only one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

from mercato.db import Database, UnitOfWork
from mercato.workflows import Step, StepContext, Workflow


class SimulatedCrash(Exception):
    """The process died here (tests only)."""


Hook = Callable[[], Awaitable[None]]


def boundaries(workflow: Workflow[Any]) -> list[str]:
    """Every place a run can stop between two durable moments: after each step, and after
    each compensation."""
    names = [f"after:{s.name}" for s in workflow.steps]
    names += [f"after_undo:{s.name}" for s in workflow.steps if s.compensate is not None]
    return names


class _Boundary:
    def __init__(self, boundary: str, hook: Hook, times: int) -> None:
        self.boundary = boundary
        self.hook = hook
        self.left = times
        self.reached: list[str] = []
        self.noted: str | None = None

    async def fire(self) -> None:
        if self.left <= 0:
            return
        self.left -= 1
        self.reached.append(self.boundary)
        await self.hook()


def _noting(
    func: Callable[[StepContext, Any], Awaitable[None]], at: _Boundary, *, in_transaction: bool
) -> Any:
    async def wrapped(ctx: StepContext, state: Any) -> None:
        await func(ctx, state)
        if in_transaction:
            at.noted = at.boundary  # acted on when its transaction has committed
        else:
            await at.fire()  # an outside call: durable as soon as it returned

    return wrapped


@contextlib.contextmanager
def at_boundary(
    db: Database, workflow: Workflow[Any], boundary: str, hook: Hook, *, times: int = 1
) -> Iterator[list[str]]:
    """Run ``hook`` at ``boundary`` (see :func:`boundaries`), at most ``times`` times, while
    inside; yields the list of boundaries reached."""
    if boundary not in boundaries(workflow):
        raise ValueError(f"{workflow.name} has no boundary {boundary!r}")
    kind, _, name = boundary.partition(":")
    at = _Boundary(boundary, hook, times)
    steps: list[Step[Any]] = []
    for step in workflow.steps:
        if step.name == name and kind == "after":
            step = replace(step, run=_noting(step.run, at, in_transaction=step.transactional))
        elif step.name == name and kind == "after_undo":
            assert step.compensate is not None
            step = replace(
                step,
                compensate=_noting(
                    step.compensate, at, in_transaction=step.compensate_transactional
                ),
            )
        steps.append(step)
    original_steps = workflow.steps
    original_run = db.run
    shadowed = db.__dict__.get("run")  # an outer boundary's wrapper, when nested

    async def run(work: Callable[[UnitOfWork], Awaitable[Any]], **kwargs: Any) -> Any:
        at.noted = None
        result = await original_run(work, **kwargs)
        if at.noted is not None:
            at.noted = None
            await at.fire()
        return result

    object.__setattr__(workflow, "steps", tuple(steps))
    db.run = run  # type: ignore[method-assign]
    try:
        yield at.reached
    finally:
        object.__setattr__(workflow, "steps", original_steps)
        if shadowed is None:
            del db.run
        else:
            db.run = shadowed  # type: ignore[method-assign]


@contextlib.contextmanager
def crash_at(db: Database, workflow: Workflow[Any], boundary: str) -> Iterator[list[str]]:
    """The process dies at ``boundary`` the first time it is reached."""

    async def die() -> None:
        raise SimulatedCrash(boundary)

    with at_boundary(db, workflow, boundary, die) as reached:
        yield reached
