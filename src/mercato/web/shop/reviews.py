"""A customer's review from the product page: write, edit, delete, and "helpful" / "report"
on other customers' reviews. Each form posts here; the reviews service decides (verified
purchase, one review per product, the abuse filter, moderation) and the page goes back to the
product's reviews with what happened as a message. Writing and voting are throttled per
customer like the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData

from mercato.db import UnitOfWork
from mercato.problems import Problem
from mercato.ratelimit import client_ip, limiter_for
from mercato.reviews import service as reviews
from mercato.runtime import Runtime, RuntimeDep
from mercato.web.security import CsrfChecked
from mercato.web.shop.common import BriefSignedIn, form_of, text_field
from mercato.web.templating import field_errors, flash, redirect

router = APIRouter()

PASSED_THROUGH = frozenset({401, 403, 404})


def _back(product_id: str) -> str:
    return f"/p/{quote(product_id, safe='')}#reviews"


def _message(problem: Problem) -> str:
    fields = field_errors(problem)
    if fields:
        return " ".join(f"{name.capitalize()}: {message}." for name, message in fields.items())
    return problem.detail.rstrip(".") + "."


async def _act(
    request: Request,
    runtime: Runtime,
    product_id: str,
    work: Callable[[UnitOfWork], Awaitable[Any]],
    done: Callable[[Any], str],
) -> Response:
    """Run one service call in a unit of work of its own; back to the product's reviews with
    the outcome, or with the refusal as an error message (nothing was written)."""
    response = redirect(_back(product_id))
    try:
        result = await runtime.db.run(work)
    except Problem as exc:
        if exc.status in PASSED_THROUGH and exc.code not in ("purchase_not_verified", "own_review"):
            raise
        flash(request, response, _message(exc), "error")
        return response
    flash(request, response, done(result), "success")
    return response


def _rating(value: str) -> Any:
    """The stars as typed; anything that is not a whole number goes to the service as is,
    which refuses it naming the field."""
    return int(value) if value.isdigit() else value


def _typed(form: FormData) -> dict[str, Any]:
    """The stars, title and text of the review form, as the shopper typed them."""
    return {
        "rating": _rating(text_field(form, "rating", 4)),
        "title": text_field(form, "title", reviews.MAX_TITLE + 1) or None,
        "body": text_field(form, "body", reviews.MAX_BODY + 1) or None,
    }


async def _throttle(runtime: Runtime, kind: Literal["write", "vote"], user_id: str) -> None:
    await reviews.throttle_customer(limiter_for(runtime), runtime.settings, kind, user_id)


def _published(review: reviews.ReviewInfo) -> str:
    if review.state == "approved":
        return "Thank you! Your review is published."
    return "Thank you! Your review will appear once our team has read it."


@router.post("/p/{product_id}/reviews", dependencies=[CsrfChecked])
async def write_review(
    product_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    form = await form_of(request)
    await _throttle(runtime, "write", user.id)
    draft = reviews.ReviewDraft(**_typed(form))
    policy = reviews.AbusePolicy.from_settings(runtime.settings)
    ip = client_ip(request)
    return await _act(
        request,
        runtime,
        product_id,
        lambda uow: reviews.create_review(uow, user, product_id, draft, ip=ip, policy=policy),
        _published,
    )


@router.post("/reviews/{review_id}/edit", dependencies=[CsrfChecked])
async def edit_review(
    review_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    form = await form_of(request)
    product_id = text_field(form, "product_id", 40)
    await _throttle(runtime, "write", user.id)
    changes = reviews.ReviewChanges(**_typed(form))
    policy = reviews.AbusePolicy.from_settings(runtime.settings)
    ip = client_ip(request)
    return await _act(
        request,
        runtime,
        product_id,
        lambda uow: reviews.edit_review(uow, user, review_id, changes, ip=ip, policy=policy),
        _published,
    )


@router.post("/reviews/{review_id}/delete", dependencies=[CsrfChecked])
async def delete_review(
    review_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    form = await form_of(request)
    product_id = text_field(form, "product_id", 40)
    return await _act(
        request,
        runtime,
        product_id,
        lambda uow: reviews.delete_review(uow, user.id, review_id),
        lambda _: "Your review was deleted.",
    )


@router.post("/reviews/{review_id}/helpful", dependencies=[CsrfChecked])
async def helpful(
    review_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    form = await form_of(request)
    product_id = text_field(form, "product_id", 40)
    await _throttle(runtime, "vote", user.id)
    return await _act(
        request,
        runtime,
        product_id,
        lambda uow: reviews.vote_helpful(uow, user.id, review_id),
        lambda _: "Thank you for your feedback.",
    )


@router.post("/reviews/{review_id}/report", dependencies=[CsrfChecked])
async def report(
    review_id: str, request: Request, runtime: RuntimeDep, user: BriefSignedIn
) -> Response:
    form = await form_of(request)
    product_id = text_field(form, "product_id", 40)
    reason = text_field(form, "reason", 20)
    await _throttle(runtime, "vote", user.id)
    return await _act(
        request,
        runtime,
        product_id,
        lambda uow: reviews.report_review(uow, user.id, review_id, reason),
        lambda _: "Thank you: our team will look at this review.",
    )
