"""Moving money: authorize, capture, void and refund through a provider, exactly once.

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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Row, bindparam, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from mercato import events
from mercato.db import Database, UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.money import MAX_MINOR
from mercato.payments import provider as p
from mercato.payments.intents import (
    EVENTS,
    INTENTS,
    PROVIDER_TIMEOUT,
    PROVIDER_UNAVAILABLE,
    PaymentOutcome,
    answer_of,
    load_intent,
    outcome_of,
)
from mercato.payments.provider import (
    PaymentProvider,
    ProviderError,
    ProviderResult,
    ProviderTimeout,
    ProviderUnavailable,
)
from mercato.problems import Problem, not_found, validation_problem

log = logging.getLogger("mercato.payments")

SEND_ATTEMPTS = 3  # sends per operation, always with the same idempotency key
LOOKUP_ATTEMPTS = 2
BACKOFF_SECONDS = (0.0, 0.05, 0.25)
MAX_KEY_LENGTH = 200
MAX_OWNER_LENGTH = 80
_KEY_SHAPE = re.compile(r"^[\x21-\x7e]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


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
    async with db.transaction() as uow:
        intent = await load_intent(uow, intent_id)
        if intent is None:
            raise not_found("Payment intent", intent_id)
        left = await uow.scalar(
            select(func.count())
            .select_from(EVENTS)
            .where(EVENTS.c.intent_id == intent_id, EVENTS.c.outcome == "pending")
        )
    if left:
        return outcome_of(intent, ok=False, code=PROVIDER_TIMEOUT, pending=True)
    code = intent.failure_code if intent.status == "failed" else None
    return outcome_of(intent, ok=True, code=code)


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
    async with db.transaction() as uow:
        intent_id = new_id("pi")
        now = utcnow()
        # Insert first and read only when the key is taken: a new key (the usual case) costs
        # no lookup. PostgreSQL makes a concurrent insert of the same key wait for the first
        # one's commit, after which the read below sees its intent.
        created = await uow.changed(
            _new_intent_statement(uow.dialect.name),
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
        if created != 1:
            intent = (
                await uow.execute(select(INTENTS).where(INTENTS.c.idempotency_key == key))
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
            event = await _find_event(uow, intent.id, "authorize", key)
            assert event is not None, "an intent is created with its authorize event"
            return _resume_or_answer(intent, event)
        event_id = await _insert_event(uow, intent_id, "authorize", key, amount, "requires_payment")
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
    async with db.transaction() as uow:
        intent = await load_intent(uow, intent_id)
        if intent is None:
            raise not_found("Payment intent", intent_id)
        if intent.provider != provider.name:
            raise RuntimeError(
                f"intent {intent_id} belongs to provider {intent.provider!r}, not {provider.name!r}"
            )
        event = await _find_event(uow, intent_id, operation, key)
        if event is not None:
            if amount is not None and event.amount != amount:
                raise _conflict()
            return _resume_or_answer(intent, event)
        in_flight = await _pending_amount(uow, intent_id, operation)
        decided = _check_rules(intent, operation, amount, in_flight)
        if isinstance(decided, PaymentOutcome):
            return decided
        try:
            event_id = await _insert_event(uow, intent_id, operation, key, decided, intent.status)
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
            return outcome_of(intent, ok=True, code=None)
        if intent.amount_captured > 0:
            raise Problem(
                409, "payment_already_captured", "A captured payment cannot be voided; refund it"
            )
        if status == "requires_payment":
            # The authorization is still unresolved (the provider could not be reached).
            return outcome_of(intent, ok=False, code=PROVIDER_TIMEOUT, pending=True)
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
        async with db.transaction() as uow:
            intent = await load_intent(uow, op.intent_id)
        assert intent is not None
        return outcome_of(intent, ok=False, code=code, pending=True)
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
    async with db.transaction() as uow:
        intent = await load_intent(uow, intent_id)
        if intent is None:
            raise not_found("Payment intent", intent_id)
        query = select(EVENTS).where(EVENTS.c.intent_id == intent_id, EVENTS.c.outcome == "pending")
        if operations is not None:
            query = query.where(EVENTS.c.operation.in_(list(operations)))
        pending = (await uow.execute(query.order_by(EVENTS.c.created_at, EVENTS.c.id))).all()
    for event in pending:
        if event.operation != "authorize" and intent.provider_charge_id is None:
            async with db.transaction() as uow:
                intent = await load_intent(uow, intent_id)
            assert intent is not None
        op = _op_from(intent, event)
        log.info("payment %s: resolving pending %s", intent_id, event.operation)
        await _complete(db, provider, op)


# -- step 3: record the answer, exactly once -------------------------------------------------------


async def _settle(db: Database, op: _Op, result: ProviderResult) -> PaymentOutcome:
    async with db.transaction() as uow:
        now = utcnow()
        if op.operation == "authorize":
            settled = await _settle_authorization(uow, op, result, now)
            if settled is not None:
                return settled
        closed = await uow.changed(
            update(EVENTS)
            .where(EVENTS.c.id == op.event_id, EVENTS.c.outcome == "pending")
            .values(
                outcome="succeeded" if result.ok else "failed",
                code=result.code,
                completed_at=now,
            )
        )
        if closed == 1:
            status_to = await _apply(uow, op, result, now)
            await uow.execute(
                update(EVENTS).where(EVENTS.c.id == op.event_id).values(status_to=status_to)
            )
            _log_result(op, result)
        intent = await load_intent(uow, op.intent_id)
        event = (await uow.execute(select(EVENTS).where(EVENTS.c.id == op.event_id))).one()
    assert intent is not None
    return answer_of(intent, event)


async def _settle_authorization(
    uow: UnitOfWork, op: _Op, result: ProviderResult, now: datetime
) -> PaymentOutcome | None:
    """The authorization's answer recorded in three statements (the checkout's hot path): close
    the pending event with the status it leads to, move the intent out of ``requires_payment``
    (``RETURNING`` gives the outcome without reading it again) and publish the event. ``None``
    when another call closed the event first: the general path then reads and answers."""
    status_to = "authorized" if result.ok else "failed"
    closed = await uow.changed(
        _CLOSE_PENDING_EVENT,
        {
            "b_id": op.event_id,
            "outcome": "succeeded" if result.ok else "failed",
            "code": result.code,
            "completed_at": now,
            "status_to": status_to,
        },
    )
    if closed != 1:
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
    intent = (await uow.execute(_AUTHORIZATION_ANSWERED, answered)).first()
    if intent is None:
        # The intent moved on by another way (never through this module): keep the event true.
        intent = await load_intent(uow, op.intent_id)
        assert intent is not None
        await uow.execute(
            update(EVENTS).where(EVENTS.c.id == op.event_id).values(status_to=intent.status)
        )
    else:
        await events.publish(
            uow,
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
    return outcome_of(intent, ok=result.ok, code=None if result.ok else result.code)


async def _apply(uow: UnitOfWork, op: _Op, result: ProviderResult, now: datetime) -> str:
    """Change the intent by what the provider did and publish it; returns the new status."""
    i = INTENTS.c
    where = i.id == op.intent_id
    intent = await load_intent(uow, op.intent_id)
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
        done = await uow.changed(
            update(INTENTS).where(where, i.status == "requires_payment").values(**values)
        )
        if done == 1:
            await events.publish(
                uow,
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
            update(INTENTS)
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
            update(INTENTS)
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
            update(INTENTS)
            .where(where, i.status == "authorized")
            .values(status="voided", updated_at=now)
        )
        amount = intent.amount_authorized
        event_type = "PaymentVoided"
    done = await uow.changed(statement)
    after = await load_intent(uow, op.intent_id)
    assert after is not None
    if done == 1:
        await events.publish(
            uow,
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
_INSERT_EVENT = insert(EVENTS)
_CLOSE_PENDING_EVENT = update(EVENTS).where(
    EVENTS.c.id == bindparam("b_id"), EVENTS.c.outcome == "pending"
)
_AUTHORIZATION_ANSWERED = (
    update(INTENTS)
    .where(INTENTS.c.id == bindparam("b_id"), INTENTS.c.status == "requires_payment")
    .returning(*INTENTS.c)
)


def _new_intent_statement(dialect: str) -> Insert:
    """INSERT of an intent that does nothing when its idempotency key exists."""
    statement = _NEW_INTENT.get(dialect)
    if statement is None:
        ins = postgresql.insert(INTENTS) if dialect == "postgresql" else sqlite.insert(INTENTS)
        statement = ins.on_conflict_do_nothing(index_elements=[INTENTS.c.idempotency_key])
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


async def _find_event(uow: UnitOfWork, intent_id: str, operation: str, key: str) -> Row[Any] | None:
    e = EVENTS.c
    query = select(EVENTS).where(
        e.intent_id == intent_id, e.operation == operation, e.idempotency_key == key
    )
    return (await uow.execute(query)).first()


async def _pending_amount(uow: UnitOfWork, intent_id: str, operation: str) -> int:
    e = EVENTS.c
    total = await uow.scalar(
        select(func.coalesce(func.sum(e.amount), 0)).where(
            e.intent_id == intent_id, e.operation == operation, e.outcome == "pending"
        )
    )
    return int(total or 0)


async def _insert_event(
    uow: UnitOfWork,
    intent_id: str,
    operation: str,
    key: str,
    amount: int | None,
    status_from: str,
) -> str:
    event_id = new_id("pev")
    await uow.execute(
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
    return _op_from(intent, event) if event.outcome == "pending" else answer_of(intent, event)


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
