"""Signed webhooks. Staff register endpoints with the event types they want. Each matching
event becomes one ``notifications_webhook_deliveries`` row per endpoint (unique per (endpoint,
event)); the sender (:mod:`~mercato.notifications.senders`) POSTs it as JSON, signed with the
endpoint's secret (:mod:`~mercato.notifications.signing`), and records each outcome here. A
failure is retried with exponential backoff and jitter; after the maximum number of attempts the
row is ``dead`` (staff may retry it). An endpoint that keeps failing is disabled; one success
resets its count.

Webhook URLs are called from the worker process, so an endpoint must not be a way into the
shop's own network: loopback, private and link-local targets are refused when an endpoint is
registered and again when each delivery connects (see :mod:`~mercato.notifications.egress`),
unless ``MERCATO_WEBHOOK_ALLOW_PRIVATE_TARGETS`` allows them. A firewall on the worker's egress
is still a good second wall.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Row, delete, func, select, update

from mercato.db import UnitOfWork, utcnow
from mercato.events import Event
from mercato.ids import new_id
from mercato.notifications import egress, signing
from mercato.notifications.common import (
    DELIVERIES,
    ENDPOINTS,
    MAX_PAGE,
    MAX_URL_LENGTH,
    backoff_seconds,
    dialect_insert,
    short,
)
from mercato.problems import Problem, not_found, validation_problem
from mercato.settings import Settings
from mercato.text import check_plain, refused_character

log = logging.getLogger("mercato.notifications")

# What an endpoint may subscribe to: the commerce events an integration acts on.
WEBHOOK_EVENT_TYPES: tuple[str, ...] = (
    "OrderPlaced",
    "OrderStatusChanged",
    "PaymentAuthorized",
    "PaymentCaptured",
    "PaymentFailed",
    "PaymentRefunded",
    "PaymentVoided",
    "ShipmentCreated",
    "ShipmentDelivered",
    "ReturnRequested",
    "ReturnReceived",
    "ReturnRejected",
    "RefundIssued",
    "ProductCreated",
    "ProductUpdated",
    "ProductArchived",
)


# -- webhook endpoints -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    id: str
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    consecutive_failures: int
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


def _endpoint_info(row: Row[Any]) -> EndpointInfo:
    return EndpointInfo(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types),
        description=row.description,
        active=row.active,
        consecutive_failures=row.consecutive_failures,
        disabled_at=row.disabled_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _bad_url(message: str) -> Problem:
    return validation_problem("url", message, code="invalid_webhook_url")


def check_webhook_url(url: str, *, allow_private_targets: bool = False) -> str:
    """An absolute http(s) URL with a host, no credentials, no fragment, no whitespace, and
    (unless ``allow_private_targets``) no host that is this machine or a non-public address;
    else 422 ``invalid_webhook_url``."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH:
        raise _bad_url(f"must be 1 to {MAX_URL_LENGTH} characters")
    if any(ch.isspace() for ch in url) or refused_character(url) is not None:
        raise _bad_url("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError as exc:
        raise _bad_url("is not a valid URL") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise _bad_url("must be an http or https URL")
    if not parts.hostname:
        raise _bad_url("must name a host")
    if parts.username is not None or parts.password is not None:
        raise _bad_url("must not contain credentials")
    if parts.fragment:
        raise _bad_url("must not contain a fragment")
    if not allow_private_targets and (problem := egress.url_host_problem(parts.hostname)):
        raise _bad_url(problem)
    return url


def check_event_types(event_types: Iterable[str]) -> list[str]:
    """Known, de-duplicated, sorted; else 422 ``unknown_event_type`` (or ``validation_error``
    for an empty list)."""
    chosen = sorted(set(event_types))
    if not chosen:
        raise validation_problem("event_types", "must name at least one event type")
    unknown = [t for t in chosen if t not in WEBHOOK_EVENT_TYPES]
    if unknown:
        raise validation_problem(
            "event_types",
            f"unknown event type(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(WEBHOOK_EVENT_TYPES)}",
            code="unknown_event_type",
        )
    return chosen


def _check_description(description: str | None) -> str | None:
    if description is None:
        return None
    description = description.strip()
    check_plain("description", description)
    if len(description) > 200:
        raise validation_problem("description", "must be at most 200 characters")
    return description or None


async def create_endpoint(
    uow: UnitOfWork,
    *,
    url: str,
    event_types: Collection[str],
    description: str | None = None,
    allow_private_targets: bool = False,
) -> tuple[EndpointInfo, str]:
    """Register an endpoint; returns it and its signing secret (shown to staff only now)."""
    url = check_webhook_url(url, allow_private_targets=allow_private_targets)
    types = check_event_types(event_types)
    description = _check_description(description)
    secret = signing.new_secret()
    now = utcnow()
    endpoint_id = new_id("whk")
    row = (
        await uow.execute(
            ENDPOINTS.insert()
            .values(
                id=endpoint_id,
                url=url,
                secret=secret,
                event_types=types,
                description=description,
                active=True,
                consecutive_failures=0,
                created_at=now,
                updated_at=now,
            )
            .returning(*ENDPOINTS.c)
        )
    ).one()
    log.info("webhook endpoint %s registered for %s", endpoint_id, ", ".join(types))
    return _endpoint_info(row), secret


async def get_endpoint(uow: UnitOfWork, endpoint_id: str) -> EndpointInfo | None:
    row = (await uow.execute(select(ENDPOINTS).where(ENDPOINTS.c.id == endpoint_id))).first()
    return None if row is None else _endpoint_info(row)


async def list_endpoints(uow: UnitOfWork) -> list[EndpointInfo]:
    rows = await uow.execute(select(ENDPOINTS).order_by(ENDPOINTS.c.created_at, ENDPOINTS.c.id))
    return [_endpoint_info(r) for r in rows]


async def update_endpoint(
    uow: UnitOfWork,
    endpoint_id: str,
    *,
    active: bool | None = None,
    event_types: Collection[str] | None = None,
    url: str | None = None,
    description: str | None = None,
    allow_private_targets: bool = False,
) -> EndpointInfo:
    """Change an endpoint. Turning it back on also clears its failure count, so a disabled
    endpoint gets a fresh start (its pending deliveries resume)."""
    values: dict[str, Any] = {}
    if url is not None:
        values["url"] = check_webhook_url(url, allow_private_targets=allow_private_targets)
    if event_types is not None:
        values["event_types"] = check_event_types(event_types)
    if description is not None:
        values["description"] = _check_description(description)
    if active is True:
        values.update(active=True, consecutive_failures=0, disabled_at=None)
    elif active is False:
        values["active"] = False
    if await get_endpoint(uow, endpoint_id) is None:
        raise not_found("Webhook endpoint", endpoint_id)
    if values:
        values["updated_at"] = utcnow()
        await uow.execute(update(ENDPOINTS).where(ENDPOINTS.c.id == endpoint_id).values(**values))
    found = await get_endpoint(uow, endpoint_id)
    assert found is not None
    return found


async def rotate_secret(uow: UnitOfWork, endpoint_id: str) -> tuple[EndpointInfo, str]:
    """A new signing secret for an endpoint (the old one stops working at once)."""
    secret = signing.new_secret()
    done = await uow.changed(
        update(ENDPOINTS)
        .where(ENDPOINTS.c.id == endpoint_id)
        .values(secret=secret, updated_at=utcnow())
    )
    if done != 1:
        raise not_found("Webhook endpoint", endpoint_id)
    found = await get_endpoint(uow, endpoint_id)
    assert found is not None
    return found, secret


async def delete_endpoint(uow: UnitOfWork, endpoint_id: str) -> None:
    """Remove an endpoint with its delivery log (nothing more is sent to it)."""
    if await get_endpoint(uow, endpoint_id) is None:
        raise not_found("Webhook endpoint", endpoint_id)
    await uow.execute(delete(DELIVERIES).where(DELIVERIES.c.endpoint_id == endpoint_id))
    await uow.execute(delete(ENDPOINTS).where(ENDPOINTS.c.id == endpoint_id))
    log.info("webhook endpoint %s deleted", endpoint_id)


# -- webhook deliveries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryInfo:
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


def _delivery_info(row: Row[Any]) -> DeliveryInfo:
    return DeliveryInfo(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        payload=dict(row.payload),
        occurred_at=row.occurred_at,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


async def fan_out(uow: UnitOfWork, event: Event) -> int:
    """One delivery per active endpoint subscribed to the event's type and registered before
    it happened; idempotent (a redelivered event adds nothing). Returns rows added."""
    e = ENDPOINTS.c
    endpoints = await uow.execute(
        select(e.id, e.event_types).where(e.active.is_(True), e.created_at <= event.occurred_at)
    )
    targets = [r.id for r in endpoints if event.type in (r.event_types or [])]
    if not targets:
        return 0
    now = utcnow()
    rows = [
        {
            "id": new_id("whd"),
            "endpoint_id": endpoint_id,
            "event_id": event.id,
            "event_type": event.type,
            "payload": event.payload,
            "occurred_at": event.occurred_at,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for endpoint_id in targets
    ]
    added = 0
    for row in rows:
        added += await uow.changed(
            dialect_insert(uow, DELIVERIES)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        )
    return added


def webhook_body(row: Row[Any] | DeliveryInfo) -> bytes:
    """What is POSTed: the event id (the receiver's dedupe key), type, time and data."""
    document = {
        "id": row.event_id,
        "type": row.event_type,
        "created_at": row.occurred_at.isoformat(),
        "data": row.payload,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_headers(
    secret: str, event_id: str, event_type: str, body: bytes, now: datetime
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "Mercato-Webhooks/1",
        signing.SIGNATURE_HEADER: signing.signature_header(secret, body, int(now.timestamp())),
        signing.EVENT_ID_HEADER: event_id,
        signing.EVENT_TYPE_HEADER: event_type,
    }


async def post(
    client: httpx.AsyncClient, endpoint: Row[Any], row: Row[Any], now: datetime
) -> tuple[int | None, str | None]:
    """(status code, error); error is None on a 2xx answer."""
    body = webhook_body(row)
    headers = webhook_headers(endpoint.secret, row.event_id, row.event_type, body, now)
    try:
        response = await client.post(endpoint.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, short(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


async def endpoints_by_id(uow: UnitOfWork, ids: Collection[str]) -> dict[str, Row[Any]]:
    """The endpoint rows (with their secrets) a batch of deliveries is sent to."""
    found = await uow.execute(select(ENDPOINTS).where(ENDPOINTS.c.id.in_(set(ids))))
    return {e.id: e for e in found}


async def delivery_succeeded(
    uow: UnitOfWork, row: Row[Any], code: int | None, now: datetime
) -> None:
    d = DELIVERIES.c
    await uow.execute(
        update(DELIVERIES)
        .where(d.id == row.id, d.status == "sending")
        .values(status="delivered", delivered_at=now, last_status_code=code, last_error=None)
    )
    await uow.execute(
        update(ENDPOINTS).where(ENDPOINTS.c.id == row.endpoint_id).values(consecutive_failures=0)
    )


async def delivery_failed(
    uow: UnitOfWork,
    settings: Settings,
    row: Row[Any],
    code: int | None,
    error: str,
    now: datetime,
    backoff_base: float,
) -> bool:
    """Record a failed attempt: retried after a backoff, or dead on its last attempt; the
    endpoint is disabled once it has failed too often in a row. Whether it was disabled now."""
    d = DELIVERIES.c
    e = ENDPOINTS.c
    dead = row.attempts >= settings.webhook_max_attempts
    delay = backoff_seconds(row.attempts, backoff_base)
    await uow.execute(
        update(DELIVERIES)
        .where(d.id == row.id, d.status == "sending")
        .values(
            status="dead" if dead else "failed",
            next_attempt_at=now + timedelta(seconds=delay),
            last_status_code=code,
            last_error=error,
        )
    )
    await uow.execute(
        update(ENDPOINTS)
        .where(e.id == row.endpoint_id)
        .values(consecutive_failures=e.consecutive_failures + 1)
    )
    disabled = await uow.changed(
        update(ENDPOINTS)
        .where(
            e.id == row.endpoint_id,
            e.active.is_(True),
            e.consecutive_failures >= settings.webhook_disable_after_failures,
        )
        .values(active=False, disabled_at=now, updated_at=now)
    )
    return disabled > 0


async def list_deliveries(
    uow: UnitOfWork,
    endpoint_id: str,
    *,
    status: str | None = None,
    event_id: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> list[DeliveryInfo]:
    """An endpoint's delivery log, newest first (``before`` is the last id seen)."""
    if not 1 <= limit <= MAX_PAGE:
        raise validation_problem("limit", f"must be between 1 and {MAX_PAGE}")
    if await get_endpoint(uow, endpoint_id) is None:
        raise not_found("Webhook endpoint", endpoint_id)
    d = DELIVERIES.c
    query = select(DELIVERIES).where(d.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(d.status == status)
    if event_id is not None:
        query = query.where(d.event_id == event_id)
    if before is not None:
        query = query.where(d.id < before)
    rows = await uow.execute(query.order_by(d.id.desc()).limit(limit))
    return [_delivery_info(r) for r in rows]


async def get_delivery(uow: UnitOfWork, endpoint_id: str, delivery_id: str) -> DeliveryInfo | None:
    d = DELIVERIES.c
    row = (
        await uow.execute(
            select(DELIVERIES).where(d.id == delivery_id, d.endpoint_id == endpoint_id)
        )
    ).first()
    return None if row is None else _delivery_info(row)


async def retry_delivery(uow: UnitOfWork, endpoint_id: str, delivery_id: str) -> DeliveryInfo:
    """Send a delivery again as soon as the worker passes, with a fresh set of attempts (a
    dead one, a failing one, or one that was delivered and the receiver lost). One being sent
    right now is a 409 ``delivery_in_progress``."""
    d = DELIVERIES.c
    done = await uow.changed(
        update(DELIVERIES)
        .where(d.id == delivery_id, d.endpoint_id == endpoint_id, d.status != "sending")
        .values(status="pending", attempts=0, next_attempt_at=utcnow(), delivered_at=None)
    )
    if done != 1:
        if await get_delivery(uow, endpoint_id, delivery_id) is None:
            raise not_found("Webhook delivery", delivery_id)
        raise Problem(
            409, "delivery_in_progress", "The delivery is being sent right now; try again later"
        )
    found = await get_delivery(uow, endpoint_id, delivery_id)
    assert found is not None
    return found


async def delivery_counts(uow: UnitOfWork) -> dict[str, int]:
    rows = await uow.execute(
        select(DELIVERIES.c.status, func.count()).group_by(DELIVERIES.c.status)
    )
    return {r[0]: int(r[1]) for r in rows}
