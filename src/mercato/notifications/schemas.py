"""What the notifications staff API takes and answers with."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from mercato.notifications.service import (
    WEBHOOK_EVENT_TYPES,
    DeliveryInfo,
    EmailInfo,
    EndpointInfo,
)
from mercato.text import PlainLine


class EmailOut(BaseModel):
    id: str
    event_id: str
    kind: str
    order_id: str | None
    to: str
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    file_name: str | None
    created_at: datetime
    sent_at: datetime | None
    download_url: str

    @classmethod
    def of(cls, email: EmailInfo) -> EmailOut:
        return cls(
            id=email.id,
            event_id=email.event_id,
            kind=email.kind,
            order_id=email.order_id,
            to=email.to_address,
            subject=email.subject,
            status=email.status,
            attempts=email.attempts,
            next_attempt_at=email.next_attempt_at,
            last_error=email.last_error,
            file_name=email.file_name,
            created_at=email.created_at,
            sent_at=email.sent_at,
            download_url=f"/api/admin/notifications/emails/{email.id}",
        )


class EmailPageOut(BaseModel):
    items: list[EmailOut]
    next_before: str | None = Field(description="Pass as ``before`` for the next (older) page")


Url = Annotated[
    str, PlainLine(max_length=4000), Field(examples=["https://example.com/hooks/mercato"])
]
Description = Annotated[str, PlainLine(max_length=200)]
# The document lists the event types; the service answers an unknown one with its own code.
EventType = Annotated[str, Field(json_schema_extra={"enum": [*WEBHOOK_EVENT_TYPES]})]


class WebhookIn(BaseModel):
    url: Url
    event_types: list[EventType] = Field(
        min_length=1, max_length=50, examples=[["OrderPlaced", "ShipmentCreated"]]
    )
    description: Description | None = None


class WebhookPatch(BaseModel):
    url: Url | None = None
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=50)
    active: bool | None = None
    description: Description | None = None


class WebhookOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    consecutive_failures: int
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: EndpointInfo) -> WebhookOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            event_types=endpoint.event_types,
            description=endpoint.description,
            active=endpoint.active,
            consecutive_failures=endpoint.consecutive_failures,
            disabled_at=endpoint.disabled_at,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="The signing secret; shown only in this answer")

    @classmethod
    def with_secret(cls, endpoint: EndpointInfo, secret: str) -> WebhookCreatedOut:
        return cls(**WebhookOut.of(endpoint).model_dump(), secret=secret)


class WebhookListOut(BaseModel):
    items: list[WebhookOut]
    event_types: list[str] = Field(description="Every event type an endpoint may subscribe to")


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    occurred_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, d: DeliveryInfo) -> DeliveryOut:
        return cls(
            id=d.id,
            endpoint_id=d.endpoint_id,
            event_id=d.event_id,
            event_type=d.event_type,
            payload=d.payload,
            occurred_at=d.occurred_at,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
        )


class DeliveryPageOut(BaseModel):
    items: list[DeliveryOut]
    next_before: str | None
