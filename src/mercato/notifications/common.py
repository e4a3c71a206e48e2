"""What the mail and webhook senders share: the tables, the limits, the backoff, and the claim
by which one conditional ``UPDATE`` decides who sends a row.

**Sending, once in the normal path, at least once after a crash.** A sender first *claims* due
rows (status ``pending``/``failed``, or a ``sending`` row whose lease ran out → ``sending`` with
``next_attempt_at = now + lease``) in a short unit of work, so two workers never send the same
row at the same time and one worker never sends it twice. It sends outside any transaction,
then records the outcome in another. A worker that dies between the send and the record leaves
a ``sending`` row whose lease expires, and the next pass sends it again: at least once, with
the same Message-ID / event id, so the receiver can drop the repeat."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.db import UnitOfWork
from mercato.notifications import mail
from mercato.notifications.models import Email, WebhookDelivery, WebhookEndpoint

EMAILS = cast(Table, Email.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
DELIVERIES = cast(Table, WebhookDelivery.__table__)

EMAIL_MAX_ATTEMPTS = 10
EMAIL_LEASE_SECONDS = mail.SMTP_TIMEOUT_SECONDS * 4
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0
CLAIM_BATCH = 50
SEND_CONCURRENCY = 10
MAX_URL_LENGTH = 2000
MAX_PAGE = 100
MAX_ERROR = 500

RETRYABLE = ("pending", "failed")


def backoff_seconds(
    attempt: int,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before the attempt after the ``attempt``-th failure: ``base * 2^(attempt-1)``
    capped, with "equal jitter" (between half and all of it) so that endpoints that fail
    together do not come back in lockstep."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return float(ceiling / 2 + rand() * ceiling / 2)


def dialect_insert(uow: UnitOfWork, table: Table) -> postgresql.Insert | sqlite.Insert:
    return (postgresql.insert if uow.dialect.name == "postgresql" else sqlite.insert)(table)


def short(error: str) -> str:
    return error if len(error) <= MAX_ERROR else error[: MAX_ERROR - 1] + "…"


# -- the claim: one conditional UPDATE decides who sends a row -------------------------------------


async def claim(
    uow: UnitOfWork,
    table: Table,
    *,
    now: datetime,
    lease_seconds: float,
    max_attempts: int,
    limit: int,
    extra: Sequence[Any] = (),
) -> list[Row[Any]]:
    """Take up to ``limit`` due rows (counting the attempt), each with a lease; returns them.
    The caller commits the unit of work before it sends anything."""
    c = table.c
    due = and_(
        or_(c.status.in_(RETRYABLE), c.status == "sending"),
        c.next_attempt_at <= now,
        c.attempts < max_attempts,
        *extra,
    )
    # Two statements in one transaction: the SELECT locks the chosen rows on PostgreSQL (and
    # skips rows another worker is claiming); SQLite's BEGIN IMMEDIATE serialises claimers. A
    # LIMIT inside ``UPDATE ... WHERE id IN (subquery)`` is not reliable on PostgreSQL (the
    # subquery may be re-run), so the ids are fetched first.
    candidates = (
        select(c.id)
        .where(due)
        .order_by(c.next_attempt_at, c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list((await uow.scalars(candidates)).all())
    if not ids:
        return []
    rows = await uow.execute(
        update(table)
        .where(c.id.in_(ids), due)
        .values(
            status="sending",
            attempts=c.attempts + 1,
            next_attempt_at=now + timedelta(seconds=lease_seconds),
        )
        .returning(*c)
    )
    return list(rows)


async def bury_abandoned(
    uow: UnitOfWork, table: Table, *, now: datetime, max_attempts: int, error: str
) -> int:
    """A ``sending`` row whose lease ran out on its last allowed attempt is dead (the worker
    died mid-send and there is no attempt left to try again)."""
    c = table.c
    return await uow.changed(
        update(table)
        .where(c.status == "sending", c.next_attempt_at <= now, c.attempts >= max_attempts)
        .values(status="dead", last_error=error)
    )
