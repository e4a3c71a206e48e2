"""The run's row (``workflow_runs``) and what callers read of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, Database, JSONType, UnitOfWork, UTCDateTime
from mercato.logs import pop_request_id
from mercato.problems import Problem

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
    request_id: str | None = None
    """The request that started the run (kept in the stored state, never in ``state``)."""


def _info(row: Any) -> RunInfo:
    state = dict(row.state)
    request_id = pop_request_id(state)
    return RunInfo(
        id=row.id,
        workflow=row.workflow,
        key=row.key,
        status=row.status,
        step=row.step,
        state=state,
        fingerprint=row.fingerprint,
        error=dict(row.error) if row.error is not None else None,
        result=dict(row.result) if row.result is not None else None,
        attempts=row.attempts,
        version=row.version,
        lease_until=row.lease_until,
        created_at=row.created_at,
        updated_at=row.updated_at,
        request_id=request_id,
    )


async def get_run(uow: UnitOfWork, run_id: str) -> RunInfo | None:
    row = (await uow.execute(select(RUNS).where(RUNS.c.id == run_id))).first()
    return _info(row) if row is not None else None


async def read_run(db: Database, run_id: str) -> RunInfo | None:
    """:func:`get_run` outside any unit of work, in one round trip (``Database.read_first``):
    for a run's owner asking again and again how it stands."""
    row = await db.read_first(select(RUNS).where(RUNS.c.id == run_id), {})
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


def default_in_progress(run_id: str) -> Problem:
    return Problem(
        409,
        "workflow_in_progress",
        "This request is still being processed; retry shortly",
        headers={"Retry-After": "1"},
        run_id=run_id,
    )


async def next_due(uow: UnitOfWork) -> datetime | None:
    """When the earliest active run's lease passes (the worker sleeps until then)."""
    return cast(
        datetime | None,
        await uow.scalar(select(func.min(RUNS.c.lease_until)).where(RUNS.c.status.in_(ACTIVE))),
    )
