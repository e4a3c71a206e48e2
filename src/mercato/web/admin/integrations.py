"""Back office: webhook endpoints with their delivery logs, and the sent e-mails.

Everything goes through the notifications service, as ``/api/admin/webhooks`` and
``/api/admin/notifications/emails`` do; each mail links to that API's ``.eml`` download."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from mercato.db import UnitOfWork
from mercato.notifications import service as notifications
from mercato.notifications.schemas import EmailOut
from mercato.notifications.service import DeliveryInfo, EndpointInfo
from mercato.problems import Problem, not_found
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.admin.cfg_forms import Errors, problem_errors, read_form, text, texts
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import flash, redirect, render

router = APIRouter()

PAGE_SIZE = 50
EMAIL_STATUSES = ("pending", "sending", "sent", "failed", "dead")
DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed", "dead")


def _endpoint_values(form: Any = None, endpoint: EndpointInfo | None = None) -> dict[str, Any]:
    if form is not None:
        return {
            "url": text(form, "url"),
            "description": text(form, "description"),
            "event_types": [t for t in texts(form, "event_types") if t],
        }
    if endpoint is not None:
        return {
            "url": endpoint.url,
            "description": endpoint.description or "",
            "event_types": list(endpoint.event_types),
        }
    return {"url": "", "description": "", "event_types": []}


# --------------------------------------------------------------------------------------------
# Endpoints


async def _list_page(
    request: Request,
    uow: UnitOfWork,
    values: dict[str, Any] | None = None,
    errors: Errors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "endpoints": await notifications.list_endpoints(uow),
        "counts": await notifications.delivery_counts(uow),
        "event_types": notifications.WEBHOOK_EVENT_TYPES,
        "values": values or _endpoint_values(),
        "errors": errors or {},
    }
    return render(request, "admin/webhooks/list.html", context, status_code=status_code)


@router.get("/webhooks")
async def webhook_list(request: Request, uow: UowDep, _staff: PageStaff) -> HTMLResponse:
    return await _list_page(request, uow)


def _secret_page(
    request: Request, endpoint: EndpointInfo, secret: str, *, new: bool
) -> HTMLResponse:
    """The signing secret, this once: it is stored for signing but never shown again."""
    return render(
        request, "admin/webhooks/secret.html", {"endpoint": endpoint, "secret": secret, "new": new}
    )


@router.post("/webhooks", dependencies=[CsrfChecked], response_model=None)
async def create_webhook(
    request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse:
    values = _endpoint_values(await read_form(request))
    try:
        async with uow.begin_nested():
            endpoint, secret = await notifications.create_endpoint(
                uow,
                url=values["url"],
                event_types=values["event_types"],
                description=values["description"] or None,
                allow_private_targets=runtime.settings.webhook_allow_private_targets,
            )
    except Problem as problem:
        found = problem_errors(problem)
        if found is None:
            raise
        return await _list_page(request, uow, values, found, status_code=422)
    return _secret_page(request, endpoint, secret, new=True)


async def _endpoint_or_404(uow: UnitOfWork, endpoint_id: str) -> EndpointInfo:
    endpoint = await notifications.get_endpoint(uow, endpoint_id)
    if endpoint is None:
        raise not_found("Webhook endpoint", endpoint_id)
    return endpoint


def _delivery_row(d: DeliveryInfo) -> dict[str, Any]:
    return {"d": d, "payload": json.dumps(d.payload, indent=2, sort_keys=True, default=str)}


async def _detail_page(
    request: Request,
    uow: UnitOfWork,
    endpoint: EndpointInfo,
    *,
    status: str | None = None,
    before: str | None = None,
    values: dict[str, Any] | None = None,
    errors: Errors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    deliveries = await notifications.list_deliveries(
        uow, endpoint.id, status=status, before=before, limit=PAGE_SIZE
    )
    context = {
        "endpoint": endpoint,
        "deliveries": [_delivery_row(d) for d in deliveries],
        "next_before": deliveries[-1].id if len(deliveries) == PAGE_SIZE else None,
        "status": status or "",
        "paged": before is not None,
        "statuses": [("", "Any status"), *((s, s.capitalize()) for s in DELIVERY_STATUSES)],
        "event_types": notifications.WEBHOOK_EVENT_TYPES,
        "values": values or _endpoint_values(endpoint=endpoint),
        "errors": errors or {},
    }
    return render(request, "admin/webhooks/detail.html", context, status_code=status_code)


@router.get("/webhooks/{endpoint_id}")
async def webhook_detail(
    endpoint_id: str,
    request: Request,
    uow: UowDep,
    _staff: PageStaff,
    status: Annotated[str, Query(max_length=20)] = "",
    before: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:
    endpoint = await _endpoint_or_404(uow, endpoint_id)
    chosen = status if status in DELIVERY_STATUSES else None
    return await _detail_page(request, uow, endpoint, status=chosen, before=before or None)


@router.post("/webhooks/{endpoint_id}", dependencies=[CsrfChecked], response_model=None)
async def update_webhook(
    endpoint_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse | Response:
    endpoint = await _endpoint_or_404(uow, endpoint_id)
    values = _endpoint_values(await read_form(request))
    try:
        async with uow.begin_nested():
            await notifications.update_endpoint(
                uow,
                endpoint_id,
                url=values["url"],
                event_types=values["event_types"],
                description=values["description"],
                allow_private_targets=runtime.settings.webhook_allow_private_targets,
            )
    except Problem as problem:
        found = problem_errors(problem)
        if found is None:
            raise
        return await _detail_page(
            request, uow, endpoint, values=values, errors=found, status_code=422
        )
    response = redirect(f"/admin/webhooks/{endpoint_id}")
    flash(request, response, "Endpoint saved", "success")
    return response


@router.post("/webhooks/{endpoint_id}/active", dependencies=[CsrfChecked])
async def switch_webhook(
    endpoint_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> Response:
    form = await read_form(request)
    active = text(form, "active") == "1"
    endpoint = await notifications.update_endpoint(uow, endpoint_id, active=active)
    state = "enabled" if endpoint.active else "disabled: nothing is sent to it until enabled"
    back = "/admin/webhooks" if text(form, "back") == "list" else f"/admin/webhooks/{endpoint_id}"
    response = redirect(back)
    flash(request, response, f"Endpoint {endpoint.url} {state}", "success")
    return response


@router.post("/webhooks/{endpoint_id}/rotate-secret", dependencies=[CsrfChecked])
async def rotate_secret(
    endpoint_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> HTMLResponse:
    endpoint, secret = await notifications.rotate_secret(uow, endpoint_id)
    return _secret_page(request, endpoint, secret, new=False)


@router.get("/webhooks/{endpoint_id}/delete")
async def confirm_delete(
    endpoint_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> HTMLResponse:
    endpoint = await _endpoint_or_404(uow, endpoint_id)
    return render(request, "admin/webhooks/delete.html", {"endpoint": endpoint})


@router.post("/webhooks/{endpoint_id}/delete", dependencies=[CsrfChecked])
async def delete_webhook(
    endpoint_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> Response:
    endpoint = await _endpoint_or_404(uow, endpoint_id)
    await notifications.delete_endpoint(uow, endpoint_id)
    response = redirect("/admin/webhooks")
    flash(request, response, f"Endpoint {endpoint.url} deleted with its delivery log", "success")
    return response


@router.post(
    "/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry",
    dependencies=[CsrfChecked],
    response_model=None,
)
async def retry_delivery(
    endpoint_id: str, delivery_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> HTMLResponse | Response:
    """Queue a delivery again; htmx swaps in the updated row, a plain form goes back to the log."""
    htmx = bool(request.headers.get("HX-Request"))
    try:
        delivery = await notifications.retry_delivery(uow, endpoint_id, delivery_id)
    except Problem as problem:
        if problem.code != "delivery_in_progress":
            raise
        current = await notifications.get_delivery(uow, endpoint_id, delivery_id)
        if not htmx or current is None:
            response = redirect(f"/admin/webhooks/{endpoint_id}")
            flash(request, response, problem.detail, "error")
            return response
        return _row_fragment(request, endpoint_id, current, problem.detail)
    if htmx:
        return _row_fragment(request, endpoint_id, delivery, "queued again")
    response = redirect(f"/admin/webhooks/{endpoint_id}")
    flash(request, response, "Delivery queued: the worker sends it on its next pass", "success")
    return response


def _row_fragment(
    request: Request, endpoint_id: str, delivery: DeliveryInfo, note: str
) -> HTMLResponse:
    context = {"row": _delivery_row(delivery), "endpoint_id": endpoint_id, "note": note}
    return render(request, "admin/webhooks/_delivery.html", context)


# --------------------------------------------------------------------------------------------
# Sent e-mails


@router.get("/emails")
async def email_list(
    request: Request,
    uow: UowDep,
    _staff: PageStaff,
    status: Annotated[str, Query(max_length=20)] = "",
    before: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:
    chosen = status if status in EMAIL_STATUSES else None
    found = await notifications.list_emails(
        uow, status=chosen, before=before or None, limit=PAGE_SIZE
    )
    context = {
        # EmailOut carries the API's download link for each mail's .eml file.
        "emails": [EmailOut.of(e) for e in found],
        "next_before": found[-1].id if len(found) == PAGE_SIZE else None,
        "status": chosen or "",
        "paged": before is not None,
        "statuses": [("", "Any status"), *((s, s.capitalize()) for s in EMAIL_STATUSES)],
    }
    return render(request, "admin/emails/list.html", context)
