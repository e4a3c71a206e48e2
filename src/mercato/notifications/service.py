"""Notifications: customer e-mails and signed webhooks, both fed from the outbox.

**E-mails.** Each event that concerns a customer (an order placed, shipped, delivered, a return
received, a refund issued, an order cancelled) becomes one ``notifications_emails`` row, rendered
once when the event arrives and unique per (event, kind): the outbox delivers at least once, and a
second delivery of the same event finds the row and adds nothing. :func:`send_due_emails` then
sends pending rows (SMTP, or ``.eml`` files when no SMTP server is configured).

**Webhooks.** Staff register endpoints with the event types they want. Each matching event
becomes one ``notifications_webhook_deliveries`` row per endpoint (unique per (endpoint, event)),
and :func:`deliver_webhooks` POSTs it as JSON, signed with the endpoint's secret
(:mod:`mercato.notifications.signing`).

**Sending, once in the normal path, at least once after a crash.** A sender first *claims* due
rows with a conditional ``UPDATE`` (status ``pending``/``failed``, or a ``sending`` row whose
lease ran out → ``sending`` with ``next_attempt_at = now + lease``), so two workers never send
the same row at the same time and one worker never sends it twice. It sends outside any
transaction, then records the outcome. A worker that dies between the send and the record
leaves a ``sending`` row whose lease expires, and the next pass sends it again: at least once,
with the same Message-ID / event id, so the receiver can drop the repeat. A failure is retried
with exponential backoff and jitter; after the maximum number of attempts the row is ``dead``
(staff may retry it). An endpoint that keeps failing is disabled; one success resets its count.

Webhook URLs are called from the worker process: in production restrict the worker's egress
(a firewall or an egress proxy) so that an endpoint cannot be pointed at internal services.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import aiosmtplib
import httpx
from sqlalchemy import Row, Table, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mercato.db import Database, utcnow
from mercato.events import Event
from mercato.ids import new_id
from mercato.money import format_minor
from mercato.notifications import mail, signing
from mercato.notifications.models import Email, WebhookDelivery, WebhookEndpoint
from mercato.orders import service as orders
from mercato.orders.service import OrderInfo, OrderLineInfo
from mercato.problems import Problem, not_found, validation_problem
from mercato.settings import Settings

log = logging.getLogger("mercato.notifications")

Executor = AsyncSession | AsyncConnection

EMAILS = cast(Table, Email.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
DELIVERIES = cast(Table, WebhookDelivery.__table__)

# Which events become which customer mail (OrderStatusChanged only when it is a cancellation).
EMAIL_KINDS: dict[str, str] = {
    "OrderPlaced": "order_placed",
    "ShipmentCreated": "order_shipped",
    "ShipmentDelivered": "order_delivered",
    "ReturnReceived": "return_received",
    "RefundIssued": "refund_issued",
}
EMAIL_EVENT_TYPES: frozenset[str] = frozenset({*EMAIL_KINDS, "OrderStatusChanged"})

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

EMAIL_MAX_ATTEMPTS = 10
EMAIL_LEASE_SECONDS = mail.SMTP_TIMEOUT_SECONDS * 4
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0
CLAIM_BATCH = 50
SEND_CONCURRENCY = 10
MAX_URL_LENGTH = 2000
MAX_PAGE = 100
MAX_ERROR = 500

RETRYABLE = ("pending", "failed")


def backoff_seconds(
    attempt: int,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before the attempt after the ``attempt``-th failure: ``base * 2^(attempt-1)``
    capped, with "equal jitter" (between half and all of it) so that endpoints that fail
    together do not come back in lockstep."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return float(ceiling / 2 + rand() * ceiling / 2)


def _insert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _short(error: str) -> str:
    return error if len(error) <= MAX_ERROR else error[: MAX_ERROR - 1] + "…"


# -- the claim: one conditional UPDATE decides who sends a row -------------------------------------


async def _claim(
    db: Database,
    table: Table,
    *,
    now: datetime,
    lease_seconds: float,
    max_attempts: int,
    limit: int,
    extra: Sequence[Any] = (),
) -> list[Row[Any]]:
    """Take up to ``limit`` due rows (counting the attempt), each with a lease; returns them."""
    c = table.c
    due = and_(
        or_(c.status.in_(RETRYABLE), c.status == "sending"),
        c.next_attempt_at <= now,
        c.attempts < max_attempts,
        *extra,
    )
    # Two statements in one transaction: the SELECT locks the chosen rows on PostgreSQL (and
    # skips rows another worker is claiming); SQLite's BEGIN IMMEDIATE serialises claimers. A
    # LIMIT inside ``UPDATE ... WHERE id IN (subquery)`` is not reliable on PostgreSQL (the
    # subquery may be re-run), so the ids are fetched first.
    candidates = (
        select(c.id)
        .where(due)
        .order_by(c.next_attempt_at, c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with db.connect() as conn:
        ids = list((await conn.scalars(candidates)).all())
        if not ids:
            return []
        rows = await conn.execute(
            update(table)
            .where(c.id.in_(ids), due)
            .values(
                status="sending",
                attempts=c.attempts + 1,
                next_attempt_at=now + timedelta(seconds=lease_seconds),
            )
            .returning(*c)
        )
        return list(rows)


async def _bury_abandoned(
    db: Database, table: Table, *, now: datetime, max_attempts: int, error: str
) -> int:
    """A ``sending`` row whose lease ran out on its last allowed attempt is dead (the worker
    died mid-send and there is no attempt left to try again)."""
    c = table.c
    async with db.connect() as conn:
        done = await conn.execute(
            update(table)
            .where(c.status == "sending", c.next_attempt_at <= now, c.attempts >= max_attempts)
            .values(status="dead", last_error=error)
        )
    return done.rowcount


# -- e-mails ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailInfo:
    id: str
    event_id: str
    kind: str
    order_id: str | None
    to_address: str
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    file_name: str | None
    created_at: datetime
    sent_at: datetime | None


def _email_info(row: Row[Any]) -> EmailInfo:
    return EmailInfo(
        id=row.id,
        event_id=row.event_id,
        kind=row.kind,
        order_id=row.order_id,
        to_address=row.to_address,
        subject=row.subject,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        file_name=row.file_name,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )


def email_kind(event: Event) -> str | None:
    """The customer mail an event calls for, if any."""
    if event.type == "OrderStatusChanged":
        return "order_cancelled" if event.payload.get("to") == "cancelled" else None
    return EMAIL_KINDS.get(event.type)


def _money(amount: int, currency: str) -> str:
    return format_minor(amount, currency)


def _options_text(options: dict[str, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(options.items()))


def _line_context(
    line: OrderLineInfo, currency: str, quantity: int | None = None
) -> dict[str, Any]:
    return {
        "title": line.title,
        "sku": line.sku,
        "options": _options_text(line.options),
        "quantity": line.quantity if quantity is None else quantity,
        "unit_price": _money(line.unit_price, currency),
        "total": _money(line.total, currency),
    }


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _event_lines(order: OrderInfo, items: object) -> list[dict[str, Any]]:
    """The order lines an event names (a shipment's or a return's), with its quantities.

    Items are matched by order line id, else variant id, else SKU; unknown items are left out.
    """
    if not isinstance(items, list):
        return []
    by_key: dict[tuple[str, str], OrderLineInfo] = {}
    for line in order.lines:
        by_key[("id", line.id)] = line
        by_key.setdefault(("variant", line.variant_id), line)
        by_key.setdefault(("sku", line.sku), line)
    found = []
    for item in items:
        if not isinstance(item, dict):
            continue
        match = (
            by_key.get(("id", str(item.get("order_line_id") or item.get("line_id") or "")))
            or by_key.get(("variant", str(item.get("variant_id") or "")))
            or by_key.get(("sku", str(item.get("sku") or "")))
        )
        if match is not None:
            quantity = _positive_int(item.get("quantity"))
            found.append(_line_context(match, order.currency, quantity))
    return found


def _http_url(value: object) -> str | None:
    """Only an http(s) link goes into a mail (never ``javascript:`` or the like)."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("http", "https") and parts.hostname else None


