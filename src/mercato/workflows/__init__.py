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

from mercato.workflows.batch import BatchResult, Queued, drive_batch, enqueue
from mercato.workflows.definitions import (
    RetryLater,
    Step,
    StepContext,
    StepFunc,
    Workflow,
    definition,
    register,
    registered,
    retry_delay,
)
from mercato.workflows.engine import KeyFunc, Prepare, recover, resume, start
from mercato.workflows.runs import (
    ACTIVE,
    RUNS,
    STATUSES,
    RunInfo,
    WorkflowRun,
    count_by_status,
    find_run,
    get_run,
    idempotency_conflict,
    next_due,
    problem_from_json,
    problem_to_json,
    read_run,
)

__all__ = [
    "ACTIVE",
    "RUNS",
    "STATUSES",
    "BatchResult",
    "KeyFunc",
    "Prepare",
    "Queued",
    "RetryLater",
    "RunInfo",
    "Step",
    "StepContext",
    "StepFunc",
    "Workflow",
    "WorkflowRun",
    "count_by_status",
    "definition",
    "drive_batch",
    "enqueue",
    "find_run",
    "get_run",
    "idempotency_conflict",
    "next_due",
    "problem_from_json",
    "problem_to_json",
    "read_run",
    "recover",
    "register",
    "registered",
    "resume",
    "retry_delay",
    "start",
]
