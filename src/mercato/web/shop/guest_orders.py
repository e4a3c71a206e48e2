"""A guest's order without an account: the page the order's mails link to (its access token in
the URL, carried by its cancel and return forms), and finding an order by its number and
e-mail. Both go through the orders service's one rule for who may act on an order; the lookup
is the same rate-limited service call as ``GET /api/orders/lookup``."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mercato.orders import service as orders
from mercato.problems import Problem
from mercato.ratelimit import client_ip
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.security import CsrfChecked
from mercato.web.shop.account import cancel_from_page, return_from_page, show_order
from mercato.web.shop.common import BriefUser, form_of, text_field
from mercato.web.templating import redirect, render

router = APIRouter()

TOKEN_MAX_LENGTH = 200
NOT_FOUND = "No order matches this order number and e-mail address."


def guest_order_url(order_id: str, token: str) -> str:
    """The page that opens ``order_id`` by its access token (what the order's mails link to)."""
    return f"/orders/{quote(order_id, safe='')}?token={quote(token, safe='')}"


def _caller(user_id: str | None, token: str) -> orders.OrderCaller:
    return orders.OrderCaller(user_id=user_id, access_token=token[:TOKEN_MAX_LENGTH] or None)


@router.get("/orders/lookup", response_class=HTMLResponse)
async def lookup_page(request: Request) -> Response:
    return render(request, "shop/order_lookup.html", {"number": "", "email": "", "error": None})


@router.post("/orders/lookup", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def lookup(request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    """Find an order by number and e-mail; the same answer for an unknown order and a wrong
    e-mail, counted against the caller's address like the API's lookup."""
    form = await form_of(request)
    number = text_field(form, "order_number", 100)
    email = text_field(form, "email", 320)
    try:
        found = await orders.lookup_order(
            uow,
            number,
            email,
            secret_key=runtime.settings.secret_key,
            throttle_by=orders.LookupThrottle.for_caller(runtime, client_ip(request)),
        )
    except Problem as exc:
        if exc.code == "rate_limited":
            error = "Too many attempts. Please wait a minute and try again."
        else:
            error = NOT_FOUND
        context = {"number": number, "email": email, "error": error}
        return render(request, "shop/order_lookup.html", context, status_code=exc.status)
    return redirect(guest_order_url(found.order.id, found.access_token))


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def guest_order_page(
    order_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, user: BriefUser
) -> Response:
    """An order opened by the link in its mails (or found by a lookup)."""
    token = request.query_params.get("token", "")
    caller = _caller(user.id if user is not None else None, token)
    return await show_order(
        request, uow, runtime, order_id, caller, guest_order_url(order_id, token)
    )


@router.post("/orders/{order_id}/cancel", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def guest_cancel(order_id: str, request: Request, runtime: RuntimeDep) -> Response:
    token = text_field(await form_of(request), "token", TOKEN_MAX_LENGTH)
    back = guest_order_url(order_id, token)
    return await cancel_from_page(request, runtime, order_id, _caller(None, token), back)


@router.post("/orders/{order_id}/returns", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def guest_return(order_id: str, request: Request, runtime: RuntimeDep) -> Response:
    token = text_field(await form_of(request), "token", TOKEN_MAX_LENGTH)
    back = guest_order_url(order_id, token)
    return await return_from_page(request, runtime, order_id, _caller(None, token), back)