def email_context(settings: Settings, order: OrderInfo, event: Event, kind: str) -> dict[str, Any]:
    """Everything a template may use: the shop, the order (amounts as decimal strings) and the
    event's own details for its kind."""
    base = settings.public_url.rstrip("/")
    cur = order.currency
    payload = event.payload
    context: dict[str, Any] = {
        "shop_name": settings.shop_name,
        "shop_url": base,
        "order_number": order.id,
        "order_url": f"{base}/account/orders/{order.id}",
        "email": order.email,
        "currency": cur,
        "lines": [_line_context(line, cur) for line in order.lines],
        "subtotal": _money(order.subtotal, cur),
        "shipping": _money(order.shipping, cur),
        "discount": _money(order.discount, cur) if order.discount else None,
        "tax": _money(order.tax, cur),
        "total": _money(order.total, cur),
        "shipping_address": {str(k): str(v) for k, v in order.shipping_address.items()},
        "shipping_method": order.shipping_method,
        "placed_at": order.created_at.strftime("%Y-%m-%d %H:%M UTC"),
    }
    if kind == "order_shipped":
        context["shipment"] = {
            "id": str(payload.get("shipment_id") or ""),
            "carrier": str(payload.get("carrier") or ""),
            "tracking_number": str(payload.get("tracking_number") or ""),
            "tracking_url": _http_url(payload.get("tracking_url")),
            "lines": _event_lines(order, payload.get("lines")) or context["lines"],
        }
    elif kind == "order_delivered":
        context["shipment"] = {"id": str(payload.get("shipment_id") or "")}
    elif kind == "return_received":
        context["return_id"] = str(payload.get("return_id") or "")
        context["return_lines"] = _event_lines(order, payload.get("lines"))
    elif kind == "refund_issued":
        amount = payload.get("amount")
        currency = payload.get("currency") or cur
        if not isinstance(amount, int) or isinstance(amount, bool) or not isinstance(currency, str):
            raise ValueError(f"event {event.id}: a refund needs an int amount and a currency")
        context["refund_amount"] = _money(amount, currency)
        context["currency"] = currency
        context["return_id"] = str(payload.get("return_id") or "")
    elif kind == "order_cancelled":
        reason = payload.get("reason")
        context["reason"] = reason if isinstance(reason, str) and reason else None
    return context


