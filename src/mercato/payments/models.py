"""Payment tables: intents and their operations, and the sandbox processor's own ledger.

An intent mirrors one charge at the provider. Each operation on it (authorize, capture, void,
refund) is one row in ``payments_intent_events``, written as ``pending`` *before* the provider is
called and closed with the outcome afterwards; a row still pending after a crash says exactly
which call to look up at the provider. The intent's amounts change only when such a row is
closed, so each provider operation is counted once.

The ``payments_sandbox_*`` tables belong to the built-in sandbox processor, not to Mercato's
bookkeeping: they are what "the processor" recorded, so tests and staging can compare the
charges made with the orders paid. The intent code never reads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, JSONType, UTCDateTime, utcnow

INTENT_STATUSES: tuple[str, ...] = (
    "requires_payment",
    "authorized",
    "captured",
    "partially_refunded",
    "refunded",
    "voided",
    "failed",
)
EVENT_OUTCOMES: tuple[str, ...] = ("pending", "succeeded", "failed")
SANDBOX_CHARGE_STATUSES: tuple[str, ...] = (
    "authorized",
    "captured",
    "partially_refunded",
    "refunded",
    "voided",
    "failed",
)


class Intent(Base):
    __tablename__ = "payments_intents"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # What is being paid for (a checkout or an order reference); payments does not interpret it.
    owner: Mapped[str] = mapped_column(String(80), index=True)
    # The authorization's idempotency key: the same key finds the same intent.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    amount_authorized: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_captured: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(24))
    provider: Mapped[str] = mapped_column(String(40))
    provider_charge_id: Mapped[str | None] = mapped_column(String(80), index=True)
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    # The processor's opaque token only; a card number is refused before anything is written.
    token: Mapped[str] = mapped_column(String(80))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(
            "status IN ('requires_payment', 'authorized', 'captured', 'partially_refunded', "
            "'refunded', 'voided', 'failed')",
            name="status",
        ),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "amount_authorized >= 0 AND amount_captured >= 0 AND amount_refunded >= 0",
            name="amounts_non_negative",
        ),
        CheckConstraint("amount_captured <= amount_authorized", name="captured_le_authorized"),
        CheckConstraint("amount_refunded <= amount_captured", name="refunded_le_captured"),
    )


class IntentEvent(Base):
    """One operation on an intent and the state change it made."""

    __tablename__ = "payments_intent_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    intent_id: Mapped[str] = mapped_column(String(40), ForeignKey("payments_intents.id"))
    operation: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # The key sent to the provider (scoped by intent and operation) and looked up on recovery.
    provider_key: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(16))
    status_from: Mapped[str] = mapped_column(String(24))
    status_to: Mapped[str | None] = mapped_column(String(24))
    code: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("intent_id", "operation", "idempotency_key"),
        CheckConstraint(
            "operation IN ('authorize', 'capture', 'void', 'refund')", name="operation"
        ),
        CheckConstraint("outcome IN ('pending', 'succeeded', 'failed')", name="outcome"),
        # The recovery job looks for operations left pending.
        Index("ix_payments_intent_events_outcome_created_at", "outcome", "created_at"),
    )


class SandboxCharge(Base):
    """A charge as the sandbox processor records it."""

    __tablename__ = "payments_sandbox_charges"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token: Mapped[str] = mapped_column(String(80))
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    currency: Mapped[str] = mapped_column(String(3))
    amount_authorized: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_captured: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(24))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(
            "status IN ('authorized', 'captured', 'partially_refunded', 'refunded', "
            "'voided', 'failed')",
            name="status",
        ),
        CheckConstraint(
            "amount_authorized >= 0 AND amount_captured >= 0 AND amount_refunded >= 0",
            name="amounts_non_negative",
        ),
        CheckConstraint("amount_captured <= amount_authorized", name="captured_le_authorized"),
        CheckConstraint("amount_refunded <= amount_captured", name="refunded_le_captured"),
    )


class SandboxOperation(Base):
    """The sandbox's idempotency store: one row per key, with the request and its answer."""

    __tablename__ = "payments_sandbox_operations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    operation: Mapped[str] = mapped_column(String(16))
    charge_id: Mapped[str | None] = mapped_column(String(40), index=True)
    # The request as text (operation, amount, currency, token or charge): a key reused for a
    # different request is refused rather than answered with someone else's result.
    fingerprint: Mapped[str] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
