"""A flash sale's checkout page (``/flash-sales/{sale_id}/checkout``) and the page that follows
the purchase to its order (``/flash-sales/{sale_id}/purchases/{purchase_id}``).

The checkout page shows the units the buyer's admission holds, at the sale's price, with the
time left on the admission, the delivery address (prefilled from the customer's default one)
with the destination's shipping methods and the total
(:func:`~mercato.checkout.service.quote_purchase`, read-only), and the card. A buyer not (or no
longer) admitted sees where their place stands and a link back to the sale instead. Placing the
order calls :func:`~mercato.checkout.service.enqueue_purchase`, as
``POST /api/flash-sales/{id}/checkout`` does, with the admission token the page was drawn with
and an idempotency key made when the form was drawn: a double submit is the same purchase. A
refused attempt draws the form again with a fresh key (the purchase keeps each key's outcome).

The purchase's page asks :func:`~mercato.checkout.service.purchase_status` for itself every
second while the purchase is queued or processing (a fragment without the pages' header), then
shows the order, or what went wrong."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mercato.checkout import service as checkout
from mercato.checkout.schemas import FlashCheckoutIn
from mercato.db import UnitOfWork
from mercato.flashsale import service as flashsale
from mercato.identity import service as identity
from mercato.identity.service import UserInfo
from mercato.problems import Problem
from mercato.ratelimit import client_ip
from mercato.runtime import Runtime, RuntimeDep, UowDep
from mercato.web.deps import PageDestination, SignedInUser, page_destination
from mercato.web.security import CsrfChecked
from mercato.web.shop.checkout import (
    CheckoutForm,
    new_key,
    test_cards,
    with_saved_address,
)
from mercato.web.shop.common import (
    country_name,
    form_errors,
    form_of,
    served_countries,
    text_field,
)
from mercato.web.templating import field_errors, redirect, render

router = APIRouter(prefix="/flash-sales")
# The purchase's state, asked every second while it is placed: without the pages' header.
status_router = APIRouter(prefix="/flash-sales")

PURCHASE_POLL_SECONDS = 1
REGION_ERROR = "Letters, digits and hyphens only (e.g. CA or BY)."
PAYMENT_FAILURES = {
    "payment_declined": "Your card was declined",
    "insufficient_funds": "Your card has insufficient funds",
    "payment_processing_error": "The payment could not be processed",
}


def _sale_url(sale_id: str) -> str:
    return f"/flash-sales/{sale_id}"


def _purchase_url(sale_id: str, purchase_id: str) -> str:
    return f"/flash-sales/{sale_id}/purchases/{purchase_id}"


# --------------------------------------------------------------------------------------------
# What the checkout page shows


async def _place(
    uow: UnitOfWork, runtime: Runtime, sale_id: str, user_id: str
) -> flashsale.QueueState | None:
    """The buyer's place in the sale's waiting room; ``None`` without one."""
    try:
        return await flashsale.queue_state(uow, flashsale.keeper_for(runtime), sale_id, user_id)
    except Problem as problem:
        if problem.code == "not_in_queue":
            return None
        raise


async def _summary(
    uow: UnitOfWork,
    runtime: Runtime,
    sale_id: str,
    units: int,
    form: CheckoutForm,
    errors: dict[str, str],
    *,
    countries: list[str],
    default_country: str,
) -> dict[str, Any]:
    """The destination's shipping methods and the purchase's total (nothing is held by it)."""
    country = checkout.choose_country(countries, form.country, default_country)
    quote: checkout.PurchaseQuote | None = None
    quote_problem: Problem | None = None
    try:
        quote = await checkout.quote_purchase(
            runtime,
            uow,
            sale_id,
            units,
            country=country,
            region=form.region or None,
            shipping_method=form.shipping_method,
        )
    except Problem as exc:
        if "region" in field_errors(exc, short_names=True):
            errors.setdefault("region", REGION_ERROR)
        quote_problem = exc
    method = quote.priced.shipping_method if quote is not None else form.shipping_method
    return {
        "form": replace(form, country=country, shipping_method=method),
        "errors": errors,
        "quote": quote,
        "quote_problem": quote_problem,
        "countries": sorted(((c, country_name(c)) for c in countries), key=lambda x: x[1]),
    }


async def _buy_context(
    request: Request,
    uow: UnitOfWork,
    runtime: Runtime,
    sale_id: str,
    user: UserInfo,
    form: CheckoutForm,
    errors: dict[str, str] | None = None,
    *,
    default_country: str,
    prefill: bool = False,
) -> dict[str, Any]:
    """The sale, the buyer's place, and (when admitted) the form with its summary; with
    ``prefill``, the address from the saved one asked for, else the customer's default."""
    view = await flashsale.sale_view(uow, sale_id)
    state = await _place(uow, runtime, sale_id, user.id)
    admitted = state is not None and state.state == "admitted" and view.status != "ended"
    context: dict[str, Any] = {
        "view": view,
        "sale": view.sale,
        "state": state,
        "kind": state.state if state is not None else "none",
        "admitted": admitted,
        "sale_url": _sale_url(sale_id),
        "buy_url": f"{_sale_url(sale_id)}/checkout",
        "failure": None,
        "form": form,
        "errors": dict(errors or {}),
    }
    if not admitted or state is None:
        return context
    saved = await identity.list_addresses(uow, user.id)
    if prefill:
        form = with_saved_address(form, saved, request.query_params.get("address"))
    summary = await _summary(
        uow,
        runtime,
        sale_id,
        state.units,
        form,
        context["errors"],
        countries=served_countries(request),
        default_country=default_country,
    )
    return {
        **context,
        **summary,
        "admission_token": state.admission_token or "",
        "saved_addresses": saved,
        "sandbox": runtime.settings.payment_provider == "sandbox",
        "test_cards": test_cards(),
        "country_name": country_name,
    }


