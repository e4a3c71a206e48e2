"""Seller portal: offers, ``/seller/offers``. The seller's offers with their stock, a form to
create one for a catalog SKU, one to change an offer's price, shipping fee, handling days,
available units and whether it is for sale, and the CSV upload with its mode, answered with
the import's report (row number, column, message for each refused row).

Each form calls the marketplace service exactly as the seller API does (``create_offer``,
``update_offer``, ``import_offers``), for the caller's own seller: another seller's offer is a
404, as if it did not exist. A refusal naming a field is shown next to it; nothing of a refused
change is kept (each call runs in a savepoint of the request's unit of work)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from mercato.marketplace import service as marketplace
from mercato.money import format_minor
from mercato.problems import Problem
from mercato.runtime import UowDep
from mercato.web.admin.cfg_forms import (
    Errors,
    checked,
    problem_errors,
    read_form,
    text,
    whole_number,
)
from mercato.web.admin.ops_common import with_query
from mercato.web.deps import PageSeller
from mercato.web.security import CsrfChecked
from mercato.web.templating import flash, redirect, render

router = APIRouter()

IMPORT_MODES: tuple[tuple[marketplace.ImportMode, str], ...] = (
    ("add_update", "Add and update: each row is a whole offer; good rows are applied"),
    ("partial_update", "Partial update: change only the filled cells of existing offers"),
    ("replace", "Replace: all rows or none; offers the file does not name go off sale"),
)
MODE_BY_NAME: dict[str, marketplace.ImportMode] = {mode: mode for mode, _ in IMPORT_MODES}
MODE_LABELS: dict[str, str] = dict(IMPORT_MODES)
IMPORT_COLUMNS = "sku, price, shipping, quantity, handling_days, active"


def offer_path(offer_id: str) -> str:
    return f"/seller/offers/{quote(offer_id, safe='')}"


@router.get("/offers", response_class=HTMLResponse)
async def offer_list(
    request: Request,
    seller: PageSeller,
    uow: UowDep,
    after: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    page = await marketplace.seller_offer_page(uow, seller.seller_id, after=after or None)
    more = with_query("/seller/offers", after=page.next_after) if page.next_after else None
    return render(
        request,
        "seller/offers/list.html",
        {"page": page, "more": more, "modes": IMPORT_MODES, "columns": IMPORT_COLUMNS},
    )


# --------------------------------------------------------------------------------------------
# CSV upload (before /offers/{offer_id}, which would take "import" for an id)


def _import_page(
    request: Request,
    mode: str,
    *,
    report: marketplace.ImportReport | None = None,
    rows: list[marketplace.RowError] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "seller/offers/import.html",
        {
            "mode": mode,
            "mode_label": MODE_LABELS.get(mode, mode),
            "report": report,
            "rows": report.errors if report is not None else (rows or []),
            "error": error,
        },
        status_code=status_code,
    )


def _rejected_rows(problem: Problem) -> list[marketplace.RowError]:
    listed = problem.extra.get("rows")
    if not isinstance(listed, list):
        return []
    return [
        marketplace.RowError(int(r["row"]), r.get("column"), str(r["message"]))
        for r in listed
        if isinstance(r, dict)
    ]


@router.post("/offers/import", dependencies=[CsrfChecked], response_model=None)
async def import_offers(request: Request, seller: PageSeller, uow: UowDep) -> HTMLResponse:
    form = await read_form(request)
    mode = text(form, "mode")
    upload = form.get("file")
    chosen = MODE_BY_NAME.get(mode)
    if chosen is None:
        return _import_page(request, mode, error="Choose how to apply the file.", status_code=422)
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _import_page(request, mode, error="Choose a CSV file to upload.", status_code=422)
    data = await upload.read(marketplace.MAX_IMPORT_BYTES + 1)
    try:
        async with uow.begin_nested():
            report = await marketplace.import_offers(uow, seller.seller_id, data, chosen)
    except Problem as problem:
        if problem.code == "import_rejected":
            return _import_page(
                request,
                mode,
                rows=_rejected_rows(problem),
                error=problem.detail,
                status_code=422,
            )
        if problem.status in (401, 403, 404):
            raise
        return _import_page(request, mode, error=problem.detail, status_code=problem.status)
    return _import_page(request, mode, report=report)


# --------------------------------------------------------------------------------------------
# One offer


def _form_page(
    request: Request,
    values: dict[str, Any],
    errors: Errors | None = None,
    *,
    offer: marketplace.OfferInfo | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "seller/offers/form.html",
        {"values": values, "errors": errors or {}, "offer": offer},
        status_code=status_code,
    )


def _read_values(form: Any, *, with_sku: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "price": text(form, "price"),
        "shipping": text(form, "shipping"),
        "quantity": text(form, "quantity"),
        "handling_days": text(form, "handling_days"),
        "active": checked(form, "active"),
    }
    if with_sku:
        values["sku"] = text(form, "sku")
    return values


def _refused(problem: Problem) -> Errors:
    """The fields a service's refusal names; a refusal naming none is re-raised."""
    found = problem_errors(problem)
    if found is None and problem.code == "offer_exists":
        found = {"sku": problem.detail}
    if found is None:
        raise problem
    return found


