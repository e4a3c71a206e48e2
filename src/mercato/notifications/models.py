"""Tables of the notifications module: the e-mail log and the webhook endpoints and deliveries.

Both kinds of message are written as a row *before* anything is sent (``notifications_emails``
unique per (event, kind), ``notifications_webhook_deliveries`` unique per (endpoint, event)), so
an event delivered twice by the outbox cannot produce a second message, and a worker that dies
mid-send leaves a row the next worker picks up again (at least once; receivers dedupe by the
event id carried in the Message-ID or the webhook body).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, JSONType, UTCDateTime, utcnow

EMAIL_STATUSES: tuple[str, ...] = ("pending", "sending", "sent", "failed", "dead")
DELIVERY_STATUSES: tuple[str, ...] = ("pending", "sending", "delivered", "failed", "dead")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


EMAIL_STATUS_CHECK = _in("status", EMAIL_STATUSES)
DELIVERY_STATUS_CHECK = _in("status", DELIVERY_STATUSES)


class Email(Base):
    """One customer e-mail: rendered once when its event arrives, then sent (and retried)."""

    __tablename__ = "notifications_emails"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[str | None] = mapped_column(String(40))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    # The complete RFC 5322 message, so a retry sends exactly the same bytes (same Message-ID).
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the row may next be tried; while ``sending`` it is the sender's lease.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(500))
    # Under data_dir/mail when the file transport was used.
    file_name: Mapped[str | None] = mapped_column(String(200))
    # A mail carrying a link to prove the address (password reset, e-mail verification): the
    # identity token whose value replaces ``mail.LINK_TOKEN`` in ``message`` when it is sent.
    # The token is derived then, so it is written nowhere (not here, not in the outbox).
    account_token_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(EMAIL_STATUS_CHECK, name="status"),
        UniqueConstraint("event_id", "kind"),
        Index("ix_notifications_emails_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_notifications_emails_created_at", "created_at"),
        Index("ix_notifications_emails_order_id", "order_id"),
    )


class WebhookEndpoint(Base):
    """A URL registered by staff, with the event types it wants and its signing secret."""

    __tablename__ = "notifications_webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    event_types: Mapped[list[str]] = mapped_column(JSONType)
    description: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("consecutive_failures >= 0", name="failures_non_negative"),
        Index("ix_notifications_webhook_endpoints_created_at", "created_at"),
    )


class WebhookDelivery(Base):
    """One event for one endpoint: its payload, where it stands, and its last attempt."""

    __tablename__ = "notifications_webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(
        # Named explicitly: the conventional name is longer than PostgreSQL's 63 characters.
        String(40),
        ForeignKey(
            "notifications_webhook_endpoints.id",
            name="fk_notifications_webhook_deliveries_endpoint_id",
        ),
    )
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the row may next be tried; while ``sending`` it is the sender's lease.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(DELIVERY_STATUS_CHECK, name="status"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        UniqueConstraint("endpoint_id", "event_id"),
        Index(
            "ix_notifications_webhook_deliveries_status_next_attempt_at",
            "status",
            "next_attempt_at",
        ),
        Index(
            "ix_notifications_webhook_deliveries_endpoint_id_created_at",
            "endpoint_id",
            "created_at",
        ),
    )