def _failure(problem: Problem) -> dict[str, str]:
    """A refused purchase in the shopper's words (at the door: nothing was queued)."""
    messages = {
        "validation_error": "Please correct the fields marked below.",
        "rate_limited": "Too many attempts at once: wait a moment, then place the order again.",
        "idempotency_conflict": "This form was already sent with other details: "
        "check them and place the order again.",
    }
    return {"code": problem.code, "message": messages.get(problem.code, problem.detail)}


# --------------------------------------------------------------------------------------------
# The checkout page


@router.get("/{sale_id}/checkout", response_class=HTMLResponse)
async def buy_page(
    sale_id: str,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: SignedInUser,
    destination: PageDestination,
) -> Response:
    """The held units, the address, shipping and card, and "Place order"; or, for a buyer not
    admitted (or no longer), where their place stands."""
    form = replace(
        CheckoutForm.read(request.query_params, name=user.name), idempotency_key=new_key()
    )
    context = await _buy_context(
        request,
        uow,
        runtime,
        sale_id,
        user,
        form,
        default_country=destination.country,
        prefill=True,
    )
    return render(request, "shop/flashsale/checkout.html", context)


@router.get("/{sale_id}/checkout/summary", response_class=HTMLResponse)
async def buy_summary(
    sale_id: str,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: SignedInUser,
    destination: PageDestination,
) -> Response:
    """The shipping methods and total for another destination or method (htmx swaps it into
    the form). Once the buyer holds nothing, the whole page is drawn again instead."""
    form = CheckoutForm.read(request.query_params)
    context = await _buy_context(
        request, uow, runtime, sale_id, user, form, default_country=destination.country
    )
    if not context["admitted"]:
        return Response(status_code=204, headers={"HX-Refresh": "true"})
    return render(request, "shop/flashsale/_buy_summary.html", context)


async def _form_again(
    request: Request,
    runtime: Runtime,
    sale_id: str,
    user: UserInfo,
    form: CheckoutForm,
    *,
    errors: dict[str, str],
    failure: dict[str, str] | None,
    status_code: int,
) -> Response:
    destination = await page_destination(request, runtime, user)
    async with runtime.db.transaction() as uow:
        context = await _buy_context(
            request, uow, runtime, sale_id, user, form, errors, default_country=destination.country
        )
    context["failure"] = failure
    return render(request, "shop/flashsale/checkout.html", context, status_code=status_code)


def _body(form: CheckoutForm, admission_token: str) -> dict[str, Any]:
    """The API's body from the page's form (a flash sale takes no promo code)."""
    body = form.body()
    del body["promo_code"]
    return {**body, "admission_token": admission_token}