async def record_email(conn: AsyncConnection, settings: Settings, event: Event) -> str | None:
    """Render and store the mail ``event`` calls for; returns its id (None when the event
    needs no mail, or its mail is already recorded).

    An event that cannot make a mail (no such order, a malformed payload) is logged and skipped
    rather than raised: raising would stop every later mail behind it in the outbox.
    """
    kind = email_kind(event)
    if kind is None:
        return None
    existing = await conn.scalar(
        select(EMAILS.c.id).where(EMAILS.c.event_id == event.id, EMAILS.c.kind == kind)
    )
    if existing is not None:
        return None
    order_id = event.payload.get("order_id") or event.aggregate_id
    order = await orders.get_order(conn, str(order_id))
    if order is None:
        log.warning("event %s (%s): order %r not found; no mail", event.id, event.type, order_id)
        return None
    to = str(event.payload.get("email") or order.email).strip()
    if not mail.is_deliverable_address(to):
        log.warning("event %s: %r is not a deliverable address; no mail", event.id, to)
        return None
    now = utcnow()
    try:
        subject, text, html = mail.render(kind, email_context(settings, order, event, kind))
        message = mail.build_message(
            settings=settings,
            to=to,
            subject=subject,
            text=text,
            html=html,
            event_id=event.id,
            kind=kind,
            date=now,
        )
    except Exception:
        log.exception(
            "event %s (%s): the %s mail could not be rendered", event.id, event.type, kind
        )
        return None
    email_id = new_id("eml")
    inserted = await conn.execute(
        _insert(conn, EMAILS)
        .values(
            id=email_id,
            event_id=event.id,
            kind=kind,
            order_id=order.id,
            to_address=to,
            subject=subject,
            message=message.as_string(),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["event_id", "kind"])
    )
    return email_id if inserted.rowcount == 1 else None


async def _transport(settings: Settings, row: Row[Any]) -> str | None:
    """Send one stored mail; returns the .eml file name when the file transport was used."""
    if settings.smtp_host:
        await mail.send_smtp(settings, row.message)
        return None
    name = row.file_name or mail.eml_file_name(row.created_at, row.kind, row.order_id, row.id)
    await mail.write_eml(settings, name, row.message)
    return name


