"""Payment intents as other modules see them: what an intent is now, its operations, and the
problem a failed authorization answers with. Reading only; money moves in
:mod:`mercato.payments.operations`.

An intent mirrors one charge at the provider. Each operation on it (authorize, capture, void,
refund) is one row in ``payments_intent_events``, recorded ``pending`` before the provider is
called and closed with its outcome afterwards, so the intent's amounts change once per
operation whatever the retries.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, case, select

from mercato.db import UnitOfWork
from mercato.payments import provider as p
from mercato.payments.models import Intent, IntentEvent
from mercato.problems import Problem

# Outcome codes besides the provider's own (``mercato.payments.provider``).
PROVIDER_TIMEOUT = "provider_timeout"  # outcome unknown for now: retry with the same key
PROVIDER_UNAVAILABLE = "provider_unavailable"

INTENTS = cast(Table, Intent.__table__)
EVENTS = cast(Table, IntentEvent.__table__)

_MESSAGES: dict[str, str] = {
    p.PAYMENT_DECLINED: "The card was declined.",
    p.INSUFFICIENT_FUNDS: "The card has insufficient funds.",
    p.PROCESSING_ERROR: "The payment could not be processed; please try again.",
    p.INVALID_TOKEN: "The payment token is not valid.",
    p.AMOUNT_TOO_LARGE: "The amount is larger than the payment provider accepts.",
    PROVIDER_TIMEOUT: "The payment provider did not answer in time; the payment is being checked.",
    PROVIDER_UNAVAILABLE: "The payment provider is unavailable; please try again.",
}

# Failure codes → (402 problem code, detail) for the checkout API.
_PAYMENT_PROBLEMS: dict[str, tuple[str, str]] = {
    p.PAYMENT_DECLINED: ("payment_declined", "The card was declined."),
    p.INSUFFICIENT_FUNDS: ("insufficient_funds", "The card has insufficient funds."),
    p.PROCESSING_ERROR: (
        "payment_processing_error",
        "The payment could not be processed; please try again.",
    ),
    PROVIDER_UNAVAILABLE: (
        "payment_processing_error",
        "The payment provider is unavailable; please try again.",
    ),
    PROVIDER_TIMEOUT: (
        "payment_timeout",
        "The payment provider did not answer in time; the payment is being checked.",
    ),
    p.INVALID_TOKEN: ("invalid_payment_token", "The payment token is not valid."),
}


# -- what callers get back -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """The intent after an operation. ``ok`` is False on a decline (``code`` says why) and while
    the outcome is unknown (``pending``: retry with the same key, or :func:`recover` later)."""

    intent_id: str
    status: str
    ok: bool
    code: str | None
    message: str | None
    amount_authorized: int
    amount_captured: int
    amount_refunded: int
    currency: str
    card_brand: str | None
    card_last4: str | None
    pending: bool = False

    @property
    def net_paid(self) -> int:
        return self.amount_captured - self.amount_refunded


@dataclass(frozen=True, slots=True)
class IntentInfo:
    id: str
    owner: str
    amount: int
    currency: str
    amount_authorized: int
    amount_captured: int
    amount_refunded: int
    status: str
    provider: str
    provider_charge_id: str | None
    card_brand: str | None
    card_last4: str | None
    failure_code: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def net_paid(self) -> int:
        return self.amount_captured - self.amount_refunded


@dataclass(frozen=True, slots=True)
class IntentEventInfo:
    id: str
    operation: str
    idempotency_key: str
    amount: int | None
    outcome: str
    status_from: str
    status_to: str | None
    code: str | None
    created_at: datetime
    completed_at: datetime | None


# -- reading ---------------------------------------------------------------------------------------


async def get_intent(uow: UnitOfWork, intent_id: str) -> IntentInfo | None:
    row = (await uow.execute(select(INTENTS).where(INTENTS.c.id == intent_id))).first()
    return info_of(row) if row is not None else None


async def list_intents(
    uow: UnitOfWork, *, after: str | None = None, limit: int = 500
) -> list[IntentInfo]:
    """Every intent in id order, a page at a time (the money check walks them all)."""
    query = select(INTENTS).order_by(INTENTS.c.id).limit(limit)
    if after is not None:
        query = query.where(INTENTS.c.id > after)
    return [info_of(row) for row in await uow.execute(query)]


async def find_intent_by_owner(uow: UnitOfWork, owner: str) -> IntentInfo | None:
    """The owner's live intent: the newest that did not fail, else the newest."""
    failed_last = case((INTENTS.c.status == "failed", 1), else_=0)
    row = (
        await uow.execute(
            select(INTENTS)
            .where(INTENTS.c.owner == owner)
            .order_by(failed_last, INTENTS.c.created_at.desc(), INTENTS.c.id.desc())
            .limit(1)
        )
    ).first()
    return info_of(row) if row is not None else None


