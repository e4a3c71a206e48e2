"""Staff decide: approve or reject (with a reason) a review, and answer it in public.

``pending → approved | rejected``; staff may also take an approved review down (reject it) or
publish a rejected one after all. Deciding clears the review's "flagged" mark (staff have
looked at it; its flags stay for the record). The product's figures change with the decision,
in the same transaction.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select, update

from mercato.db import UnitOfWork, utcnow
from mercato.problems import validation_problem
from mercato.reviews.common import (
    MAX_ACTOR,
    MAX_REASON,
    MAX_RESPONSE,
    REVIEWS,
    ReviewInfo,
    clean_text,
    invalid_transition,
    review_not_found,
)
from mercato.reviews.ratings import apply_change
from mercato.reviews.writing import get_review

Decision = Literal["approve", "reject"]
_TARGET = {"approve": "approved", "reject": "rejected"}


async def moderate(
    uow: UnitOfWork,
    review_id: str,
    decision: Decision,
    *,
    actor: str,
    reason: str | None = None,
) -> ReviewInfo:
    """Approve or reject a review; rejecting needs a reason (422 ``reason``), deciding what
    was decided already is 409 ``invalid_transition``."""
    if decision not in _TARGET:
        raise validation_problem("decision", "must be approve or reject")
    target = _TARGET[decision]
    reason = clean_text(reason, "reason", MAX_REASON)
    if decision == "reject" and reason is None:
        raise validation_problem("reason", "say why the review is rejected")
    row = (
        await uow.execute(select(REVIEWS).where(REVIEWS.c.id == review_id).with_for_update())
    ).first()
    if row is None:
        raise review_not_found(review_id)
    if row.state == target:
        raise invalid_transition(row.state, target)
    now = utcnow()
    await uow.execute(
        update(REVIEWS)
        .where(REVIEWS.c.id == review_id)
        .values(
            state=target,
            reject_reason=reason if target == "rejected" else None,
            flagged=False,
            moderated_by=actor[:MAX_ACTOR],
            moderated_at=now,
            updated_at=now,
        )
    )
    before = row.rating if row.state == "approved" else None
    after = row.rating if target == "approved" else None
    await apply_change(uow, row.product_id, before, after)
    found = await get_review(uow, review_id)
    assert found is not None
    return found


async def respond(uow: UnitOfWork, review_id: str, text: str | None) -> ReviewInfo:
    """The shop's public answer under the review (empty text takes it away)."""
    text = clean_text(text, "text", MAX_RESPONSE)
    now = utcnow()
    changed = await uow.changed(
        update(REVIEWS)
        .where(REVIEWS.c.id == review_id)
        .values(
            response=text,
            response_at=now if text is not None else None,
            updated_at=now,
        )
    )
    if not changed:
        raise review_not_found(review_id)
    found = await get_review(uow, review_id)
    assert found is not None
    return found
