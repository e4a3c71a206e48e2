"""What crosses the reviews API: requests (strict: no coercion, so ``4.5`` or ``"4"`` is not a
rating; no unknown fields) and reviews and ratings as JSON. Texts are plain: they are answered
as written, and pages escape them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mercato.openapi import WholeNumber
from mercato.reviews.service import (
    MAX_BODY,
    MAX_NOTE,
    MAX_REASON,
    MAX_RESPONSE,
    MAX_TITLE,
    RatingSummary,
    ReportInfo,
    ReportReason,
    ReviewInfo,
)

Stars = Annotated[int, Field(ge=1, le=5), WholeNumber]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ReviewIn(_Strict):
    rating: Stars
    title: Annotated[str, Field(max_length=MAX_TITLE)] | None = None
    body: Annotated[str, Field(max_length=MAX_BODY)] | None = None


class ReviewPatch(_Strict):
    """Only the fields sent change; ``null`` clears a title or text."""

    rating: Stars | None = None
    title: Annotated[str, Field(max_length=MAX_TITLE)] | None = None
    body: Annotated[str, Field(max_length=MAX_BODY)] | None = None


class ReportIn(_Strict):
    reason: ReportReason
    note: Annotated[str, Field(max_length=MAX_NOTE)] | None = None


class RejectIn(_Strict):
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON)]


class RespondIn(_Strict):
    text: Annotated[str, Field(max_length=MAX_RESPONSE)] | None


class ReviewSettings(_Strict):
    auto_approve_star_only: bool


def rating_json(summary: RatingSummary) -> dict[str, Any]:
    """``{average, count, histogram}``: the average a number to two decimals (``null`` when
    there is no approved review), the histogram by star ("1" to "5")."""
    return {
        "average": summary.rounded,
        "count": summary.count,
        "histogram": {str(n + 1): c for n, c in enumerate(summary.histogram)},
    }


def review_json(review: ReviewInfo, *, own: bool = False, staff: bool = False) -> dict[str, Any]:
    """A review as shoppers see it; its author also sees its state (and why it was rejected),
    staff everything moderation needs."""
    body: dict[str, Any] = {
        "id": review.id,
        "product_id": review.product_id,
        "author": review.author_name,
        "rating": review.rating,
        "title": review.title,
        "body": review.body,
        "verified_purchase": review.verified_purchase,
        "helpful_count": review.helpful_count,
        "response": (
            {"text": review.response, "created_at": review.response_at.isoformat()}
            if review.response is not None and review.response_at is not None
            else None
        ),
        "created_at": review.created_at.isoformat(),
        "updated_at": review.updated_at.isoformat(),
    }
    if own or staff:
        body["state"] = review.state
        body["reject_reason"] = review.reject_reason
    if staff:
        body["user_id"] = review.user_id
        body["flags"] = list(review.flags)
        body["flagged"] = review.flagged
        body["report_count"] = review.report_count
        body["moderated_by"] = review.moderated_by
        body["moderated_at"] = review.moderated_at.isoformat() if review.moderated_at else None
    return body


def report_json(report: ReportInfo) -> dict[str, Any]:
    return {
        "id": report.id,
        "review_id": report.review_id,
        "reason": report.reason,
        "note": report.note,
        "created_at": report.created_at.isoformat(),
    }
