"""Notifications' public face: customer e-mails and signed webhooks, both fed from the outbox.

* :mod:`~mercato.notifications.emails`: which events become which mail, recording and logging
  them;
* :mod:`~mercato.notifications.webhooks`: endpoints, the deliveries an event fans out to, and
  what a delivery's outcome means;
* :mod:`~mercato.notifications.common`: the claim and backoff both senders use.

Every function here takes the caller's :class:`~mercato.db.UnitOfWork` first. Sending itself
is not here: it talks to SMTP servers and webhook endpoints between units of work of its own,
so the worker's drivers live in :mod:`~mercato.notifications.senders`.
"""

from __future__ import annotations

from mercato.notifications.common import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    CLAIM_BATCH,
    DELIVERIES,
    EMAIL_LEASE_SECONDS,
    EMAIL_MAX_ATTEMPTS,
    EMAILS,
    ENDPOINTS,
    MAX_PAGE,
    SEND_CONCURRENCY,
    backoff_seconds,
)
from mercato.notifications.emails import (
    EMAIL_EVENT_TYPES,
    EMAIL_KINDS,
    EmailInfo,
    email_context,
    email_kind,
    get_email,
    list_emails,
    record_email,
)
from mercato.notifications.webhooks import (
    WEBHOOK_EVENT_TYPES,
    DeliveryInfo,
    EndpointInfo,
    check_event_types,
    check_webhook_url,
    create_endpoint,
    delete_endpoint,
    delivery_counts,
    fan_out,
    get_delivery,
    get_endpoint,
    list_deliveries,
    list_endpoints,
    retry_delivery,
    rotate_secret,
    update_endpoint,
    webhook_body,
    webhook_headers,
)

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "CLAIM_BATCH",
    "DELIVERIES",
    "EMAILS",
    "EMAIL_EVENT_TYPES",
    "EMAIL_KINDS",
    "EMAIL_LEASE_SECONDS",
    "EMAIL_MAX_ATTEMPTS",
    "ENDPOINTS",
    "MAX_PAGE",
    "SEND_CONCURRENCY",
    "WEBHOOK_EVENT_TYPES",
    "DeliveryInfo",
    "EmailInfo",
    "EndpointInfo",
    "backoff_seconds",
    "check_event_types",
    "check_webhook_url",
    "create_endpoint",
    "delete_endpoint",
    "delivery_counts",
    "email_context",
    "email_kind",
    "fan_out",
    "get_delivery",
    "get_email",
    "get_endpoint",
    "list_deliveries",
    "list_emails",
    "list_endpoints",
    "record_email",
    "retry_delivery",
    "rotate_secret",
    "update_endpoint",
    "webhook_body",
    "webhook_headers",
]
