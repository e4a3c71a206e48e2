"""Payment intents: authorize, capture, void and refund through a provider, exactly once.

How a money-moving operation runs, and why:

1. In one short transaction the operation is recorded as ``pending`` (an intent event) under its
   idempotency key, after the business rules are checked. Nothing is held open while the
   provider is called, so a slow processor never holds a database lock.
2. The provider is called with a key derived from the intent, the operation and the caller's
   key. A timeout means "unknown": the provider is asked by key (``lookup``) what happened, and
   when it has no record the request is resent with the *same* key, which can never act twice.
   A processing error is resent the same way a bounded number of times.
3. In a second short transaction the pending event is closed with a conditional update, and
   only the call that closes it applies the result to the intent and publishes the domain event.
   A retry, a concurrent duplicate or :func:`recover` therefore counts each operation once.

An operation whose outcome is still unknown after the bounded retries stays pending: the caller
gets ``ok=False, pending=True`` and may retry with the same key; :func:`recover` (and the worker)
finish it later. Rule violations (refunding more than was captured, voiding a captured payment)
are :class:`~mercato.problems.Problem` errors, raised before the provider is called whenever the
intent's state already shows them. Card numbers never get this far: only processor tokens are
accepted, and a token shaped like a card number is refused before anything is written or logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Insert, Row, Table, bindparam, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mercato import events
from mercato.db import Database, utcnow
from mercato.ids import new_id
from mercato.money import MAX_MINOR
from mercato.payments import provider as p
from mercato.payments.models import Intent, IntentEvent
from mercato.payments.provider import (
    PaymentProvider,
    ProviderError,
    ProviderResult,
    ProviderTimeout,
    ProviderUnavailable,
)
from mercato.payments.registry import get_provider, register_provider
from mercato.payments.sandbox import (
    SandboxChargeInfo,
    SandboxProvider,
    SandboxSummary,
    list_charges,
    sandbox_charge_summary,
)
from mercato.problems import Problem, not_found, validation_problem

__all__ = [
    "IntentEventInfo",
    "IntentInfo",
    "PaymentOutcome",
    "PaymentProvider",
    "ProviderResult",
    "ProviderTimeout",
    "ProviderUnavailable",
    "SandboxChargeInfo",
    "SandboxProvider",
    "SandboxSummary",
    "authorize",
    "capture",
    "find_intent_by_owner",
    "get_intent",
    "get_provider",
    "intent_events",
    "list_charges",
    "payment_problem",
    "recover",
    "refund",
    "register_provider",
    "sandbox_charge_summary",
    "void",
]

log = logging.getLogger("mercato.payments")

Executor = AsyncSession | AsyncConnection

# Outcome codes besides the provider's own (``mercato.payments.provider``).
PROVIDER_TIMEOUT = "provider_timeout"  # outcome unknown for now: retry with the same key
PROVIDER_UNAVAILABLE = "provider_unavailable"

SEND_ATTEMPTS = 3  # sends per operation, always with the same idempotency key
LOOKUP_ATTEMPTS = 2
BACKOFF_SECONDS = (0.0, 0.05, 0.25)
MAX_KEY_LENGTH = 200
MAX_OWNER_LENGTH = 80
_KEY_SHAPE = re.compile(r"^[\x21-\x7e]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")

_intents = cast(Table, Intent.__table__)
_events = cast(Table, IntentEvent.__table__)

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


@dataclass(frozen=True, slots=True)
class _Op:
    """An operation recorded as pending, with everything needed to (re)send it."""

    event_id: str
    intent_id: str
    operation: str
    provider_key: str
    amount: int | None
    currency: str
    token: str
    charge_id: str | None
    resumed: bool = False  # recorded earlier: it may already have reached the provider


class _KeyTaken(Exception):
    """A concurrent call recorded the same idempotency key first."""


# -- input checks (before anything is written) -----------------------------------------------------


def _check_token(token: object) -> str:
    if not isinstance(token, str) or not p.is_valid_token(token):
        if isinstance(token, str) and p.looks_like_card_number(token):
            log.warning("refused a payment token shaped like a card number (not stored)")
        raise validation_problem(
            "payment_token",
            "must be a payment token from the payment form (tok_…); card details are not accepted",
            code="invalid_payment_token",
        )
    return token


def _check_amount(field: str, amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_MINOR:
        raise validation_problem(field, "must be a positive amount in minor units")
    return amount


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH or not _KEY_SHAPE.match(key):
        raise validation_problem(
            "idempotency_key", f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"
        )
    return key


def _check_text(field: str, value: object, max_length: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise validation_problem(field, f"must be 1 to {max_length} characters")
    return value


# -- the operations --------------------------------------------------------------------------------


async def authorize(
    db: Database,
    provider: PaymentProvider,
    *,
    owner: str,
    amount: int,
    currency: str,
    token: str,
    idempotency_key: str,
) -> PaymentOutcome:
    """Hold ``amount`` on the card behind ``token`` for ``owner``.

    The same key returns the same intent (and never charges again); the same key with a
    different owner, amount, currency or token is a 409 ``idempotency_conflict``.
    """
    _check_token(token)
    _check_text("owner", owner, MAX_OWNER_LENGTH)
    _check_amount("amount", amount)
    if not _CURRENCY.match(currency):
        raise validation_problem("currency", "must be an ISO 4217 code such as EUR")
    _check_key(idempotency_key)
    opened = await _open_authorization(
        db, provider.name, owner, amount, currency, token, idempotency_key
    )
    return await _finish(db, provider, opened)


async def capture(
    db: Database,
    provider: PaymentProvider,
    intent_id: str,
    amount: int | None,
    idempotency_key: str,
) -> PaymentOutcome:
    """Take ``amount`` (None: everything still authorized) of the authorization.

    Partial captures are allowed; what remains stays capturable. Capturing more than remains is
    a 422 ``capture_exceeds_authorized``; a voided or unauthorized intent is a 409.
    """
    _check_key(idempotency_key)
    if amount is not None:
        _check_amount("amount", amount)
    opened = await _open(db, provider, intent_id, "capture", idempotency_key, amount)
    outcome = await _finish(db, provider, opened)
    _raise_if_refused("capture", outcome)
    return outcome


async def void(
    db: Database, provider: PaymentProvider, intent_id: str, idempotency_key: str
) -> PaymentOutcome:
    """Release an authorization of which nothing was captured.

    Voiding an intent that is already voided, or whose authorization failed, is a successful
    no-op; voiding one with a capture is a 409 ``payment_already_captured``. An authorization
    still in flight is settled first, so a void never leaves money held behind it.
    """
    _check_key(idempotency_key)
    await _resume_pending(db, provider, intent_id, ("authorize",))
    opened = await _open(db, provider, intent_id, "void", idempotency_key, None)
    outcome = await _finish(db, provider, opened)
    _raise_if_refused("void", outcome)
    return outcome


async def refund(
    db: Database,
    provider: PaymentProvider,
    intent_id: str,
    amount: int,
    idempotency_key: str,
) -> PaymentOutcome:
    """Give back ``amount`` of what was captured (partial refunds allowed).

    More than captured - refunded (counting refunds still in flight) is a 422
    ``refund_exceeds_captured``, refused before the provider is called; the provider's own
    check decides between concurrent refunds.
    """
    _check_key(idempotency_key)
    _check_amount("amount", amount)
    await _resume_pending(db, provider, intent_id, ("capture",))
    opened = await _open(db, provider, intent_id, "refund", idempotency_key, amount)
    outcome = await _finish(db, provider, opened)
    _raise_if_refused("refund", outcome)
    return outcome


async def recover(db: Database, provider: PaymentProvider, intent_id: str) -> PaymentOutcome:
    """Bring an intent in line with the provider after a crash or an unresolved timeout.

    Each operation left pending is looked up at the provider by its key and its real result
    applied; one the provider never received is resent with the same key, so it happens exactly
    once. ``ok`` is True when nothing is left pending; ``status`` is the intent's state.
    """
    await _resume_pending(db, provider, intent_id, None)
    async with db.connect() as conn:
        intent = await _load(conn, intent_id)
        if intent is None:
            raise not_found("Payment intent", intent_id)
        left = await conn.scalar(
            select(func.count())
            .select_from(_events)
            .where(_events.c.intent_id == intent_id, _events.c.outcome == "pending")
        )
    if left:
        return _outcome(intent, ok=False, code=PROVIDER_TIMEOUT, pending=True)
    code = intent.failure_code if intent.status == "failed" else None
    return _outcome(intent, ok=True, code=code)


async def pending_intents(
    db: Database,
    *,
    older_than: datetime,
    operations: Collection[str] | None = None,
    limit: int = 100,
) -> list[str]:
    """Intents with an operation left pending since before ``older_than`` (for the worker)."""
    query = select(_events.c.intent_id).where(
        _events.c.outcome == "pending", _events.c.created_at < older_than
    )
    if operations is not None:
        query = query.where(_events.c.operation.in_(list(operations)))
    async with db.connect() as conn:
        rows = await conn.execute(query.distinct().limit(limit))
        return [r[0] for r in rows]


# -- reading ---------------------------------------------------------------------------------------


async def get_intent(executor: Executor, intent_id: str) -> IntentInfo | None:
    row = (await executor.execute(select(_intents).where(_intents.c.id == intent_id))).first()
    return _info(row) if row is not None else None


async def find_intent_by_owner(executor: Executor, owner: str) -> IntentInfo | None:
    """The owner's live intent: the newest that did not fail, else the newest."""
    failed_last = case((_intents.c.status == "failed", 1), else_=0)
    row = (
        await executor.execute(
            select(_intents)
            .where(_intents.c.owner == owner)
            .order_by(failed_last, _intents.c.created_at.desc(), _intents.c.id.desc())
            .limit(1)
        )
    ).first()
    return _info(row) if row is not None else None


