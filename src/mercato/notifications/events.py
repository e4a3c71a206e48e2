"""The notifications worker: outbox consumers (mails to record, webhooks to fan out) and the
senders.

The consumers are delivered at least once by the worker's outbox pass, like every other
consumer; recording is idempotent per (event, kind) and (endpoint, event).
"""

from __future__ import annotations

from mercato.events import Consumer, Event, dispatcher
from mercato.notifications import senders, service
from mercato.runtime import Runtime
from mercato.worker import Job

EMAIL_CONSUMER = "notifications-email"
WEBHOOK_CONSUMER = "notifications-webhooks"

SEND_INTERVAL = 30.0
"""Retries are due on this grid; new mails and deliveries go out right after the outbox pass
that recorded them."""


async def record_email(runtime: Runtime, event: Event) -> None:
    async with runtime.db.transaction() as uow:
        await service.record_email(uow, runtime, event)


async def fan_out(runtime: Runtime, event: Event) -> None:
    async with runtime.db.transaction() as uow:
        await service.fan_out(uow, event)


async def consume_outbox(runtime: Runtime) -> int:
    """Record the mails and webhook deliveries for new events (this module's share of the
    worker's outbox pass); returns events handled."""
    return await dispatcher.dispatch_once(runtime, only=(EMAIL_CONSUMER, WEBHOOK_CONSUMER))


async def send_emails(runtime: Runtime) -> int:
    return await senders.send_due_emails(runtime.db, runtime.settings)


async def deliver_webhooks(runtime: Runtime) -> int:
    return await senders.deliver_webhooks(runtime.db, runtime.settings)


CONSUMERS = (
    Consumer.of(EMAIL_CONSUMER, service.EMAIL_EVENT_TYPES, record_email),
    Consumer.of(WEBHOOK_CONSUMER, service.WEBHOOK_EVENT_TYPES, fan_out),
)
JOBS = (
    Job("notifications.send_emails", SEND_INTERVAL, send_emails, after_delivery=True),
    Job("notifications.deliver_webhooks", SEND_INTERVAL, deliver_webhooks, after_delivery=True),
)
