"""What other shoppers do with a published review: find it helpful, or report it.

One vote and one report per customer per review, held by the unique key of the vote or report
row; the review's counter moves in the same transaction, and only when that row was written.
So however many customers vote at once, and however often one of them clicks, the counter is
the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.problems import Problem, validation_problem
from mercato.reviews.common import (
    MAX_NOTE,
    REPORTS,
    REVIEWS,
    VOTES,
    clean_text,
    insert,
    own_review,
    review_not_found,
)
from mercato.reviews.models import REPORT_REASONS


def already_voted() -> Problem:
    return Problem(
        409, "already_voted", "You have found this review helpful already", title="Already voted"
    )


def already_reported() -> Problem:
    return Problem(
        409, "already_reported", "You have reported this review already", title="Already reported"
    )


async def _check_published(uow: UnitOfWork, review_id: str, user_id: str) -> None:
    """A published review someone else wrote (unpublished ones are "not found")."""
    row = (
        await uow.execute(
            select(REVIEWS.c.id, REVIEWS.c.user_id).where(
                REVIEWS.c.id == review_id, REVIEWS.c.state == "approved"
            )
        )
    ).first()
    if row is None:
        raise review_not_found(review_id)
    if row.user_id == user_id:
        raise own_review()


async def vote_helpful(uow: UnitOfWork, user_id: str, review_id: str) -> int:
    """The customer found the review helpful; the review's helpful count after it. 409
    ``already_voted`` for a second vote, 403 ``own_review`` on one's own."""
    await _check_published(uow, review_id, user_id)
    statement = (
        insert(uow, VOTES)
        .values(review_id=review_id, user_id=user_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[VOTES.c.review_id, VOTES.c.user_id])
    )
    if not await uow.changed(statement):
        raise already_voted()
    count = await uow.scalar(
        update(REVIEWS)
        .where(REVIEWS.c.id == review_id)
        .values(helpful_count=REVIEWS.c.helpful_count + 1)
        .returning(REVIEWS.c.helpful_count)
    )
    return int(count or 0)


@dataclass(frozen=True, slots=True)
class ReportInfo:
    id: str
    review_id: str
    reason: str
    note: str | None
    created_at: datetime


async def report_review(
    uow: UnitOfWork, user_id: str, review_id: str, reason: str, note: str | None = None
) -> ReportInfo:
    """The customer reports the review (spam, offensive, off-topic): it is marked for staff
    to look at again. 409 ``already_reported`` for a second report."""
    if reason not in REPORT_REASONS:
        raise validation_problem("reason", f"must be one of {', '.join(REPORT_REASONS)}")
    note = clean_text(note, "note", MAX_NOTE)
    await _check_published(uow, review_id, user_id)
    now = utcnow()
    report_id = new_id("rpt")
    statement = (
        insert(uow, REPORTS)
        .values(
            id=report_id,
            review_id=review_id,
            user_id=user_id,
            reason=reason,
            note=note,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[REPORTS.c.review_id, REPORTS.c.user_id])
    )
    if not await uow.changed(statement):
        raise already_reported()
    await uow.execute(
        update(REVIEWS)
        .where(REVIEWS.c.id == review_id)
        .values(report_count=REVIEWS.c.report_count + 1, flagged=True)
    )
    return ReportInfo(report_id, review_id, reason, note, now)
