"""Back office: reviews. ``/admin/reviews`` is the moderation queue (by state, stars, flag and
product; waiting reviews first by default) where staff approve, reject with a reason, or
answer a review in public, in place: with htmx the review's moderation cell is swapped, a
plain form goes back to the queue. The switch for publishing star-only reviews from verified
buyers at once is on the same page. Every decision is the reviews service's, as in the staff
API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse

from mercato.db import UnitOfWork
from mercato.problems import Problem
from mercato.reviews import service as reviews
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.admin.ops_common import actor_of, problem_message, with_query
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import field_errors, flash, redirect, render

router = APIRouter()

LIST_LIMIT = 50
FLAG_LABELS = {
    "link": "Contains a link",
    "repeated_text": "Same text as another review",
    "burst_customer": "Many reviews from this customer",
    "burst_ip": "Many reviews from this address",
    "new_account_extreme": "New account, extreme ratings",
}
DONE = {"approve": "Review approved and published", "reject": "Review rejected"}


@router.get("/reviews", response_class=HTMLResponse)
async def review_queue(
    request: Request,
    staff: PageStaff,
    uow: UowDep,
    runtime: RuntimeDep,
    state: Annotated[str, Query(max_length=16)] = "pending",
    stars: Annotated[str, Query(max_length=2)] = "",
    flagged: Annotated[str, Query(max_length=8)] = "",
    product: Annotated[str, Query(max_length=40)] = "",
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    chosen_state = state if state in reviews.STATES else ""
    chosen_stars = int(stars) if stars in ("1", "2", "3", "4", "5") else None
    chosen_flag = {"yes": True, "no": False}.get(flagged)
    filters = reviews.StaffFilters(
        state=chosen_state or None,
        stars=chosen_stars,
        flagged=chosen_flag,
        product_id=product.strip() or None,
    )
    base = {
        "state": chosen_state or "all",
        "stars": str(chosen_stars or ""),
        "flagged": flagged if chosen_flag is not None else "",
        "product": product.strip(),
    }
    try:
        queue = await reviews.moderation_queue(
            uow, filters, cursor=cursor, limit=LIST_LIMIT, secret_key=runtime.settings.secret_key
        )
    except Problem as exc:
        if exc.code != "invalid_cursor":
            raise
        return redirect(with_query("/admin/reviews", **base))
    next_cursor = queue.page.next_cursor
    return render(
        request,
        "admin/reviews/list.html",
        {
            "queue": queue,
            "filters": base,
            "states": reviews.STATES,
            "flag_labels": FLAG_LABELS,
            "next_href": with_query("/admin/reviews", **base, cursor=next_cursor)
            if next_cursor
            else None,
            "back": with_query("/admin/reviews", **base),
            "tab_href": lambda s: with_query("/admin/reviews", **{**base, "state": s or "all"}),
        },
    )


def _cell(
    request: Request, review: reviews.ReviewInfo, back: str, note: str = "", error: str = ""
) -> HTMLResponse:
    return render(
        request,
        "admin/reviews/_moderation.html",
        {"r": review, "back": back, "note": note, "error": error, "flag_labels": FLAG_LABELS},
    )


async def _decide(
    request: Request,
    runtime: RuntimeDep,
    review_id: str,
    back: str,
    work: Any,
    done: str,
) -> Response:
    """Run one service call in its own unit of work; answer htmx with the review's updated
    moderation cell, a plain form with a redirect to the queue and a message."""
    htmx = bool(request.headers.get("HX-Request"))
    target = back if back.startswith("/admin/reviews") else "/admin/reviews"
    try:
        review = await runtime.db.run(work)
    except Problem as exc:
        if exc.status in (401, 403, 404):
            raise
        fields = field_errors(exc)
        message = (
            " ".join(f"{k.capitalize()}: {v}." for k, v in fields.items())
            if fields
            else problem_message(exc)
        )
        if htmx:
            async with runtime.db.transaction() as uow:
                current = await reviews.get_review(uow, review_id)
            if current is not None:
                return _cell(request, current, target, error=message)
        response = redirect(target)
        flash(request, response, message, "error")
        return response
    if htmx:
        return _cell(request, review, target, note=done)
    response = redirect(target)
    flash(request, response, done, "success")
    return response


Back = Annotated[str, Form(max_length=2000)]


@router.post("/reviews/{review_id}/approve", dependencies=[CsrfChecked])
async def approve(
    review_id: str, request: Request, staff: PageStaff, runtime: RuntimeDep, back: Back = ""
) -> Response:
    async def work(uow: UnitOfWork) -> reviews.ReviewInfo:
        return await reviews.moderate(uow, review_id, "approve", actor=actor_of(staff))

    return await _decide(request, runtime, review_id, back, work, DONE["approve"])


@router.post("/reviews/{review_id}/reject", dependencies=[CsrfChecked])
async def reject(
    review_id: str,
    request: Request,
    staff: PageStaff,
    runtime: RuntimeDep,
    reason: Annotated[str, Form(max_length=1000)] = "",
    back: Back = "",
) -> Response:
    async def work(uow: UnitOfWork) -> reviews.ReviewInfo:
        return await reviews.moderate(
            uow, review_id, "reject", actor=actor_of(staff), reason=reason or None
        )

    return await _decide(request, runtime, review_id, back, work, DONE["reject"])


@router.post("/reviews/{review_id}/respond", dependencies=[CsrfChecked])
async def respond(
    review_id: str,
    request: Request,
    staff: PageStaff,
    runtime: RuntimeDep,
    text: Annotated[str, Form(max_length=5000)] = "",
    back: Back = "",
) -> Response:
    async def work(uow: UnitOfWork) -> reviews.ReviewInfo:
        return await reviews.respond(uow, review_id, text or None)

    done = "Response published" if text.strip() else "Response removed"
    return await _decide(request, runtime, review_id, back, work, done)


@router.post("/reviews/settings", dependencies=[CsrfChecked])
async def change_settings(
    request: Request,
    staff: PageStaff,
    runtime: RuntimeDep,
    auto_approve_star_only: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    value = auto_approve_star_only == "on"
    await runtime.db.run(lambda uow: reviews.set_auto_approve_star_only(uow, value))
    response = redirect("/admin/reviews")
    message = (
        "Star-only reviews from verified buyers are published at once"
        if value
        else "Every review now waits for staff"
    )
    flash(request, response, message, "success")
    return response
