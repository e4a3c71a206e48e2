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
from dataclasses import replace

from sqlalchemy import func, select

from mercato.db import Database
from mercato.money import MAX_MINOR
from mercato.payments import provider as p
from mercato.payments.intents import (
    EVENTS,
    PROVIDER_TIMEOUT,
    PROVIDER_UNAVAILABLE,
    PaymentOutcome,
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
from mercato.payments.recording import (
    Op,
    op_from,
    open_authorization,
    open_operation,
    settle,
)
from mercato.problems import Problem, not_found, validation_problem

log = logging.getLogger("mercato.payments")

SEND_ATTEMPTS = 3  # sends per operation, always with the same idempotency key
DEFAULT_CALL_TIMEOUT = 10.0  # seconds; a provider's ``call_timeout_seconds`` overrides it
LOOKUP_ATTEMPTS = 2
BACKOFF_SECONDS = (0.0, 0.05, 0.25)
MAX_KEY_LENGTH = 200
MAX_OWNER_LENGTH = 80
_KEY_SHAPE = re.compile(r"^[\x21-\x7e]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


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
    opened = await open_authorization(
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
    opened = await open_operation(db, provider, intent_id, "capture", idempotency_key, amount)
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
    opened = await open_operation(db, provider, intent_id, "void", idempotency_key, None)
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
    opened = await open_operation(db, provider, intent_id, "refund", idempotency_key, amount)
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


def call_timeout(provider: PaymentProvider) -> float:
    """How long one call to ``provider`` may take (``MERCATO_PAYMENT_TIMEOUT_SECONDS``, set on
    the provider by the registry): past it the call counts as a timeout, whose outcome is
    unknown and is looked up by key, so a slow processor never holds a checkout for long."""
    return float(getattr(provider, "call_timeout_seconds", DEFAULT_CALL_TIMEOUT))


async def _send(provider: PaymentProvider, op: Op) -> ProviderResult:
    try:
        return await asyncio.wait_for(_call(provider, op), call_timeout(provider))
    except TimeoutError:
        raise ProviderTimeout(f"{op.operation} got no answer in time") from None


async def _call(provider: PaymentProvider, op: Op) -> ProviderResult:
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
            return await asyncio.wait_for(provider.lookup(key), call_timeout(provider))
        except (ProviderError, TimeoutError):
            continue
    return None


async def _ask(provider: PaymentProvider, op: Op) -> ProviderResult | str:
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
    db: Database, provider: PaymentProvider, opened: Op | PaymentOutcome
) -> PaymentOutcome:
    return opened if isinstance(opened, PaymentOutcome) else await _complete(db, provider, opened)


async def _complete(db: Database, provider: PaymentProvider, op: Op) -> PaymentOutcome:
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
    return await settle(db, op, answer)


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
        op = op_from(intent, event)
        log.info("payment %s: resolving pending %s", intent_id, event.operation)
        await _complete(db, provider, op)