async def _send_email(
    db: Database, settings: Settings, row: Row[Any], now: datetime, backoff_base: float
) -> bool:
    c = EMAILS.c
    try:
        # Bounded as a whole (the client's own timeout is per operation), well inside the lease.
        async with asyncio.timeout(EMAIL_LEASE_SECONDS / 2):
            file_name = await _transport(settings, row)
    except Exception as exc:  # any transport failure is retried later
        log.warning(
            "mail %s to %s failed (attempt %d): %s", row.id, row.to_address, row.attempts, exc
        )
        # A recipient the server refuses outright will not be accepted on a later attempt.
        refused = isinstance(exc, aiosmtplib.SMTPRecipientsRefused)
        dead = refused or row.attempts >= EMAIL_MAX_ATTEMPTS
        async with db.connect() as conn:
            await conn.execute(
                update(EMAILS)
                .where(c.id == row.id, c.status == "sending")
                .values(
                    status="dead" if dead else "failed",
                    next_attempt_at=now
                    + timedelta(seconds=backoff_seconds(row.attempts, backoff_base)),
                    last_error=_short(f"{type(exc).__name__}: {exc}"),
                )
            )
        return False
    async with db.connect() as conn:
        await conn.execute(
            update(EMAILS)
            .where(c.id == row.id, c.status == "sending")
            .values(status="sent", sent_at=now, file_name=file_name, last_error=None)
        )
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
    await _bury_abandoned(
        db,
        EMAILS,
        now=now,
        max_attempts=EMAIL_MAX_ATTEMPTS,
        error="the sender stopped during the last attempt",
    )
    sent = 0
    # One mail at a time, each claimed just before it is sent, so a lease only ever has to
    # cover one SMTP conversation (and mail servers throttle bursts anyway).
    for _ in range(limit):
        rows = await _claim(
            db,
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


async def list_emails(
    executor: Executor,
    *,
    order_id: str | None = None,
    status: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> list[EmailInfo]:
    """The mail log, newest first (ids sort by creation time; ``before`` is the last id seen)."""
    if not 1 <= limit <= MAX_PAGE:
        raise validation_problem("limit", f"must be between 1 and {MAX_PAGE}")
    c = EMAILS.c
    query = select(*[col for col in c if col.name != "message"])
    if order_id is not None:
        query = query.where(c.order_id == order_id)
    if status is not None:
        query = query.where(c.status == status)
    if before is not None:
        query = query.where(c.id < before)
    rows = await executor.execute(query.order_by(c.id.desc()).limit(limit))
    return [_email_info(r) for r in rows]


async def get_email(executor: Executor, email_id: str) -> tuple[EmailInfo, str] | None:
    """A logged mail and its complete message (RFC 5322 text)."""
    row = (await executor.execute(select(EMAILS).where(EMAILS.c.id == email_id))).first()
    return None if row is None else (_email_info(row), row.message)


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


def check_webhook_url(url: str) -> str:
    """An absolute http(s) URL with a host, no credentials, no fragment, no whitespace;
    else 422 ``invalid_webhook_url``."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH:
        raise _bad_url(f"must be 1 to {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
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
    if len(description) > 200:
        raise validation_problem("description", "must be at most 200 characters")
    return description or None


async def create_endpoint(
    executor: Executor,
    *,
    url: str,
    event_types: Collection[str],
    description: str | None = None,
) -> tuple[EndpointInfo, str]:
    """Register an endpoint; returns it and its signing secret (shown to staff only now)."""
    url = check_webhook_url(url)
    types = check_event_types(event_types)
    description = _check_description(description)
    secret = signing.new_secret()
    now = utcnow()
    endpoint_id = new_id("whk")
    row = (
        await executor.execute(
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


async def get_endpoint(executor: Executor, endpoint_id: str) -> EndpointInfo | None:
    row = (await executor.execute(select(ENDPOINTS).where(ENDPOINTS.c.id == endpoint_id))).first()
    return None if row is None else _endpoint_info(row)


async def list_endpoints(executor: Executor) -> list[EndpointInfo]:
    rows = await executor.execute(
        select(ENDPOINTS).order_by(ENDPOINTS.c.created_at, ENDPOINTS.c.id)
    )
    return [_endpoint_info(r) for r in rows]


async def update_endpoint(
    executor: Executor,
    endpoint_id: str,
    *,
    active: bool | None = None,
    event_types: Collection[str] | None = None,
    url: str | None = None,
    description: str | None = None,
) -> EndpointInfo:
    """Change an endpoint. Turning it back on also clears its failure count, so a disabled
    endpoint gets a fresh start (its pending deliveries resume)."""
    values: dict[str, Any] = {}
    if url is not None:
        values["url"] = check_webhook_url(url)
    if event_types is not None:
        values["event_types"] = check_event_types(event_types)
    if description is not None:
        values["description"] = _check_description(description)
    if active is True:
        values.update(active=True, consecutive_failures=0, disabled_at=None)
    elif active is False:
        values["active"] = False
    if await get_endpoint(executor, endpoint_id) is None:
        raise not_found("Webhook endpoint", endpoint_id)
    if values:
        values["updated_at"] = utcnow()
        await executor.execute(
            update(ENDPOINTS).where(ENDPOINTS.c.id == endpoint_id).values(**values)
        )
    found = await get_endpoint(executor, endpoint_id)
    assert found is not None
    return found


async def rotate_secret(executor: Executor, endpoint_id: str) -> tuple[EndpointInfo, str]:
    """A new signing secret for an endpoint (the old one stops working at once)."""
    secret = signing.new_secret()
    done = await executor.execute(
        update(ENDPOINTS)
        .where(ENDPOINTS.c.id == endpoint_id)
        .values(secret=secret, updated_at=utcnow())
    )
    if cast(Any, done).rowcount != 1:
        raise not_found("Webhook endpoint", endpoint_id)
    found = await get_endpoint(executor, endpoint_id)
    assert found is not None
    return found, secret


async def delete_endpoint(executor: Executor, endpoint_id: str) -> None:
    """Remove an endpoint with its delivery log (nothing more is sent to it)."""
    if await get_endpoint(executor, endpoint_id) is None:
        raise not_found("Webhook endpoint", endpoint_id)
    await executor.execute(delete(DELIVERIES).where(DELIVERIES.c.endpoint_id == endpoint_id))
    await executor.execute(delete(ENDPOINTS).where(ENDPOINTS.c.id == endpoint_id))
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


async def fan_out(conn: AsyncConnection, event: Event) -> int:
    """One delivery per active endpoint subscribed to the event's type and registered before
    it happened; idempotent (a redelivered event adds nothing). Returns rows added."""
    e = ENDPOINTS.c
    endpoints = await conn.execute(
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
        done = await conn.execute(
            _insert(conn, DELIVERIES)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        )
        added += done.rowcount
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


async def _post(
    client: httpx.AsyncClient, endpoint: Row[Any], row: Row[Any], now: datetime
) -> tuple[int | None, str | None]:
    """(status code, error); error is None on a 2xx answer."""
    body = webhook_body(row)
    headers = webhook_headers(endpoint.secret, row.event_id, row.event_type, body, now)
    try:
        response = await client.post(endpoint.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, _short(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


async def _record_success(db: Database, row: Row[Any], code: int | None, now: datetime) -> None:
    d = DELIVERIES.c
    async with db.connect() as conn:
        await conn.execute(
            update(DELIVERIES)
            .where(d.id == row.id, d.status == "sending")
            .values(status="delivered", delivered_at=now, last_status_code=code, last_error=None)
        )
        await conn.execute(
            update(ENDPOINTS)
            .where(ENDPOINTS.c.id == row.endpoint_id)
            .values(consecutive_failures=0)
        )


async def _record_failure(
    db: Database,
    settings: Settings,
    row: Row[Any],
    code: int | None,
    error: str,
    now: datetime,
    backoff_base: float,
) -> None:
    d = DELIVERIES.c
    e = ENDPOINTS.c
    dead = row.attempts >= settings.webhook_max_attempts
    delay = backoff_seconds(row.attempts, backoff_base)
    async with db.connect() as conn:
        await conn.execute(
            update(DELIVERIES)
            .where(d.id == row.id, d.status == "sending")
            .values(
                status="dead" if dead else "failed",
                next_attempt_at=now + timedelta(seconds=delay),
                last_status_code=code,
                last_error=error,
            )
        )
        await conn.execute(
            update(ENDPOINTS)
            .where(e.id == row.endpoint_id)
            .values(consecutive_failures=e.consecutive_failures + 1)
        )
        disabled = await conn.execute(
            update(ENDPOINTS)
            .where(
                e.id == row.endpoint_id,
                e.active.is_(True),
                e.consecutive_failures >= settings.webhook_disable_after_failures,
            )
            .values(active=False, disabled_at=now, updated_at=now)
        )
    if disabled.rowcount:
        log.warning(
            "webhook endpoint %s disabled after %d consecutive failures",
            row.endpoint_id,
            settings.webhook_disable_after_failures,
        )


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
    await _bury_abandoned(
        db,
        DELIVERIES,
        now=now,
        max_attempts=max_attempts,
        error="the worker stopped during the last attempt",
    )
    active = select(ENDPOINTS.c.id).where(ENDPOINTS.c.active.is_(True))
    own_client = client is None
    http = client or httpx.AsyncClient(
        timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False
    )
    delivered = 0
    claimed = 0
    try:
        # Rounds of at most SEND_CONCURRENCY rows, all sent at once: every claimed row is being
        # sent while its lease (twice the timeout) runs, never waiting in a queue behind others.
        while claimed < limit:
            rows = await _claim(
                db,
                DELIVERIES,
                now=now,
                lease_seconds=settings.webhook_timeout_seconds * 2,
                max_attempts=max_attempts,
                limit=min(SEND_CONCURRENCY, limit - claimed),
                extra=[DELIVERIES.c.endpoint_id.in_(active.scalar_subquery())],
            )
            if not rows:
                break
            claimed += len(rows)
            async with db.connect() as conn:
                found = await conn.execute(
                    select(ENDPOINTS).where(ENDPOINTS.c.id.in_({r.endpoint_id for r in rows}))
                )
                endpoints = {e.id: e for e in found}
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
        if own_client:
            await http.aclose()
    return delivered


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
            code, error = await _post(http, endpoint, row, now)
    except TimeoutError:
        code, error = None, "timed out"
    if error is None:
        await _record_success(db, row, code, now)
        return True
    log.info("webhook %s to %s failed (attempt %d): %s", row.id, endpoint.url, row.attempts, error)
    await _record_failure(db, settings, row, code, error, now, backoff_base)
    return False


async def list_deliveries(
    executor: Executor,
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
    if await get_endpoint(executor, endpoint_id) is None:
        raise not_found("Webhook endpoint", endpoint_id)
    d = DELIVERIES.c
    query = select(DELIVERIES).where(d.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(d.status == status)
    if event_id is not None:
        query = query.where(d.event_id == event_id)
    if before is not None:
        query = query.where(d.id < before)
    rows = await executor.execute(query.order_by(d.id.desc()).limit(limit))
    return [_delivery_info(r) for r in rows]


async def get_delivery(
    executor: Executor, endpoint_id: str, delivery_id: str
) -> DeliveryInfo | None:
    d = DELIVERIES.c
    row = (
        await executor.execute(
            select(DELIVERIES).where(d.id == delivery_id, d.endpoint_id == endpoint_id)
        )
    ).first()
    return None if row is None else _delivery_info(row)


async def retry_delivery(executor: Executor, endpoint_id: str, delivery_id: str) -> DeliveryInfo:
    """Send a delivery again as soon as the worker passes, with a fresh set of attempts (a
    dead one, a failing one, or one that was delivered and the receiver lost). One being sent
    right now is a 409 ``delivery_in_progress``."""
    d = DELIVERIES.c
    done = await executor.execute(
        update(DELIVERIES)
        .where(d.id == delivery_id, d.endpoint_id == endpoint_id, d.status != "sending")
        .values(status="pending", attempts=0, next_attempt_at=utcnow(), delivered_at=None)
    )
    if cast(Any, done).rowcount != 1:
        if await get_delivery(executor, endpoint_id, delivery_id) is None:
            raise not_found("Webhook delivery", delivery_id)
        raise Problem(
            409, "delivery_in_progress", "The delivery is being sent right now; try again later"
        )
    found = await get_delivery(executor, endpoint_id, delivery_id)
    assert found is not None
    return found


async def delivery_counts(executor: Executor) -> dict[str, int]:
    rows = await executor.execute(
        select(DELIVERIES.c.status, func.count()).group_by(DELIVERIES.c.status)
    )
    return {r[0]: int(r[1]) for r in rows}
