"""Flash sales for shoppers: the live and upcoming sales (``/flash-sales``) and a sale's page
(``/flash-sales/{sale_id}``) with its waiting room.

The page shows the sale (one read, :func:`~mercato.flashsale.service.sale_view`) and loads the
buyer's panel from a fragment (``…/queue``) that calls the waiting room's poll
(:func:`~mercato.flashsale.service.poll`), exactly as ``GET /api/flash-sales/{id}/queue/me``
does: the same limits, the admission pass run lazily on polls, and the presence that keeps a
waiting place. While the buyer waits (or holds units) the fragment asks for itself again after
the interval the service answers; a place ends its polling once it is sold out, expired or
bought. Joining (``POST …/queue``) calls :func:`~mercato.flashsale.service.join`.

Nothing here decides who is let in or when: the page only shows what the service says."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mercato.flashsale import service as flashsale
from mercato.problems import Problem
from mercato.ratelimit import client_ip
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.deps import PageUser, SignedInUser
from mercato.web.security import CsrfChecked
from mercato.web.templating import redirect, render

router = APIRouter(prefix="/flash-sales")
# The buyer's panel, asked every few seconds by every waiting buyer: without the pages' header
# (no "Deliver to" lookup per poll).
panel_router = APIRouter(prefix="/flash-sales")

ADMITTED_POLL_SECONDS = 10
"""An admitted buyer's panel looks again this often: to show "bought" or a hold that ran out."""


def wait_text(seconds: int | None) -> str:
    """An estimated wait as a shopper reads it."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "less than a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours, rest = divmod(minutes, 60)
    return f"about {hours} h {rest:02d} min"


def _sale_url(sale_id: str) -> str:
    return f"/flash-sales/{sale_id}"


@router.get("", response_class=HTMLResponse)
async def sale_list(request: Request, uow: UowDep, _user: PageUser) -> Response:
    """The sales running now and those to come, the soonest first."""
    views = await flashsale.list_sales(uow, current_only=True)
    return render(request, "shop/flashsale/list.html", {"views": views})


@router.get("/{sale_id}", response_class=HTMLResponse)
async def sale_page(sale_id: str, request: Request, uow: UowDep, _user: PageUser) -> Response:
    """The sale: its products, sale and regular prices, units left, a countdown to the start,
    and the buyer's panel (loaded from the fragment for a signed-in customer; a guest is asked
    to log in and come back)."""
    view = await flashsale.sale_view(uow, sale_id)
    return render(
        request,
        "shop/flashsale/sale.html",
        {"view": view, "sale": view.sale, "login_next": _sale_url(sale_id)},
    )


def _panel(
    request: Request,
    sale_id: str,
    state: flashsale.QueueState | None,
    *,
    ended: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    """The buyer's panel for ``state`` (``None``: no place yet, or the sale ``ended``)."""
    poll_every: int | None = None
    if state is not None and state.state == "waiting":
        poll_every = state.poll_after_seconds
    elif state is not None and state.state == "admitted":
        poll_every = max(state.poll_after_seconds, ADMITTED_POLL_SECONDS)
    context: dict[str, Any] = {
        "sale_id": sale_id,
        "state": state,
        "ended": ended,
        "poll_every": poll_every,
        "wait_text": wait_text(state.estimated_wait_seconds) if state else "",
        "checkout_url": f"{_sale_url(sale_id)}/checkout",
    }
    return render(request, "shop/flashsale/_queue.html", context, status_code=status_code)


@panel_router.get("/{sale_id}/queue", response_class=HTMLResponse)
async def queue_panel(
    sale_id: str, request: Request, runtime: RuntimeDep, user: SignedInUser
) -> Response:
    """The buyer's panel, and a poll: it keeps a waiting place and lets buyers in as they poll.
    No place yet: the join button. Too many polls: 429 (the page keeps the panel it has and
    asks again at its next turn)."""
    keeper = flashsale.keeper_for(runtime)
    try:
        state = await flashsale.poll(runtime.db, keeper, sale_id, user.id, ip=client_ip(request))
    except Problem as problem:
        if problem.code == "not_in_queue":
            return _panel(request, sale_id, None)
        raise
    return _panel(request, sale_id, state)


@panel_router.post("/{sale_id}/queue", dependencies=[CsrfChecked], response_model=None)
async def join_queue(
    sale_id: str, request: Request, runtime: RuntimeDep, user: SignedInUser
) -> Response:
    """Take a place (one per customer: joining again answers the same place). For htmx the
    new panel; for a plain form a redirect back to the sale's page."""
    keeper = flashsale.keeper_for(runtime)
    try:
        state = await flashsale.join(runtime.db, keeper, sale_id, user.id, ip=client_ip(request))
    except Problem as problem:
        if problem.code != "sale_ended":
            raise
        state = None
    if not request.headers.get("HX-Request"):
        return redirect(_sale_url(sale_id))
    return _panel(request, sale_id, state, ended=state is None)
