"""The reviews API: a product's published reviews, a customer's own review (written once they
received the product, edited, deleted), helpful votes and reports, and the staff's moderation
(the queue, approve, reject, respond, the auto-approval setting).

Another customer's review is "not found" to the author-only routes; bad input is a 4xx
problem (``validation_error`` naming the field, ``purchase_not_verified``, ``review_exists``,
``already_voted``, ``own_review``, ``invalid_transition``, ``invalid_cursor``) and writes
nothing. Writing and voting are throttled per customer (429 ``rate_limited``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from mercato.identity.deps import CurrentUser, StaffUser
from mercato.identity.service import UserInfo
from mercato.openapi import problems
from mercato.problems import validation_problem
from mercato.ratelimit import client_ip, limiter_for
from mercato.reviews import service
from mercato.reviews.schemas import (
    RejectIn,
    ReportIn,
    RespondIn,
    ReviewIn,
    ReviewPatch,
    ReviewSettings,
    report_json,
    review_json,
)
from mercato.runtime import Runtime, RuntimeDep, UowDep

router = APIRouter(tags=["reviews"])

Cursor = Annotated[str | None, Query(max_length=1000)]
Limit = Annotated[int, Query(ge=1, le=service.MAX_PAGE)]
StarsFilter = Annotated[int | None, Query(ge=1, le=5)]


async def _throttle_writes(runtime: Runtime, user_id: str) -> None:
    await service.throttle_customer(limiter_for(runtime), runtime.settings, "write", user_id)


async def _throttle_votes(runtime: Runtime, user_id: str) -> None:
    await service.throttle_customer(limiter_for(runtime), runtime.settings, "vote", user_id)


def _page_json(page: service.ReviewPage, *, staff: bool = False) -> dict[str, Any]:
    return {
        "items": [review_json(r, staff=staff) for r in page.items],
        "next_cursor": page.next_cursor,
    }


@router.get("/api/products/{product_id}/reviews", responses=problems(400))
async def product_reviews(
    product_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    sort: service.Sort = "helpful",
    stars: StarsFilter = None,
    cursor: Cursor = None,
    limit: Limit = 10,
) -> dict[str, Any]:
    """The product's published reviews: most helpful (default), newest, highest or lowest
    first, one star count only with ``stars``, in keyset pages (``next_cursor``)."""
    page = await service.product_reviews(
        uow,
        product_id,
        service.ReviewQuery(sort=sort, stars=stars, limit=limit, cursor=cursor),
        secret_key=runtime.settings.secret_key,
    )
    return _page_json(page)


@router.post(
    "/api/products/{product_id}/reviews", status_code=201, responses=problems(403, 409, 429)
)
async def create_review(
    product_id: str,
    body: ReviewIn,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: CurrentUser,
) -> dict[str, Any]:
    """Review a product you received (one review per product; edit it afterwards)."""
    await _throttle_writes(runtime, user.id)
    review = await service.create_review(
        uow,
        user,
        product_id,
        service.ReviewDraft(rating=body.rating, title=body.title, body=body.body),
        ip=client_ip(request),
        policy=service.AbusePolicy.from_settings(runtime.settings),
    )
    return review_json(review, own=True)


@router.patch("/api/reviews/{review_id}", responses=problems(429))
async def edit_review(
    review_id: str,
    body: ReviewPatch,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: CurrentUser,
) -> dict[str, Any]:
    """Change your review (``null`` clears the title or text); it is moderated again."""
    given = body.model_fields_set
    if "rating" in given and body.rating is None:
        raise validation_problem("rating", "may not be null")
    await _throttle_writes(runtime, user.id)
    changes = service.ReviewChanges(
        rating=body.rating if body.rating is not None else service.UNSET,
        title=body.title if "title" in given else service.UNSET,
        body=body.body if "body" in given else service.UNSET,
    )
    review = await service.edit_review(
        uow,
        user,
        review_id,
        changes,
        ip=client_ip(request),
        policy=service.AbusePolicy.from_settings(runtime.settings),
    )
    return review_json(review, own=True)


@router.delete("/api/reviews/{review_id}", status_code=204)
async def delete_review(review_id: str, uow: UowDep, user: CurrentUser) -> Response:
    await service.delete_review(uow, user.id, review_id)
    return Response(status_code=204)


@router.post("/api/reviews/{review_id}/helpful", responses=problems(403, 409, 429))
async def vote_helpful(
    review_id: str, uow: UowDep, runtime: RuntimeDep, user: CurrentUser
) -> dict[str, Any]:
    """You found this review helpful (once per review; not your own)."""
    await _throttle_votes(runtime, user.id)
    count = await service.vote_helpful(uow, user.id, review_id)
    return {"review_id": review_id, "helpful_count": count}


@router.post("/api/reviews/{review_id}/report", status_code=201, responses=problems(403, 409, 429))
async def report_review(
    review_id: str, body: ReportIn, uow: UowDep, runtime: RuntimeDep, user: CurrentUser
) -> dict[str, Any]:
    """Report a review as spam, offensive or off-topic: staff look at it again."""
    await _throttle_votes(runtime, user.id)
    report = await service.report_review(uow, user.id, review_id, body.reason, body.note)
    return report_json(report)


# --------------------------------------------------------------------------------------------
# Staff


@router.get("/api/admin/reviews", responses=problems(400))
async def staff_reviews(
    uow: UowDep,
    runtime: RuntimeDep,
    _: StaffUser,
    state: service.State | None = None,
    stars: StarsFilter = None,
    flagged: bool | None = None,
    product_id: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Cursor = None,
    limit: Limit = service.MAX_PAGE,
) -> dict[str, Any]:
    """Reviews by state, stars, flag and product, newest first."""
    page = await service.staff_reviews(
        uow,
        service.StaffFilters(state=state, stars=stars, flagged=flagged, product_id=product_id),
        cursor=cursor,
        limit=limit,
        secret_key=runtime.settings.secret_key,
    )
    return _page_json(page, staff=True)


@router.get("/api/admin/reviews/settings")
async def review_settings(uow: UowDep, _: StaffUser) -> ReviewSettings:
    return ReviewSettings(auto_approve_star_only=await service.auto_approve_star_only(uow))


@router.put("/api/admin/reviews/settings")
async def change_review_settings(body: ReviewSettings, uow: UowDep, _: StaffUser) -> ReviewSettings:
    """Whether star-only reviews from verified buyers that the abuse filter lets through are
    published without waiting for staff."""
    value = await service.set_auto_approve_star_only(uow, body.auto_approve_star_only)
    return ReviewSettings(auto_approve_star_only=value)


def _actor(staff: UserInfo) -> str:
    return f"staff:{staff.id}"


@router.post("/api/admin/reviews/{review_id}/approve", responses=problems(409))
async def approve(review_id: str, uow: UowDep, staff: StaffUser) -> dict[str, Any]:
    review = await service.moderate(uow, review_id, "approve", actor=_actor(staff))
    return review_json(review, staff=True)


@router.post("/api/admin/reviews/{review_id}/reject", responses=problems(409))
async def reject(review_id: str, body: RejectIn, uow: UowDep, staff: StaffUser) -> dict[str, Any]:
    review = await service.moderate(
        uow, review_id, "reject", actor=_actor(staff), reason=body.reason
    )
    return review_json(review, staff=True)


@router.post("/api/admin/reviews/{review_id}/respond", responses=problems(409))
async def respond(review_id: str, body: RespondIn, uow: UowDep, _: StaffUser) -> dict[str, Any]:
    """The shop's public answer under the review (``null`` or empty takes it away)."""
    review = await service.respond(uow, review_id, body.text)
    return review_json(review, staff=True)
