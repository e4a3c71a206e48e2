"""Customer e-mails. Each event that concerns a customer (an order placed, shipped, delivered,
a return received, a refund issued, an order cancelled; a password reset or an address to
verify) becomes one ``notifications_emails`` row, rendered once when the event arrives and
unique per (event, kind): the outbox delivers at least once, and a second delivery of the same
event finds the row and adds nothing. The sender (:mod:`~mercato.notifications.senders`) then
sends pending rows (SMTP, or ``.eml`` files when no SMTP server is configured) and records each
outcome here.

A mail with a link that proves the address (a password reset, an e-mail verification, or any
mail about a guest's order, whose link opens the order without an account) is stored with a
placeholder where the link's token goes; the token is derived from the identity
token's id and the secret key only when the mail is sent, so it is never written down in clear:
not in the outbox event (which names the token's id), not in this log (which staff can read)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import aiosmtplib
from sqlalchemy import Row, select, update

from mercato.db import UnitOfWork, utcnow
from mercato.events import Event
from mercato.identity import service as identity
from mercato.ids import new_id
from mercato.money import format_minor
from mercato.notifications import mail
from mercato.notifications.common import (
    EMAIL_MAX_ATTEMPTS,
    EMAILS,
    MAX_PAGE,
    backoff_seconds,
    dialect_insert,
    short,
)
from mercato.orders import service as orders
from mercato.orders.service import OrderInfo, OrderLineInfo
from mercato.problems import validation_problem
from mercato.recommendations import service as recommendations
from mercato.runtime import Runtime
from mercato.settings import Settings

log = logging.getLogger("mercato.notifications")

# Which events become which customer mail (OrderStatusChanged only when it is a cancellation).
EMAIL_KINDS: dict[str, str] = {
    "OrderPlaced": "order_placed",
    "ShipmentCreated": "order_shipped",
    "ShipmentDelivered": "order_delivered",
    "ReturnReceived": "return_received",
    "RefundIssued": "refund_issued",
}
# Mails with a link to prove the address, asked for by the identity module.
ACCOUNT_EMAIL_KINDS: dict[str, str] = {
    "PasswordResetRequested": "password_reset",
    "EmailVerificationRequested": "email_verification",
}
# Which kind of link each is, and the page it opens.
ACCOUNT_LINKS: dict[str, tuple[str, str]] = {
    "password_reset": ("reset_password", "/account/reset-password"),
    "email_verification": ("verify_email", "/account/verify-email"),
}
# Mails about what a customer saved (the recommendations module's wishlist).
SHOPPER_EMAIL_KINDS: dict[str, str] = {recommendations.BACK_IN_STOCK: "back_in_stock"}
EMAIL_EVENT_TYPES: frozenset[str] = frozenset(
    {*EMAIL_KINDS, *ACCOUNT_EMAIL_KINDS, *SHOPPER_EMAIL_KINDS, "OrderStatusChanged"}
)


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
    return (
        EMAIL_KINDS.get(event.type)
        or ACCOUNT_EMAIL_KINDS.get(event.type)
        or SHOPPER_EMAIL_KINDS.get(event.type)
    )


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


def _order_url(base: str, order: OrderInfo) -> str:
    """The order's page: in the account, or for a guest's order the page its access token opens
    (the token goes in when the mail is sent, see :func:`transport`)."""
    if order.user_id is None:
        return f"{base}/orders/{order.id}?token={mail.LINK_TOKEN}"
    return f"{base}/account/orders/{order.id}"


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
        "order_url": _order_url(base, order),
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


@dataclass(frozen=True, slots=True)
class _Draft:
    """A mail about to be recorded: to whom, what its template gets, what it is about."""

    to: str
    context: dict[str, Any]
    order_id: str | None = None
    account_token_id: str | None = None


def _valid_for(expires_at: datetime, now: datetime) -> str:
    """How long a link works, in words ("1 hour", "3 days")."""
    hours = max(1, round((expires_at - now).total_seconds() / 3600))
    if hours < 48:
        return "1 hour" if hours == 1 else f"{hours} hours"
    return f"{round(hours / 24)} days"


async def _order_draft(uow: UnitOfWork, runtime: Runtime, event: Event, kind: str) -> _Draft | None:
    order_id = event.payload.get("order_id") or event.aggregate_id
    order = await orders.get_order(uow, str(order_id))
    if order is None:
        log.warning("event %s (%s): order %r not found; no mail", event.id, event.type, order_id)
        return None
    # A guest's order mail goes to the order's own address: its link's token is derived from
    # it when the mail is sent.
    to = order.email if order.user_id is None else str(event.payload.get("email") or order.email)
    to = to.strip()
    context = email_context(runtime.settings, order, event, kind)
    if kind == "order_placed":
        context["suggested"] = await _suggested(uow, runtime, order)
    return _Draft(to, context, order_id=order.id)


async def _suggested(uow: UnitOfWork, runtime: Runtime, order: OrderInfo) -> list[dict[str, str]]:
    """The confirmation's "You may also like": what goes with the order's products, for its
    destination (none when the shop has no recommendations yet)."""
    settings = runtime.settings
    country = str(order.shipping_address.get("country") or settings.default_country)
    found = await recommendations.for_order_mail(
        uow, runtime, sorted({line.product_id for line in order.lines}), country=country
    )
    base = settings.public_url.rstrip("/")
    return [
        {
            "title": r.product.title,
            "price": format_minor(r.product.min_price, r.product.currency)
            if r.product.min_price is not None
            else "",
            "currency": r.product.currency,
            "url": f"{base}/p/{quote(r.product.id)}",
        }
        for r in found
    ]


async def _account_draft(
    uow: UnitOfWork, settings: Settings, event: Event, kind: str, now: datetime
) -> _Draft | None:
    purpose, path = ACCOUNT_LINKS[kind]
    found = await identity.account_mail(uow, str(event.payload.get("token_id") or ""))
    if found is None or found.purpose != purpose:
        # Used, expired or replaced by a newer link before its mail was written: the newer
        # link has a mail of its own.
        log.info("event %s (%s): the link is no longer usable; no mail", event.id, event.type)
        return None
    base = settings.public_url.rstrip("/")
    context = {
        "shop_name": settings.shop_name,
        "shop_url": base,
        "name": found.name,
        "email": found.email,
        "link_url": f"{base}{path}?token={mail.LINK_TOKEN}",
        "valid_for": _valid_for(found.expires_at, now),
    }
    return _Draft(found.email, context, account_token_id=found.token_id)


async def _back_in_stock_draft(uow: UnitOfWork, settings: Settings, event: Event) -> _Draft | None:
    """A saved product is available again: the customer's mail, unless they removed it from
    their wishlist meanwhile (or the product left sale, or the account is gone)."""
    payload = event.payload
    user = await identity.get_user(uow, str(payload.get("user_id") or ""))
    variant_id = payload.get("variant_id")
    found = await recommendations.back_in_stock_mail(
        uow,
        str(payload.get("user_id") or ""),
        str(payload.get("product_id") or ""),
        variant_id if isinstance(variant_id, str) else None,
    )
    if user is None or found is None:
        log.info("event %s (%s): nothing to tell any more; no mail", event.id, event.type)
        return None
    base = settings.public_url.rstrip("/")
    context = {
        "shop_name": settings.shop_name,
        "shop_url": base,
        "name": user.name,
        "title": found.title,
        "variant_title": found.variant_title,
        "price": _money(found.price, found.currency) if found.price is not None else None,
        "product_url": f"{base}/p/{quote(found.product_id, safe='')}",
        "wishlist_url": f"{base}/account/wishlist",
    }
    return _Draft(user.email, context)


async def record_email(uow: UnitOfWork, runtime: Runtime, event: Event) -> str | None:
    """Render and store the mail ``event`` calls for; returns its id (None when the event
    needs no mail, or its mail is already recorded).

    An event that cannot make a mail (no such order, a malformed payload) is logged and skipped
    rather than raised: raising would stop every later mail behind it in the outbox.
    """
    kind = email_kind(event)
    if kind is None:
        return None
    existing = await uow.scalar(
        select(EMAILS.c.id).where(EMAILS.c.event_id == event.id, EMAILS.c.kind == kind)
    )
    if existing is not None:
        return None
    now = utcnow()
    settings = runtime.settings
    if kind in ACCOUNT_LINKS:
        draft = await _account_draft(uow, settings, event, kind, now)
    elif kind == "back_in_stock":
        draft = await _back_in_stock_draft(uow, settings, event)
    else:
        draft = await _order_draft(uow, runtime, event, kind)
    if draft is None:
        return None
    to = draft.to
    if not mail.is_deliverable_address(to):
        log.warning("event %s: %r is not a deliverable address; no mail", event.id, to)
        return None
    try:
        subject, text, html = mail.render(kind, draft.context)
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
    inserted = await uow.changed(
        dialect_insert(uow, EMAILS)
        .values(
            id=email_id,
            event_id=event.id,
            kind=kind,
            order_id=draft.order_id,
            to_address=to,
            subject=subject,
            message=message.as_string(),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            account_token_id=draft.account_token_id,
        )
        .on_conflict_do_nothing(index_elements=["event_id", "kind"])
    )
    return email_id if inserted == 1 else None


async def transport(settings: Settings, row: Row[Any]) -> str | None:
    """Send one stored mail; returns the .eml file name when the file transport was used.

    A mail with a link gets its token here, derived again from the token's id: the message
    sent (or the ``.eml`` file, which is the mailbox of a shop without SMTP) has it, the row
    never does."""
    message = row.message
    if row.account_token_id:
        token = identity.account_link_token(settings.secret_key, row.account_token_id)
        message = mail.complete_link(message, token)
    elif row.order_id and mail.has_link_placeholder(message):
        token = orders.order_access_token(settings.secret_key, row.order_id, row.to_address)
        message = mail.complete_link(message, token)
    if settings.smtp_host:
        await mail.send_smtp(settings, message)
        return None
    name = row.file_name or mail.eml_file_name(row.created_at, row.kind, row.order_id, row.id)
    await mail.write_eml(settings, name, message)
    return name


async def email_failed(
    uow: UnitOfWork, row: Row[Any], error: Exception, now: datetime, backoff_base: float
) -> None:
    """A send failed: retried after a backoff, or dead when no attempt is left or the server
    refused the recipient outright (it will not accept it on a later attempt either)."""
    c = EMAILS.c
    refused = isinstance(error, aiosmtplib.SMTPRecipientsRefused)
    dead = refused or row.attempts >= EMAIL_MAX_ATTEMPTS
    await uow.execute(
        update(EMAILS)
        .where(c.id == row.id, c.status == "sending")
        .values(
            status="dead" if dead else "failed",
            next_attempt_at=now + timedelta(seconds=backoff_seconds(row.attempts, backoff_base)),
            last_error=short(f"{type(error).__name__}: {error}"),
        )
    )


async def email_sent(uow: UnitOfWork, row: Row[Any], now: datetime, file_name: str | None) -> None:
    c = EMAILS.c
    await uow.execute(
        update(EMAILS)
        .where(c.id == row.id, c.status == "sending")
        .values(status="sent", sent_at=now, file_name=file_name, last_error=None)
    )


async def list_emails(
    uow: UnitOfWork,
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
    rows = await uow.execute(query.order_by(c.id.desc()).limit(limit))
    return [_email_info(r) for r in rows]


async def get_email(uow: UnitOfWork, email_id: str) -> tuple[EmailInfo, str] | None:
    """A logged mail and its complete message (RFC 5322 text)."""
    row = (await uow.execute(select(EMAILS).where(EMAILS.c.id == email_id))).first()
    return None if row is None else (_email_info(row), row.message)
