"""The notifications staff API: the e-mail log (with each mail as a downloadable ``.eml``) under
``/api/admin/notifications``, webhook endpoints and their delivery logs under
``/api/admin/webhooks``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from mercato.identity.deps import StaffUser
from mercato.notifications import service
from mercato.notifications.schemas import (
    DeliveryOut,
    DeliveryPageOut,
    EmailOut,
    EmailPageOut,
    WebhookCreatedOut,
    WebhookIn,
    WebhookListOut,
    WebhookOut,
    WebhookPatch,
)
from mercato.openapi import problems
from mercato.problems import not_found
from mercato.runtime import RuntimeDep, UowDep

router = APIRouter(tags=["notifications"])

EMAILS = "/api/admin/notifications/emails"
WEBHOOKS = "/api/admin/webhooks"

Limit = Annotated[int, Query(ge=1, le=service.MAX_PAGE)]
Before = Annotated[str | None, Query(max_length=40)]
EmailStatus = Literal["pending", "sending", "sent", "failed", "dead"]
DeliveryStatus = Literal["pending", "sending", "delivered", "failed", "dead"]


# -- e-mails ---------------------------------------------------------------------------------------


@router.get(EMAILS, response_model=EmailPageOut)
async def list_emails(
    _staff: StaffUser,
    uow: UowDep,
    order_id: Annotated[str | None, Query(max_length=40)] = None,
    status: EmailStatus | None = None,
    before: Before = None,
    limit: Limit = 50,
) -> EmailPageOut:
    """The mails sent (or to be sent) to customers, newest first."""
    found = await service.list_emails(
        uow, order_id=order_id, status=status, before=before, limit=limit
    )
    return EmailPageOut(
        items=[EmailOut.of(e) for e in found],
        next_before=found[-1].id if len(found) == limit else None,
    )


@router.get(
    EMAILS + "/{email_id}",
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {}}, "description": "The mail as .eml"}},
)
async def download_email(email_id: str, _staff: StaffUser, uow: UowDep) -> Response:
    """The complete mail as an ``.eml`` file (opens in any mail client)."""
    found = await service.get_email(uow, email_id)
    if found is None:
        raise not_found("E-mail", email_id)
    info, raw = found
    name = info.file_name or f"{info.kind}-{info.id}.eml"
    return Response(
        raw.encode(),
        media_type="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# -- webhooks --------------------------------------------------------------------------------------


@router.post(WEBHOOKS, status_code=201, response_model=WebhookCreatedOut)
async def create_webhook(
    body: WebhookIn, _staff: StaffUser, uow: UowDep, runtime: RuntimeDep
) -> WebhookCreatedOut:
    """Register an endpoint. The answer carries its signing secret, which is never shown again.

    Deliveries are POSTed from the shop's worker, to public addresses only: a URL naming this
    machine or a loopback, private or link-local address is a 422 ``invalid_webhook_url``
    (unless the shop allows private targets), and a name that resolves to one is refused when
    a delivery connects.
    """
    endpoint, secret = await service.create_endpoint(
        uow,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        allow_private_targets=runtime.settings.webhook_allow_private_targets,
    )
    return WebhookCreatedOut.with_secret(endpoint, secret)


@router.get(WEBHOOKS, response_model=WebhookListOut)
async def list_webhooks(_staff: StaffUser, uow: UowDep) -> WebhookListOut:
    endpoints = await service.list_endpoints(uow)
    return WebhookListOut(
        items=[WebhookOut.of(e) for e in endpoints],
        event_types=list(service.WEBHOOK_EVENT_TYPES),
    )


@router.get(WEBHOOKS + "/{endpoint_id}", response_model=WebhookOut)
async def get_webhook(endpoint_id: str, _staff: StaffUser, uow: UowDep) -> WebhookOut:
    endpoint = await service.get_endpoint(uow, endpoint_id)
    if endpoint is None:
        raise not_found("Webhook endpoint", endpoint_id)
    return WebhookOut.of(endpoint)


@router.patch(WEBHOOKS + "/{endpoint_id}", response_model=WebhookOut)
async def update_webhook(
    endpoint_id: str, body: WebhookPatch, _staff: StaffUser, uow: UowDep, runtime: RuntimeDep
) -> WebhookOut:
    """Change the URL, event types, description, or switch the endpoint off and on (switching
    it on clears its failure count)."""
    endpoint = await service.update_endpoint(
        uow,
        endpoint_id,
        active=body.active,
        event_types=body.event_types,
        url=body.url,
        description=body.description,
        allow_private_targets=runtime.settings.webhook_allow_private_targets,
    )
    return WebhookOut.of(endpoint)


@router.post(WEBHOOKS + "/{endpoint_id}/rotate-secret", response_model=WebhookCreatedOut)
async def rotate_webhook_secret(
    endpoint_id: str, _staff: StaffUser, uow: UowDep
) -> WebhookCreatedOut:
    """A new signing secret (shown once); the old one stops working at once."""
    endpoint, secret = await service.rotate_secret(uow, endpoint_id)
    return WebhookCreatedOut.with_secret(endpoint, secret)


@router.delete(WEBHOOKS + "/{endpoint_id}", status_code=204, response_class=Response)
async def delete_webhook(endpoint_id: str, _staff: StaffUser, uow: UowDep) -> Response:
    await service.delete_endpoint(uow, endpoint_id)
    return Response(status_code=204)


@router.get(WEBHOOKS + "/{endpoint_id}/deliveries", response_model=DeliveryPageOut)
async def list_deliveries(
    endpoint_id: str,
    _staff: StaffUser,
    uow: UowDep,
    status: DeliveryStatus | None = None,
    event_id: Annotated[str | None, Query(max_length=40)] = None,
    before: Before = None,
    limit: Limit = 50,
) -> DeliveryPageOut:
    """The endpoint's delivery log, newest first."""
    found = await service.list_deliveries(
        uow, endpoint_id, status=status, event_id=event_id, before=before, limit=limit
    )
    return DeliveryPageOut(
        items=[DeliveryOut.of(d) for d in found],
        next_before=found[-1].id if len(found) == limit else None,
    )


@router.post(
    WEBHOOKS + "/{endpoint_id}/deliveries/{delivery_id}/retry",
    response_model=DeliveryOut,
    responses=problems(409),
)
async def retry_delivery(
    endpoint_id: str, delivery_id: str, _staff: StaffUser, uow: UowDep
) -> DeliveryOut:
    """Send a delivery again on the worker's next pass, with a fresh set of attempts."""
    return DeliveryOut.of(await service.retry_delivery(uow, endpoint_id, delivery_id))
