"""The worker's senders: mails to SMTP (or ``.eml`` files) and webhooks to their endpoints.

Sending talks to another system, which must never happen inside a database transaction: each
pass claims due rows in one short unit of work, sends with none open, and records every outcome
in another (see :mod:`~mercato.notifications.common` for why a crash in between sends again
rather than loses). These drivers therefore take the process's database and open those units of
work themselves, as the worker's jobs and the tests call them; the rules they apply (what is
due, what a failure means) are the service's.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Row, select

from mercato.db import Database, utcnow
from mercato.notifications import egress, emails, webhooks
from mercato.notifications.common import (
    BACKOFF_BASE_SECONDS,
    CLAIM_BATCH,
    DELIVERIES,
    EMAIL_LEASE_SECONDS,
    EMAIL_MAX_ATTEMPTS,
    EMAILS,
    ENDPOINTS,
    SEND_CONCURRENCY,
    bury_abandoned,
    claim,
)
from mercato.settings import Settings

log = logging.getLogger("mercato.notifications")


# -- e-mails ---------------------------------------------------------------------------------------


async def _send_email(
    db: Database, settings: Settings, row: Row[Any], now: datetime, backoff_base: float
) -> bool:
    try:
        # Bounded as a whole (the client's own timeout is per operation), well inside the lease.
        async with asyncio.timeout(EMAIL_LEASE_SECONDS / 2):
            file_name = await emails.transport(settings, row)
    except Exception as exc:  # any transport failure is retried later
        log.warning(
            "mail %s to %s failed (attempt %d): %s", row.id, row.to_address, row.attempts, exc
        )
        async with db.transaction() as uow:
            await emails.email_failed(uow, row, exc, now, backoff_base)
        return False
    async with db.transaction() as uow:
        await emails.email_sent(uow, row, now, file_name)
    return True


async def send_due_emails(
    db: Database,
    settings: Settings,
    *,
    now: datetime | None = None,
    backoff_base: float = BACKOFF_BASE_SECONDS,
    limit: int = CLAIM_BATCH,
) -> int:
    """Send the mails that are due; returns how many were sent."""
    now = now or utcnow()
    async with db.transaction() as uow:
        await bury_abandoned(
            uow,
            EMAILS,
            now=now,
            max_attempts=EMAIL_MAX_ATTEMPTS,
            error="the sender stopped during the last attempt",
        )
    sent = 0
    # One mail at a time, each claimed just before it is sent, so a lease only ever has to
    # cover one SMTP conversation (and mail servers throttle bursts anyway).
    for _ in range(limit):
        async with db.transaction() as uow:
            rows = await claim(
                uow,
                EMAILS,
                now=now,
                lease_seconds=EMAIL_LEASE_SECONDS,
                max_attempts=EMAIL_MAX_ATTEMPTS,
                limit=1,
            )
        if not rows:
            break
        if not await _send_email(db, settings, rows[0], now, backoff_base):
            break  # the server is probably down: the rest waits for the next pass
        sent += 1
    return sent


# -- webhooks --------------------------------------------------------------------------------------


async def _deliver_one(
    db: Database,
    settings: Settings,
    http: httpx.AsyncClient,
    endpoint: Row[Any] | None,
    row: Row[Any],
    now: datetime,
    backoff_base: float,
) -> bool:
    if endpoint is None:  # deleted meanwhile: its deliveries went with it
        return False
    try:
        # Bounded as a whole: httpx's timeout applies to each read, not to a slow trickle.
        async with asyncio.timeout(settings.webhook_timeout_seconds):
            code, error = await webhooks.post(http, endpoint, row, now)
    except TimeoutError:
        code, error = None, "timed out"
    if error is None:
        async with db.transaction() as uow:
            await webhooks.delivery_succeeded(uow, row, code, now)
        return True
    log.info("webhook %s to %s failed (attempt %d): %s", row.id, endpoint.url, row.attempts, error)
    async with db.transaction() as uow:
        disabled = await webhooks.delivery_failed(
            uow, settings, row, code, error, now, backoff_base
        )
    if disabled:
        log.warning(
            "webhook endpoint %s disabled after %d consecutive failures",
            row.endpoint_id,
            settings.webhook_disable_after_failures,
        )
    return False


async def deliver_webhooks(
    db: Database,
    settings: Settings,
    *,
    now: datetime | None = None,
    backoff_base: float = BACKOFF_BASE_SECONDS,
    client: httpx.AsyncClient | None = None,
    limit: int = CLAIM_BATCH,
) -> int:
    """Send the deliveries that are due (to active endpoints); returns how many succeeded."""
    now = now or utcnow()
    max_attempts = settings.webhook_max_attempts
    async with db.transaction() as uow:
        await bury_abandoned(
            uow,
            DELIVERIES,
            now=now,
            max_attempts=max_attempts,
            error="the worker stopped during the last attempt",
        )
    active = select(ENDPOINTS.c.id).where(ENDPOINTS.c.active.is_(True))
    # The client (and its TLS context, tens of milliseconds to build) only when there is
    # something to send: this runs every few seconds in an idle shop.
    http = client
    delivered = 0
    claimed = 0
    try:
        # Rounds of at most SEND_CONCURRENCY rows, all sent at once: every claimed row is being
        # sent while its lease (twice the timeout) runs, never waiting in a queue behind others.
        while claimed < limit:
            async with db.transaction() as uow:
                rows = await claim(
                    uow,
                    DELIVERIES,
                    now=now,
                    lease_seconds=settings.webhook_timeout_seconds * 2,
                    max_attempts=max_attempts,
                    limit=min(SEND_CONCURRENCY, limit - claimed),
                    extra=[DELIVERIES.c.endpoint_id.in_(active.scalar_subquery())],
                )
            if not rows:
                break
            if http is None:
                http = egress.webhook_client(
                    timeout=settings.webhook_timeout_seconds,
                    allow_private_targets=settings.webhook_allow_private_targets,
                )
            claimed += len(rows)
            async with db.transaction() as uow:
                endpoints = await webhooks.endpoints_by_id(uow, {r.endpoint_id for r in rows})
            results = await asyncio.gather(
                *(
                    _deliver_one(
                        db, settings, http, endpoints.get(r.endpoint_id), r, now, backoff_base
                    )
                    for r in rows
                )
            )
            delivered += sum(results)
    finally:
        if client is None and http is not None:
            await http.aclose()
    return delivered