@router.post("/{sale_id}/checkout", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def place_order(
    sale_id: str, request: Request, runtime: RuntimeDep, user: SignedInUser
) -> Response:
    """Queue the purchase (the API's call, with the form's idempotency key) and follow it on
    its page; a refusal draws the form again with the problem next to its field."""
    posted = await form_of(request)
    form = CheckoutForm.read(posted)
    if text_field(posted, "action", 20) == "update":
        return await _form_again(
            request, runtime, sale_id, user, form, errors={}, failure=None, status_code=200
        )
    try:
        body = FlashCheckoutIn.model_validate(
            _body(form, text_field(posted, "admission_token", 400))
        )
    except ValidationError as exc:
        failure = {"code": "validation_error", "message": "Please correct the fields marked below."}
        return await _form_again(
            request,
            runtime,
            sale_id,
            user,
            form,
            errors=form_errors(exc),
            failure=failure,
            status_code=422,
        )
    wanted = checkout.PurchaseRequest(
        admission_token=body.admission_token,
        shipping_address=body.shipping_address.model_dump(),
        payment_token=body.payment_token,
        shipping_method=body.shipping_method,
    )
    try:
        queued = await checkout.enqueue_purchase(
            runtime, user, sale_id, form.idempotency_key, wanted, ip=client_ip(request)
        )
    except Problem as exc:
        errors = field_errors(exc, short_names=True, default="invalid")
        if "region" in errors:
            errors["region"] = REGION_ERROR
        if exc.code in ("unknown_shipping_method", "shipping_method_unavailable"):
            errors.setdefault("shipping_method", exc.detail)
        return await _form_again(
            request,
            runtime,
            sale_id,
            user,
            replace(form, idempotency_key=new_key()),
            errors=errors,
            failure=_failure(exc),
            status_code=exc.status,
        )
    return redirect(_purchase_url(sale_id, queued.purchase_id))


# --------------------------------------------------------------------------------------------
# The purchase, followed to its order


def _failed(problem: dict[str, str] | None) -> dict[str, str]:
    """What a failed purchase means for the buyer. Every failure undoes the purchase: nothing
    stays charged, and the held units go back to the sale for the next buyer in line (the
    place is over; joining again queues at the back)."""
    code = (problem or {}).get("code", "")
    given_back = (
        "The unit held for you has gone back to the sale for the next buyer in line; "
        "you can join the queue again from the sale's page."
    )
    if code in PAYMENT_FAILURES:
        title = PAYMENT_FAILURES[code]
        message = f"{title}, so nothing was charged. {given_back}"
    elif code == "not_admitted":
        title = "Your time to buy ran out"
        message = (
            f"Your hold ran out before the order was placed; nothing was charged. {given_back}"
        )
    elif code in ("variant_sold_out", "sale_ended"):
        title = "Sold out"
        message = "The sale sold out or ended before your order was placed; nothing was charged."
    else:
        title = "Your order could not be placed"
        detail = (problem or {}).get("detail") or "Something went wrong."
        message = f"{detail} Nothing was charged. {given_back}"
    return {"code": code, "title": title, "message": message}


def _purchase_context(sale_id: str, status: checkout.PurchaseStatus) -> dict[str, Any]:
    waiting = status.status in ("queued", "processing")
    return {
        "sale_id": sale_id,
        "sale_url": _sale_url(sale_id),
        "status": status,
        "poll_url": f"{_purchase_url(sale_id, status.purchase_id)}/status" if waiting else None,
        "poll_every": PURCHASE_POLL_SECONDS,
        "failure": _failed(status.problem) if status.status == "failed" else None,
    }


@router.get("/{sale_id}/purchases/{purchase_id}", response_class=HTMLResponse)
async def purchase_page(
    sale_id: str, purchase_id: str, request: Request, runtime: RuntimeDep, user: SignedInUser
) -> Response:
    """ "Placing your order…", then the order or the problem. Another customer's: 404."""
    status = await checkout.purchase_status(runtime.db, sale_id, purchase_id, user.id)
    return render(request, "shop/flashsale/purchase.html", _purchase_context(sale_id, status))


@status_router.get("/{sale_id}/purchases/{purchase_id}/status", response_class=HTMLResponse)
async def purchase_fragment(
    sale_id: str, purchase_id: str, request: Request, runtime: RuntimeDep, user: SignedInUser
) -> Response:
    """The purchase's state, asked again by itself while it is placed."""
    status = await checkout.purchase_status(runtime.db, sale_id, purchase_id, user.id)
    return render(request, "shop/flashsale/_purchase.html", _purchase_context(sale_id, status))