async def intent_events(executor: Executor, intent_id: str) -> list[IntentEventInfo]:
    rows = await executor.execute(
        select(_events)
        .where(_events.c.intent_id == intent_id)
        .order_by(_events.c.created_at, _events.c.id)
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


def payment_problem(outcome: PaymentOutcome) -> Problem:
    """The 402 problem the checkout API answers with for a failed authorization."""
    code, detail = _PAYMENT_PROBLEMS.get(
        outcome.code or "", ("payment_failed", "The payment did not go through.")
    )
    return Problem(402, code, detail, title="Payment failed", intent_id=outcome.intent_id)


# -- step 1: record the operation as pending -------------------------------------------------------


async def _open_authorization(
    db: Database,
    provider_name: str,
    owner: str,
    amount: int,
    currency: str,
    token: str,
    key: str,
) -> _Op | PaymentOutcome:
    for _ in range(3):
        try:
            return await _open_authorization_once(
                db, provider_name, owner, amount, currency, token, key
            )
        except _KeyTaken:
            continue  # a concurrent call with the same key created the intent: read it
    raise Problem(409, "idempotency_conflict", "The same payment is being started elsewhere")


async def _open_authorization_once(
    db: Database,
    provider_name: str,
    owner: str,
    amount: int,
    currency: str,
    token: str,
    key: str,
) -> _Op | PaymentOutcome:
    async with db.connect() as conn:
        intent_id = new_id("pi")
        now = utcnow()
        # Insert first and read only when the key is taken: a new key (the usual case) costs
        # no lookup. PostgreSQL makes a concurrent insert of the same key wait for the first
        # one's commit, after which the read below sees its intent.
        created = await conn.execute(
            _new_intent_statement(conn.dialect.name),
            {
                "id": intent_id,
                "owner": owner,
                "idempotency_key": key,
                "amount": amount,
                "currency": currency,
                "amount_authorized": 0,
                "amount_captured": 0,
                "amount_refunded": 0,
                "status": "requires_payment",
                "provider": provider_name,
                "token": token,
                "created_at": now,
                "updated_at": now,
            },
        )
        if created.rowcount != 1:
            intent = (
                await conn.execute(select(_intents).where(_intents.c.idempotency_key == key))
            ).first()
            if intent is None:
                raise _KeyTaken  # the other insert was rolled back: try again
            if (intent.owner, intent.amount, intent.currency, intent.token) != (
                owner,
                amount,
                currency,
                token,
            ):
                raise _conflict()
            event = await _find_event(conn, intent.id, "authorize", key)
            assert event is not None, "an intent is created with its authorize event"
            return _resume_or_answer(intent, event)
        event_id = await _insert_event(
            conn, intent_id, "authorize", key, amount, "requires_payment"
        )
    log.info("payment %s: authorizing %s %s (token %s)", intent_id, amount, currency, token)
    return _Op(
        event_id=event_id,
        intent_id=intent_id,
        operation="authorize",
        provider_key=_provider_key(intent_id, "authorize", key),
        amount=amount,
        currency=currency,
        token=token,
        charge_id=None,
    )


async def _open(
    db: Database,
    provider: PaymentProvider,
    intent_id: str,
    operation: str,
    key: str,
    amount: int | None,
) -> _Op | PaymentOutcome:
    for _ in range(3):
        try:
            return await _open_once(db, provider, intent_id, operation, key, amount)
        except _KeyTaken:
            continue
    raise Problem(409, "idempotency_conflict", "The same operation is being started elsewhere")


async def _open_once(
    db: Database,
    provider: PaymentProvider,
    intent_id: str,
    operation: str,
    key: str,
    amount: int | None,
) -> _Op | PaymentOutcome:
    async with db.connect() as conn:
        intent = await _load(conn, intent_id)
        if intent is None:
            raise not_found("Payment intent", intent_id)
        if intent.provider != provider.name:
            raise RuntimeError(
                f"intent {intent_id} belongs to provider {intent.provider!r}, not {provider.name!r}"
            )
        event = await _find_event(conn, intent_id, operation, key)
        if event is not None:
            if amount is not None and event.amount != amount:
                raise _conflict()
            return _resume_or_answer(intent, event)
        in_flight = await _pending_amount(conn, intent_id, operation)
        decided = _check_rules(intent, operation, amount, in_flight)
        if isinstance(decided, PaymentOutcome):
            return decided
        try:
            event_id = await _insert_event(conn, intent_id, operation, key, decided, intent.status)
        except IntegrityError as exc:
            raise _KeyTaken from exc
    return _Op(
        event_id=event_id,
        intent_id=intent_id,
        operation=operation,
        provider_key=_provider_key(intent_id, operation, key),
        amount=decided,
        currency=intent.currency,
        token=intent.token,
        charge_id=intent.provider_charge_id,
    )


def _check_rules(
    intent: Row[Any], operation: str, amount: int | None, in_flight: int
) -> int | PaymentOutcome | None:
    """The amount to send, a no-op answer, or a Problem: the rules the intent already shows."""
    status = intent.status
    if operation == "void":
        if status in ("voided", "failed"):
            return _outcome(intent, ok=True, code=None)
        if intent.amount_captured > 0:
            raise Problem(
                409, "payment_already_captured", "A captured payment cannot be voided; refund it"
            )
        if status == "requires_payment":
            # The authorization is still unresolved (the provider could not be reached).
            return _outcome(intent, ok=False, code=PROVIDER_TIMEOUT, pending=True)
        return None
    if operation == "capture":
        if status in ("requires_payment", "failed"):
            raise Problem(409, "payment_not_authorized", "The payment was not authorized")
        if status == "voided":
            raise Problem(409, "payment_voided", "The authorization was voided")
        remaining = intent.amount_authorized - intent.amount_captured - in_flight
        wanted = remaining if amount is None else amount
        if wanted <= 0 or wanted > remaining:
            raise Problem(
                422,
                "capture_exceeds_authorized",
                "The amount exceeds what remains authorized",
                capturable=max(remaining, 0),
            )
        return wanted
    assert operation == "refund" and amount is not None
    refundable = intent.amount_captured - intent.amount_refunded - in_flight
    if amount > refundable:
        raise Problem(
            422,
            "refund_exceeds_captured",
            "The refund exceeds what was captured and not yet refunded",
            refundable=max(refundable, 0),
        )
    return amount


def _raise_if_refused(operation: str, outcome: PaymentOutcome) -> None:
    """A provider's refusal of a rule (seen only under races) answers like the local check."""
    code = outcome.code
    if outcome.ok or code is None:
        return
    if code == p.AMOUNT_EXCEEDS_CAPTURED:
        raise Problem(
            422, "refund_exceeds_captured", "The refund exceeds what was captured and not refunded"
        )
    if code == p.AMOUNT_EXCEEDS_AUTHORIZED:
        raise Problem(
            422, "capture_exceeds_authorized", "The amount exceeds what remains authorized"
        )
    if code == p.ALREADY_CAPTURED:
        raise Problem(
            409, "payment_already_captured", "A captured payment cannot be voided; refund it"
        )
    if code == p.ALREADY_VOIDED and operation == "capture":
        raise Problem(409, "payment_voided", "The authorization was voided")
    if code == p.CHARGE_FAILED:
        raise Problem(409, "payment_not_authorized", "The payment was not authorized")


# -- step 2: ask the provider ----------------------------------------------------------------------


async def _send(provider: PaymentProvider, op: _Op) -> ProviderResult:
    key = op.provider_key
    if op.operation == "authorize":
        assert op.amount is not None
        return await provider.authorize(
            amount=op.amount, currency=op.currency, token=op.token, idempotency_key=key
        )
    assert op.charge_id is not None, "only an authorized intent has operations after authorize"
    if op.operation == "void":
        return await provider.void(charge_id=op.charge_id, idempotency_key=key)
    assert op.amount is not None
    if op.operation == "capture":
        return await provider.capture(charge_id=op.charge_id, amount=op.amount, idempotency_key=key)
    return await provider.refund(charge_id=op.charge_id, amount=op.amount, idempotency_key=key)


async def _lookup(provider: PaymentProvider, key: str) -> ProviderResult | None:
    for attempt in range(LOOKUP_ATTEMPTS):
        if attempt:
            await asyncio.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
        try:
            return await provider.lookup(key)
        except ProviderError:
            continue
    return None


async def _ask(provider: PaymentProvider, op: _Op) -> ProviderResult | str:
    """The provider's answer, or why there is none: ``PROVIDER_TIMEOUT`` when the operation may
    have happened (unresolved), ``PROVIDER_UNAVAILABLE`` when it surely did not."""
    # A resumed operation may have reached the provider before: ask first, and until an answer
    # is found assume it might have acted.
    uncertain = op.resumed
    if op.resumed:
        known = await _lookup(provider, op.provider_key)
        if known is not None and not known.retryable:
            return known
    last_retryable: ProviderResult | None = None
    for attempt in range(SEND_ATTEMPTS):
        if attempt:
            await asyncio.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
        try:
            result = await _send(provider, op)
        except ProviderTimeout:
            log.warning("payment %s: %s timed out; looking it up", op.intent_id, op.operation)
            found = await _lookup(provider, op.provider_key)
            if found is None:
                uncertain = True  # resend with the same key: it cannot act twice
                continue
            result = found
        except ProviderUnavailable:
            continue
        if result.retryable:
            last_retryable = result
            continue
        return result
    if uncertain:
        return PROVIDER_TIMEOUT
    return last_retryable or PROVIDER_UNAVAILABLE


async def _finish(
    db: Database, provider: PaymentProvider, opened: _Op | PaymentOutcome
) -> PaymentOutcome:
    return opened if isinstance(opened, PaymentOutcome) else await _complete(db, provider, opened)


async def _complete(db: Database, provider: PaymentProvider, op: _Op) -> PaymentOutcome:
    answer = await _ask(provider, op)
    if op.operation == "authorize" and answer == PROVIDER_UNAVAILABLE:
        # Nothing reached the processor: a definite failure the shopper can retry.
        assert op.amount is not None
        answer = ProviderResult(
            ok=False,
            operation="authorize",
            charge_id=None,
            amount=op.amount,
            currency=op.currency,
            code=PROVIDER_UNAVAILABLE,
        )
    if isinstance(answer, str) or (op.operation != "authorize" and answer.retryable):
        # Not done, or not known to be done: stays pending, to be finished with the same key
        # (a retry by the caller, recover(), or the worker). Authorizations fail instead.
        code = answer if isinstance(answer, str) else answer.code
        log.warning("payment %s: %s not settled (%s)", op.intent_id, op.operation, code)
        async with db.connect() as conn:
            intent = await _load(conn, op.intent_id)
        assert intent is not None
        return _outcome(intent, ok=False, code=code, pending=True)
    if op.operation == "void" and answer.code == p.ALREADY_VOIDED:
        # Voided by an earlier call (another key): the intent's goal is reached.
        answer = replace(answer, ok=True, code=None, message=None)
    return await _settle(db, op, answer)


async def _resume_pending(
    db: Database,
    provider: PaymentProvider,
    intent_id: str,
    operations: Sequence[str] | None,
) -> None:
    """Finish operations left pending on this intent (all, or only ``operations``)."""
    async with db.connect() as conn:
        intent = await _load(conn, intent_id)
        if intent is None:
            raise not_found("Payment intent", intent_id)
        query = select(_events).where(
            _events.c.intent_id == intent_id, _events.c.outcome == "pending"
        )
        if operations is not None:
            query = query.where(_events.c.operation.in_(list(operations)))
        pending = (await conn.execute(query.order_by(_events.c.created_at, _events.c.id))).all()
    for event in pending:
        if event.operation != "authorize" and intent.provider_charge_id is None:
            async with db.connect() as conn:
                intent = await _load(conn, intent_id)
            assert intent is not None
        op = _op_from(intent, event)
        log.info("payment %s: resolving pending %s", intent_id, event.operation)
        await _complete(db, provider, op)


# -- step 3: record the answer, exactly once -------------------------------------------------------


async def _settle(db: Database, op: _Op, result: ProviderResult) -> PaymentOutcome:
    async with db.connect() as conn:
        now = utcnow()
        if op.operation == "authorize":
            settled = await _settle_authorization(conn, op, result, now)
            if settled is not None:
                return settled
        closed = await conn.execute(
            update(_events)
            .where(_events.c.id == op.event_id, _events.c.outcome == "pending")
            .values(
                outcome="succeeded" if result.ok else "failed",
                code=result.code,
                completed_at=now,
            )
        )
        if closed.rowcount == 1:
            status_to = await _apply(conn, op, result, now)
            await conn.execute(
                update(_events).where(_events.c.id == op.event_id).values(status_to=status_to)
            )
            _log_result(op, result)
        intent = await _load(conn, op.intent_id)
        event = (await conn.execute(select(_events).where(_events.c.id == op.event_id))).one()
    assert intent is not None
    return _answer(intent, event)


async def _settle_authorization(
    conn: AsyncConnection, op: _Op, result: ProviderResult, now: datetime
) -> PaymentOutcome | None:
    """The authorization's answer recorded in three statements (the checkout's hot path): close
    the pending event with the status it leads to, move the intent out of ``requires_payment``
    (``RETURNING`` gives the outcome without reading it again) and publish the event. ``None``
    when another call closed the event first: the general path then reads and answers."""
    status_to = "authorized" if result.ok else "failed"
    closed = await conn.execute(
        _CLOSE_PENDING_EVENT,
        {
            "b_id": op.event_id,
            "outcome": "succeeded" if result.ok else "failed",
            "code": result.code,
            "completed_at": now,
            "status_to": status_to,
        },
    )
    if closed.rowcount != 1:
        return None
    answered = {
        "b_id": op.intent_id,
        "status": status_to,
        # A failed authorization leaves the amount at the 0 it was created with.
        "amount_authorized": result.amount if result.ok else 0,
        "failure_code": None if result.ok else result.code,
        "provider_charge_id": result.charge_id,
        "card_brand": result.card_brand,
        "card_last4": result.card_last4,
        "updated_at": now,
    }
    intent = (await conn.execute(_AUTHORIZATION_ANSWERED, answered)).first()
    if intent is None:
        # The intent moved on by another way (never through this module): keep the event true.
        intent = await _load(conn, op.intent_id)
        assert intent is not None
        await conn.execute(
            update(_events).where(_events.c.id == op.event_id).values(status_to=intent.status)
        )
    else:
        await events.publish(
            conn,
            "PaymentAuthorized" if result.ok else "PaymentFailed",
            intent.id,
            {
                "intent_id": intent.id,
                "owner": intent.owner,
                "currency": intent.currency,
                "amount": intent.amount,
                "code": result.code,
                "card_brand": result.card_brand,
                "card_last4": result.card_last4,
            },
        )
    _log_result(op, result)
    return _outcome(intent, ok=result.ok, code=None if result.ok else result.code)


async def _apply(conn: AsyncConnection, op: _Op, result: ProviderResult, now: datetime) -> str:
    """Change the intent by what the provider did and publish it; returns the new status."""
    i = _intents.c
    where = i.id == op.intent_id
    intent = await _load(conn, op.intent_id)
    assert intent is not None
    base = {"intent_id": intent.id, "owner": intent.owner, "currency": intent.currency}
    if op.operation == "authorize":
        if result.ok:
            values: dict[str, Any] = {
                "status": "authorized",
                "amount_authorized": result.amount,
                "failure_code": None,
            }
            event_type = "PaymentAuthorized"
        else:
            values = {"status": "failed", "failure_code": result.code}
            event_type = "PaymentFailed"
        values.update(
            provider_charge_id=result.charge_id,
            card_brand=result.card_brand,
            card_last4=result.card_last4,
            updated_at=now,
        )
        done = await conn.execute(
            update(_intents).where(where, i.status == "requires_payment").values(**values)
        )
        if done.rowcount == 1:
            await events.publish(
                conn,
                event_type,
                intent.id,
                {
                    **base,
                    "amount": intent.amount,
                    "code": result.code,
                    "card_brand": result.card_brand,
                    "card_last4": result.card_last4,
                },
            )
            return str(values["status"])
        return str(intent.status)
    if not result.ok:
        return str(intent.status)
    amount = op.amount or 0
    if op.operation == "capture":
        statement = (
            update(_intents)
            .where(where)
            .values(
                amount_captured=i.amount_captured + amount,
                status=case((i.amount_refunded > 0, "partially_refunded"), else_="captured"),
                updated_at=now,
            )
        )
        event_type = "PaymentCaptured"
    elif op.operation == "refund":
        statement = (
            update(_intents)
            .where(where)
            .values(
                amount_refunded=i.amount_refunded + amount,
                status=case(
                    (i.amount_refunded + amount >= i.amount_captured, "refunded"),
                    else_="partially_refunded",
                ),
                updated_at=now,
            )
        )
        event_type = "PaymentRefunded"
    else:
        statement = (
            update(_intents)
            .where(where, i.status == "authorized")
            .values(status="voided", updated_at=now)
        )
        amount = intent.amount_authorized
        event_type = "PaymentVoided"
    done = await conn.execute(statement)
    after = await _load(conn, op.intent_id)
    assert after is not None
    if done.rowcount == 1:
        await events.publish(
            conn,
            event_type,
            intent.id,
            {
                **base,
                "amount": amount,
                "amount_authorized": after.amount_authorized,
                "amount_captured": after.amount_captured,
                "amount_refunded": after.amount_refunded,
            },
        )
    return str(after.status)


# -- helpers ---------------------------------------------------------------------------------------


# The checkout's statements, built once: building a statement costs about as much as running
# it, and an authorization is a handful of them.
_NEW_INTENT: dict[str, Insert] = {}
_INSERT_EVENT = insert(_events)
_CLOSE_PENDING_EVENT = update(_events).where(
    _events.c.id == bindparam("b_id"), _events.c.outcome == "pending"
)
_AUTHORIZATION_ANSWERED = (
    update(_intents)
    .where(_intents.c.id == bindparam("b_id"), _intents.c.status == "requires_payment")
    .returning(*_intents.c)
)


def _new_intent_statement(dialect: str) -> Insert:
    """INSERT of an intent that does nothing when its idempotency key exists."""
    statement = _NEW_INTENT.get(dialect)
    if statement is None:
        ins = postgresql.insert(_intents) if dialect == "postgresql" else sqlite.insert(_intents)
        statement = ins.on_conflict_do_nothing(index_elements=[_intents.c.idempotency_key])
        _NEW_INTENT[dialect] = statement
    return statement


def _provider_key(intent_id: str, operation: str, key: str) -> str:
    # Scoped by intent and operation: callers may reuse a key for a capture and a refund, or
    # across intents, without one answer standing in for another at the provider.
    return f"{intent_id}:{operation}:{key}"


def _conflict() -> Problem:
    return Problem(
        409,
        "idempotency_conflict",
        "This idempotency key was already used for a different payment request",
    )


async def _load(conn: AsyncConnection, intent_id: str) -> Row[Any] | None:
    return (await conn.execute(select(_intents).where(_intents.c.id == intent_id))).first()


async def _find_event(
    conn: AsyncConnection, intent_id: str, operation: str, key: str
) -> Row[Any] | None:
    e = _events.c
    query = select(_events).where(
        e.intent_id == intent_id, e.operation == operation, e.idempotency_key == key
    )
    return (await conn.execute(query)).first()


async def _pending_amount(conn: AsyncConnection, intent_id: str, operation: str) -> int:
    e = _events.c
    total = await conn.scalar(
        select(func.coalesce(func.sum(e.amount), 0)).where(
            e.intent_id == intent_id, e.operation == operation, e.outcome == "pending"
        )
    )
    return int(total or 0)


async def _insert_event(
    conn: AsyncConnection,
    intent_id: str,
    operation: str,
    key: str,
    amount: int | None,
    status_from: str,
) -> str:
    event_id = new_id("pev")
    await conn.execute(
        _INSERT_EVENT,
        {
            "id": event_id,
            "intent_id": intent_id,
            "operation": operation,
            "idempotency_key": key,
            "provider_key": _provider_key(intent_id, operation, key),
            "amount": amount,
            "outcome": "pending",
            "status_from": status_from,
            "status_to": None,
            "code": None,
            "created_at": utcnow(),
            "completed_at": None,
        },
    )
    return event_id


def _op_from(intent: Row[Any], event: Row[Any]) -> _Op:
    return _Op(
        event_id=event.id,
        intent_id=intent.id,
        operation=event.operation,
        provider_key=event.provider_key,
        amount=event.amount,
        currency=intent.currency,
        token=intent.token,
        charge_id=intent.provider_charge_id,
        resumed=True,
    )


def _resume_or_answer(intent: Row[Any], event: Row[Any]) -> _Op | PaymentOutcome:
    return _op_from(intent, event) if event.outcome == "pending" else _answer(intent, event)


def _answer(intent: Row[Any], event: Row[Any]) -> PaymentOutcome:
    if event.outcome == "pending":
        return _outcome(intent, ok=False, code=PROVIDER_TIMEOUT, pending=True)
    if event.outcome == "succeeded":
        return _outcome(intent, ok=True, code=None)
    return _outcome(intent, ok=False, code=event.code)


def _outcome(
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


def _info(row: Row[Any]) -> IntentInfo:
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


def _log_result(op: _Op, result: ProviderResult) -> None:
    if result.ok:
        log.info(
            "payment %s: %s %s succeeded (charge %s, %s •••• %s)",
            op.intent_id,
            op.operation,
            op.amount,
            result.charge_id,
            result.card_brand,
            result.card_last4,
        )
    else:
        log.info("payment %s: %s refused: %s", op.intent_id, op.operation, result.code)