@router.get("/offers/new", response_class=HTMLResponse)
async def new_offer(request: Request, seller: PageSeller) -> HTMLResponse:
    blank = {"sku": "", "price": "", "shipping": "0", "quantity": "0", "handling_days": "2"}
    return _form_page(request, {**blank, "active": True})


@router.post("/offers", dependencies=[CsrfChecked], response_model=None)
async def create_offer(request: Request, seller: PageSeller, uow: UowDep) -> Response:
    values = _read_values(await read_form(request), with_sku=True)
    errors: Errors = {}
    quantity = whole_number(values["quantity"], "quantity", errors, default=0)
    days = whole_number(values["handling_days"], "handling_days", errors, default=2)
    if not values["sku"]:
        errors["sku"] = "is required"
    if errors or quantity is None or days is None:
        return _form_page(request, values, errors, status_code=422)
    draft = marketplace.OfferDraft(
        price=values["price"],
        shipping=values["shipping"] or "0",
        quantity=quantity,
        handling_days=days,
        active=values["active"],
    )
    try:
        async with uow.begin_nested():
            offer = await marketplace.create_offer(uow, seller.seller_id, values["sku"], draft)
    except Problem as problem:
        return _form_page(request, values, _refused(problem), status_code=422)
    response = redirect("/seller/offers")
    flash(request, response, f"Offer for {offer.sku} created", "success")
    return response


def _offer_values(offer: marketplace.OfferInfo) -> dict[str, Any]:
    return {
        "price": format_minor(offer.price, offer.currency),
        "shipping": format_minor(offer.shipping_price, offer.currency),
        "quantity": str(offer.available),
        "handling_days": str(offer.handling_days),
        "active": offer.active,
    }


@router.get("/offers/{offer_id}", response_class=HTMLResponse)
async def edit_offer(
    offer_id: str, request: Request, seller: PageSeller, uow: UowDep
) -> HTMLResponse:
    offer = await marketplace.get_offer(uow, seller.seller_id, offer_id)
    return _form_page(request, _offer_values(offer), offer=offer)


@router.post("/offers/{offer_id}", dependencies=[CsrfChecked], response_model=None)
async def update_offer(
    offer_id: str, request: Request, seller: PageSeller, uow: UowDep
) -> Response:
    values = _read_values(await read_form(request), with_sku=False)
    errors: Errors = {}
    quantity = whole_number(values["quantity"], "quantity", errors)
    days = whole_number(values["handling_days"], "handling_days", errors)
    patch = marketplace.OfferPatch(
        price=values["price"],
        shipping=values["shipping"] or "0",
        quantity=quantity,
        handling_days=days,
        active=values["active"],
    )
    if errors:  # still a 404 for an offer that is not the seller's
        offer = await marketplace.get_offer(uow, seller.seller_id, offer_id)
        return _form_page(request, values, errors, offer=offer, status_code=422)
    try:
        async with uow.begin_nested():
            offer = await marketplace.update_offer(uow, seller.seller_id, offer_id, patch)
    except Problem as problem:
        refused = _refused(problem)
        offer = await marketplace.get_offer(uow, seller.seller_id, offer_id)
        return _form_page(request, values, refused, offer=offer, status_code=422)
    response = redirect("/seller/offers")
    flash(request, response, f"Offer for {offer.sku} saved", "success")
    return response