async def intent_events(uow: UnitOfWork, intent_id: str) -> list[IntentEventInfo]:
    rows = await uow.execute(
        select(EVENTS)
        .where(EVENTS.c.intent_id == intent_id)
        .order_by(EVENTS.c.created_at, EVENTS.c.id)
    )
    return [
        IntentEventInfo(
            id=r.id,
            operation=r.operation,
            idempotency_key=r.idempotency_key,
            amount=r.amount,
            outcome=r.outcome,
            status_from=r.status_from,
            status_to=r.status_to,
            code=r.code,
            created_at=r.created_at,
            completed_at=r.completed_at,
        )
        for r in rows
    ]


async def pending_intents(
    uow: UnitOfWork,
    *,
    older_than: datetime,
    operations: Collection[str] | None = None,
    limit: int = 100,
) -> list[str]:
    """Intents with an operation left pending since before ``older_than`` (for the worker)."""
    query = select(EVENTS.c.intent_id).where(
        EVENTS.c.outcome == "pending", EVENTS.c.created_at < older_than
    )
    if operations is not None:
        query = query.where(EVENTS.c.operation.in_(list(operations)))
    rows = await uow.execute(query.distinct().limit(limit))
    return [r[0] for r in rows]


def payment_problem(outcome: PaymentOutcome) -> Problem:
    """The 402 problem the checkout API answers with for a failed authorization."""
    code, detail = _PAYMENT_PROBLEMS.get(
        outcome.code or "", ("payment_failed", "The payment did not go through.")
    )
    return Problem(402, code, detail, title="Payment failed", intent_id=outcome.intent_id)


# -- rows, as the operations read and answer them ----------------------------------------------


async def load_intent(uow: UnitOfWork, intent_id: str) -> Row[Any] | None:
    """The intent's row as stored (the operations need its token and charge id)."""
    return (await uow.execute(select(INTENTS).where(INTENTS.c.id == intent_id))).first()


def answer_of(intent: Row[Any], event: Row[Any]) -> PaymentOutcome:
    if event.outcome == "pending":
        return outcome_of(intent, ok=False, code=PROVIDER_TIMEOUT, pending=True)
    if event.outcome == "succeeded":
        return outcome_of(intent, ok=True, code=None)
    return outcome_of(intent, ok=False, code=event.code)


def outcome_of(
    intent: Row[Any], *, ok: bool, code: str | None, pending: bool = False
) -> PaymentOutcome:
    return PaymentOutcome(
        intent_id=intent.id,
        status=intent.status,
        ok=ok,
        code=code,
        message=_MESSAGES.get(code) if code else None,
        amount_authorized=intent.amount_authorized,
        amount_captured=intent.amount_captured,
        amount_refunded=intent.amount_refunded,
        currency=intent.currency,
        card_brand=intent.card_brand,
        card_last4=intent.card_last4,
        pending=pending,
    )


def info_of(row: Row[Any]) -> IntentInfo:
    return IntentInfo(
        id=row.id,
        owner=row.owner,
        amount=row.amount,
        currency=row.currency,
        amount_authorized=row.amount_authorized,
        amount_captured=row.amount_captured,
        amount_refunded=row.amount_refunded,
        status=row.status,
        provider=row.provider,
        provider_charge_id=row.provider_charge_id,
        card_brand=row.card_brand,
        card_last4=row.card_last4,
        failure_code=row.failure_code,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
