"""Recording a payment operation, once: ``pending`` before the processor is asked (step 1,
with the rules the intent already shows checked first), and its answer afterwards (step 3: the
call that closes the pending event applies the result and publishes it). Asking the processor,
step 2, is :mod:`mercato.payments.operations`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Row, bindparam, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from mercato import events
from mercato.db import Database, UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.payments.intents import (
    EVENTS,
    INTENTS,
    PROVIDER_TIMEOUT,
    PaymentOutcome,
    answer_of,
    load_intent,
    outcome_of,
)
from mercato.payments.provider import PaymentProvider, ProviderResult
from mercato.problems import Problem, not_found

log = logging.getLogger("mercato.payments")


@dataclass(frozen=True, slots=True)
class Op:
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


class KeyTaken(Exception):
    """A concurrent call recorded the same idempotency key first."""


# -- step 1: record the operation as pending -------------------------------------------------------


async def open_authorization(
    db: Database,
    provider_name: str,
    owner: str,
    amount: int,
    currency: str,
    token: str,
    key: str,
) -> Op | PaymentOutcome:
    for _ in range(3):
        try:
            return await _open_authorization_once(
                db, provider_name, owner, amount, currency, token, key
            )
        except KeyTaken:
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
) -> Op | PaymentOutcome:
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
                raise KeyTaken  # the other insert was rolled back: try again
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
    return Op(
        event_id=event_id,
        intent_id=intent_id,
        operation="authorize",
        provider_key=provider_key(intent_id, "authorize", key),
        amount=amount,
        currency=currency,
        token=token,
        charge_id=None,
    )


async def open_operation(
    db: Database,
    provider: PaymentProvider,
    intent_id: str,
    operation: str,
    key: str,
    amount: int | None,
) -> Op | PaymentOutcome:
    for _ in range(3):
        try:
            return await _open_once(db, provider, intent_id, operation, key, amount)
        except KeyTaken:
            continue
    raise Problem(409, "idempotency_conflict", "The same operation is being started elsewhere")


async def _open_once(
    db: Database,
    provider: PaymentProvider,
    intent_id: str,
    operation: str,
    key: str,
    amount: int | None,
) -> Op | PaymentOutcome:
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
            raise KeyTaken from exc
    return Op(
        event_id=event_id,
        intent_id=intent_id,
        operation=operation,
        provider_key=provider_key(intent_id, operation, key),
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


# -- step 3: record the answer, exactly once -------------------------------------------------------


async def settle(db: Database, op: Op, result: ProviderResult) -> PaymentOutcome:
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
            log_result(op, result)
        intent = await load_intent(uow, op.intent_id)
        event = (await uow.execute(select(EVENTS).where(EVENTS.c.id == op.event_id))).one()
    assert intent is not None
    return answer_of(intent, event)


async def _settle_authorization(
    uow: UnitOfWork, op: Op, result: ProviderResult, now: datetime
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
    log_result(op, result)
    return outcome_of(intent, ok=result.ok, code=None if result.ok else result.code)


async def _apply(uow: UnitOfWork, op: Op, result: ProviderResult, now: datetime) -> str:
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


def provider_key(intent_id: str, operation: str, key: str) -> str:
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
            "provider_key": provider_key(intent_id, operation, key),
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


def op_from(intent: Row[Any], event: Row[Any]) -> Op:
    return Op(
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


def _resume_or_answer(intent: Row[Any], event: Row[Any]) -> Op | PaymentOutcome:
    return op_from(intent, event) if event.outcome == "pending" else answer_of(intent, event)


def log_result(op: Op, result: ProviderResult) -> None:
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
