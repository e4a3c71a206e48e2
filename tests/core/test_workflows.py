"""The workflow engine on a small process of its own: hold (in the database), charge (an
outside system, idempotent by key), finish (in the database).

What a hold and a finish did is visible in the outbox (a real table of ours); the outside
system is a stand-in processor kept in memory, as a payment processor would be outside our
database. After any crash, failure, retry or takeover, the invariant is the same: every
completed run has exactly one hold, one live charge and one finish; every failed run has
none left (its hold released, its charge voided).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select

from mercato import events, workflows
from mercato.db import UnitOfWork, utcnow
from mercato.events import OutboxEvent
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.workflows import RetryLater, Step, StepContext, Workflow
from tests.support.crashes import SimulatedCrash, at_boundary, boundaries, crash_at

LATER = timedelta(hours=1)


@dataclass
class Processor:
    """An outside system that charges and voids by key, like a card processor."""

    charges: dict[str, str] = field(default_factory=dict)
    lost_answers: int = 0  # how many next charges go through but their answer is lost
    calls: list[str] = field(default_factory=list)

    def charge(self, key: str) -> str:
        self.calls.append(f"charge:{key}")
        self.charges.setdefault(key, "charged")
        if self.lost_answers:
            self.lost_answers -= 1
            raise TimeoutError(key)
        return self.charges[key]

    def lookup(self, key: str) -> str | None:
        return self.charges.get(key)

    def void(self, key: str) -> None:
        self.calls.append(f"void:{key}")
        if key in self.charges:
            self.charges[key] = "voided"


PROCESSOR = Processor()


class ToyState(BaseModel):
    item: str
    quantity: int
    fail_at: str | None = None
    charged: bool = False
    answer: str | None = None


async def _event(uow: UnitOfWork, kind: str, run_id: str) -> None:
    await events.publish(uow, kind, run_id, {"run_id": run_id})


async def hold(ctx: StepContext, state: ToyState) -> None:
    if state.quantity <= 0:
        raise Problem(422, "bad_quantity", "Hold at least one")
    await _event(ctx.uow, "ToyHeld", ctx.run_id)


async def release(ctx: StepContext, state: ToyState) -> None:
    await _event(ctx.uow, "ToyReleased", ctx.run_id)


async def charge(ctx: StepContext, state: ToyState) -> None:
    if ctx.resuming and not ctx.memo.get("card"):
        # Like a checkout after a crash: without the card, only an earlier charge counts.
        if PROCESSOR.lookup(ctx.run_id) != "charged":
            raise Problem(409, "interrupted", "Stopped before the charge; nothing charged")
        state.charged = True
        return
    if state.fail_at == "charge":
        raise Problem(402, "declined", "Declined")
    try:
        PROCESSOR.charge(ctx.run_id)
    except TimeoutError:
        raise RetryLater(Problem(503, "charge_pending", "No answer yet"), delay=30) from None
    state.charged = True


async def void(ctx: StepContext, state: ToyState) -> None:
    PROCESSOR.void(ctx.run_id)


async def finish(ctx: StepContext, state: ToyState) -> None:
    if state.fail_at == "finish":
        raise Problem(409, "too_late", "Too late")
    await _event(ctx.uow, "ToyDone", ctx.run_id)
    state.answer = f"{state.quantity} x {state.item}"


def _result(state: ToyState) -> dict[str, Any]:
    return {"answer": state.answer}


def toy(name: str, *, remember_refusals: bool = False) -> Workflow[ToyState]:
    return Workflow(
        name=name,
        state=ToyState,
        steps=(
            Step("hold", hold, release),
            Step(
                "charge",
                charge,
                void,
                transactional=False,
                checkpoint=False,
                compensate_transactional=False,
            ),
            Step("finish", finish),
        ),
        result=_result,
        remember_refusals=remember_refusals,
        replay_wait_seconds=0.5,
    )


TOY = toy("test.toy")
TOY_REMEMBERS = toy("test.toy_remembers", remember_refusals=True)
workflows.register(TOY)
workflows.register(TOY_REMEMBERS)


@pytest.fixture(autouse=True)
def fresh_processor() -> None:
    PROCESSOR.charges.clear()
    PROCESSOR.calls.clear()
    PROCESSOR.lost_answers = 0


async def start(
    runtime: Runtime,
    key: str,
    *,
    quantity: int = 2,
    fail_at: str | None = None,
    workflow: Workflow[ToyState] = TOY,
) -> dict[str, Any]:
    async def prepare(uow: UnitOfWork, run_id: str) -> ToyState:
        return ToyState(item="kettle", quantity=quantity, fail_at=fail_at)

    return await workflows.start(
        runtime,
        workflow,
        key=key,
        prepare=prepare,
        fingerprint=f"{quantity}:{fail_at}",
        memo={"card": "tok"},
    )


@dataclass
class Totals:
    held: int
    released: int
    done: int
    runs: dict[str, int]
    live_charges: int


async def totals(runtime: Runtime) -> Totals:
    async with runtime.db.transaction() as uow:
        rows = dict(
            (
                await uow.execute(select(OutboxEvent.type, func.count()).group_by(OutboxEvent.type))
            ).all()
        )
        runs = await workflows.count_by_status(uow)
    return Totals(
        held=rows.get("ToyHeld", 0),
        released=rows.get("ToyReleased", 0),
        done=rows.get("ToyDone", 0),
        runs=runs,
        live_charges=sum(1 for v in PROCESSOR.charges.values() if v == "charged"),
    )


async def check_invariants(runtime: Runtime) -> Totals:
    t = await totals(runtime)
    completed = t.runs.get("completed", 0)
    assert t.held - t.released == completed
    assert t.done == completed
    assert t.live_charges == completed
    return t


async def recover_later(runtime: Runtime) -> int:
    return await workflows.recover(runtime, now=utcnow() + LATER)


async def test_a_run_goes_through_its_steps(runtime: Runtime) -> None:
    assert await start(runtime, "k1") == {"answer": "2 x kettle"}
    t = await check_invariants(runtime)
    assert t.runs == {"completed": 1} and t.held == 1 and t.done == 1
    assert await recover_later(runtime) == 0


async def test_a_replay_answers_from_the_row(runtime: Runtime) -> None:
    first = await start(runtime, "k1")
    assert await start(runtime, "k1") == first
    assert PROCESSOR.calls == ["charge:" + next(iter(PROCESSOR.charges))]
    with pytest.raises(Problem) as caught:
        await start(runtime, "k1", quantity=3)
    assert caught.value.code == "idempotency_conflict"
    assert (await check_invariants(runtime)).runs == {"completed": 1}


async def test_a_failing_step_compensates_the_done_ones_in_reverse(runtime: Runtime) -> None:
    with pytest.raises(Problem) as caught:
        await start(runtime, "k1", fail_at="finish")
    assert caught.value.code == "too_late"
    t = await check_invariants(runtime)
    assert t.runs == {"failed": 1} and t.held == 1 and t.released == 1
    assert PROCESSOR.calls[-1].startswith("void:")
    # A replay gets the same answer; nothing runs again.
    with pytest.raises(Problem) as again:
        await start(runtime, "k1", fail_at="finish")
    assert again.value.code == "too_late"
    assert len(PROCESSOR.calls) == 2


async def test_a_refused_external_step_undoes_only_what_was_done(runtime: Runtime) -> None:
    with pytest.raises(Problem) as caught:
        await start(runtime, "k1", fail_at="charge")
    assert caught.value.code == "declined"
    t = await check_invariants(runtime)
    assert t.runs == {"failed": 1} and t.released == 1
    assert PROCESSOR.calls == []  # declined before reaching it; nothing to void


async def test_a_refused_first_step_writes_nothing_unless_remembered(runtime: Runtime) -> None:
    with pytest.raises(Problem):
        await start(runtime, "k1", quantity=0)
    assert (await totals(runtime)).runs == {}
    with pytest.raises(Problem):
        await start(runtime, "k2", quantity=0, workflow=TOY_REMEMBERS)
    assert (await totals(runtime)).runs == {"failed": 1}
    with pytest.raises(Problem) as replay:
        await start(runtime, "k2", quantity=0, workflow=TOY_REMEMBERS)
    assert replay.value.code == "bad_quantity"


# Where the process died → what recovery makes of the run, and whether it had anything to do.
EXPECTED = {
    "after:hold": ("failed", 1),  # no card after a restart, nothing charged: undone
    "after:charge": ("completed", 1),  # charged: the charge is found by its key, finished
    "after:finish": ("completed", 0),
    "after_undo:charge": ("failed", 1),  # the void is done again (idempotent), then the hold
    "after_undo:hold": ("failed", 0),
}


def test_every_boundary_is_covered() -> None:
    assert set(EXPECTED) == set(boundaries(TOY))


@pytest.mark.parametrize("boundary", boundaries(TOY))
async def test_a_crash_at_any_boundary_is_finished_or_undone_by_recovery(
    runtime: Runtime, boundary: str
) -> None:
    fail_at = "finish" if boundary.startswith("after_undo") else None
    with crash_at(runtime.db, TOY, boundary) as reached, pytest.raises(SimulatedCrash):
        await start(runtime, "k1", fail_at=fail_at)
    assert reached == [boundary]
    status, handled = EXPECTED[boundary]
    assert await recover_later(runtime) == handled
    t = await check_invariants(runtime)
    assert t.runs == {status: 1}
    assert await recover_later(runtime) == 0  # nothing left for a second pass


async def test_a_run_within_its_lease_is_left_to_its_runner(runtime: Runtime) -> None:
    with crash_at(runtime.db, TOY, "after:charge"), pytest.raises(SimulatedCrash):
        await start(runtime, "k1")
    assert await workflows.recover(runtime) == 0  # the lease has not passed yet
    assert (await totals(runtime)).runs == {"running": 1}


async def test_a_step_that_cannot_tell_yet_waits_then_finishes(runtime: Runtime) -> None:
    PROCESSOR.lost_answers = 1
    with pytest.raises(Problem) as caught:
        await start(runtime, "k1")
    assert caught.value.code == "charge_pending"
    assert (await totals(runtime)).runs == {"waiting": 1}
    assert await workflows.recover(runtime) == 0  # not due yet
    assert await recover_later(runtime) == 1
    assert (await check_invariants(runtime)).runs == {"completed": 1}


async def test_a_replay_of_a_waiting_run_resumes_it_now(runtime: Runtime) -> None:
    PROCESSOR.lost_answers = 1
    with pytest.raises(Problem):
        await start(runtime, "k1")
    # The same request again: the run is taken over and resumed at once; the charge that
    # went through is found by its key, and the run completes.
    assert await start(runtime, "k1") == {"answer": "2 x kettle"}
    assert (await check_invariants(runtime)).runs == {"completed": 1}
    assert len(PROCESSOR.calls) == 1


async def test_a_resumed_run_without_a_charge_is_undone(runtime: Runtime) -> None:
    with crash_at(runtime.db, TOY, "after:hold"), pytest.raises(SimulatedCrash):
        await start(runtime, "k1")
    # Without the card (a resumed run never has it), only an earlier charge could count.
    # Its runner is gone but its lease has not passed: a replay waits, then says so.
    with pytest.raises(Problem) as caught:
        await start(runtime, "k1")
    assert caught.value.code == "workflow_in_progress"
    assert await recover_later(runtime) == 1
    assert (await check_invariants(runtime)).runs == {"failed": 1}


async def test_a_runner_whose_run_was_taken_over_stops_and_answers_from_the_row(
    runtime: Runtime,
) -> None:
    async def recovery_takes_over() -> None:
        assert await recover_later(runtime) == 1

    with at_boundary(runtime.db, TOY, "after:charge", recovery_takes_over):
        answer = await start(runtime, "k1")
    assert answer == {"answer": "2 x kettle"}
    t = await check_invariants(runtime)
    assert t.runs == {"completed": 1} and t.done == 1


async def test_a_runner_whose_run_was_undone_under_it_undoes_its_own_charge(
    runtime: Runtime,
) -> None:
    async def recovery_undoes() -> None:
        # Recovery finds the run before the charge (no card, no charge yet): it undoes it.
        assert await recover_later(runtime) == 1

    with (
        at_boundary(runtime.db, TOY, "after:hold", recovery_undoes),
        pytest.raises(Problem) as caught,
    ):
        await start(runtime, "k1")
    assert caught.value.code == "interrupted"
    t = await check_invariants(runtime)
    assert t.runs == {"failed": 1} and t.live_charges == 0
    assert PROCESSOR.calls[-1].startswith("void:")


async def test_many_starts_of_one_key_make_one_run(runtime: Runtime) -> None:
    answers = await asyncio.gather(*(start(runtime, "same") for _ in range(12)))
    assert all(a == {"answer": "2 x kettle"} for a in answers)
    t = await check_invariants(runtime)
    assert t.runs == {"completed": 1} and t.held == 1 and len(PROCESSOR.charges) == 1


async def test_many_keys_at_once_each_complete(runtime: Runtime) -> None:
    answers = await asyncio.gather(*(start(runtime, f"k{n}") for n in range(16)))
    assert len(answers) == 16
    t = await check_invariants(runtime)
    assert t.runs == {"completed": 16}


async def test_a_runner_overtaken_while_it_fails_answers_with_the_runs_outcome(
    runtime: Runtime,
) -> None:
    """Recovery takes the run over and undoes it while the live runner is still going; the
    runner's own step then fails too, and its attempt to start undoing finds the run moved:
    it answers with the outcome recovery reached, and everything is undone exactly once."""

    async def recovery_takes_over() -> None:
        assert await recover_later(runtime) == 1

    with (
        at_boundary(runtime.db, TOY, "after:charge", recovery_takes_over),
        pytest.raises(Problem) as caught,
    ):
        await start(runtime, "k1", fail_at="finish")
    assert caught.value.code == "too_late"
    t = await check_invariants(runtime)
    assert t.runs == {"failed": 1} and t.released == 1 and t.live_charges == 0


class NoteState(BaseModel):
    notes: list[str] = []


async def note_early(ctx: StepContext, state: NoteState) -> None:
    state.notes.append("before")
    await ctx.record_progress()  # the run's row now, as a step locking hot rows does
    await _event(ctx.uow, "ToyHeld", ctx.run_id)
    state.notes.append("after")


async def note_last(ctx: StepContext, state: NoteState) -> None:
    state.notes.append("last-before")
    await ctx.record_progress()
    state.notes.append("last-after")


RECORDING = Workflow(
    name="test.recording",
    state=NoteState,
    steps=(Step("first", note_early), Step("last", note_last)),
    result=lambda st: {"notes": list(st.notes)},
)
workflows.register(RECORDING)


async def test_a_step_may_record_its_progress_before_its_last_statements(
    runtime: Runtime,
) -> None:
    """Recording early changes when the row is written, not what is kept: what the step
    changed afterwards is written too, and the result of the last step is the state at the
    moment it recorded."""

    async def prepare(uow: UnitOfWork, run_id: str) -> NoteState:
        return NoteState()

    answer = await workflows.start(runtime, RECORDING, key="k1", prepare=prepare)
    assert answer == {"notes": ["before", "after", "last-before"]}
    async with runtime.db.transaction() as uow:
        run = await workflows.find_run(uow, RECORDING.name, "k1")
    assert run is not None and run.status == "completed"
    assert run.state["notes"] == ["before", "after", "last-before", "last-after"]
    assert run.result == answer
