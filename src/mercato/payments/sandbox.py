"""The built-in sandbox processor: a card processor's test mode, persisted in its own tables.

It behaves like the real thing where it matters for correctness:

* every operation is idempotent by key: the same key answers with the stored result without
  acting again, and the same key with a different request is an ``idempotency_conflict``;
* limits are enforced by one conditional ``UPDATE`` per operation, inside one short transaction
  that also stores the answer, so concurrent captures or refunds can never exceed what was
  authorized or captured, and a stored answer always matches what was done;
* test tokens choose the behaviour (see :data:`TEST_TOKENS`), including a processing error that
  succeeds when resent with the same key, and a timeout *after* the charge was made, which only
  a lookup by key (or a resend with the same key) can resolve.

:meth:`SandboxProvider.inject_fault` adds network trouble to any operation (a timeout before or
after acting, refusing connections, or hanging before or after acting until the caller's call
timeout gives up) for tests and staging drills.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from sqlalchemy import Insert, Table, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from mercato.db import Database, UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.payments import provider as p
from mercato.payments.models import SandboxCharge, SandboxOperation
from mercato.payments.provider import ProviderResult, ProviderTimeout, ProviderUnavailable

Behaviour = Literal["approve", "decline", "insufficient_funds", "processing_error", "timeout"]
Fault = Literal["timeout_before", "timeout_after", "unavailable", "slow_before", "slow_after"]
SLOW_SECONDS = 3600.0  # a "slow" call: longer than any call timeout

# Like a real processor's per-charge ceiling (999,999.99 in a two-decimal currency).
MAX_AMOUNT = 99_999_999
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MAX_CLAIMS = 8


@dataclass(frozen=True, slots=True)
class TestCard:
    brand: str
    last4: str
    behaviour: Behaviour


TEST_TOKENS: dict[str, TestCard] = {
    "tok_visa": TestCard("visa", "4242", "approve"),
    "tok_mastercard": TestCard("mastercard", "4444", "approve"),
    "tok_amex": TestCard("amex", "8431", "approve"),
    "tok_chargeDeclined": TestCard("visa", "0002", "decline"),
    "tok_chargeDeclinedInsufficientFunds": TestCard("visa", "9995", "insufficient_funds"),
    "tok_processingError": TestCard("visa", "0119", "processing_error"),
    "tok_timeoutAfterCharge": TestCard("visa", "0341", "timeout"),
}


@dataclass(frozen=True, slots=True)
class SandboxSummary:
    """What the processor says happened. ``charges``: authorizations made and not voided."""

    charges: int
    voided: int
    failed: int
    amount_authorized: int
    amount_captured: int
    amount_refunded: int


@dataclass(frozen=True, slots=True)
class SandboxChargeInfo:
    id: str
    token: str
    card_brand: str | None
    card_last4: str | None
    currency: str
    amount_authorized: int
    amount_captured: int
    amount_refunded: int
    status: str
    failure_code: str | None
    created_at: datetime
    updated_at: datetime


class _KeyTaken(Exception):
    """Another transaction stored this idempotency key first: read its answer."""


Act = Callable[[UnitOfWork, int], Awaitable[ProviderResult]]

_charges = cast(Table, SandboxCharge.__table__)
_ops = cast(Table, SandboxOperation.__table__)

# Built once (building a statement costs about as much as running it).
_INSERT_CHARGE = insert(_charges)
_FIRST_ANSWER: dict[str, Insert] = {}


def _first_answer_statement(dialect: str) -> Insert:
    """INSERT of an operation's answer that does nothing when its key is stored already."""
    statement = _FIRST_ANSWER.get(dialect)
    if statement is None:
        ins = postgresql.insert(_ops) if dialect == "postgresql" else sqlite.insert(_ops)
        statement = ins.on_conflict_do_nothing(index_elements=[_ops.c.idempotency_key])
        _FIRST_ANSWER[dialect] = statement
    return statement


class SandboxProvider:
    name = "sandbox"

    def __init__(self, db: Database) -> None:
        self._db = db
        self._faults: dict[str, list[Fault]] = {}

    # -- fault injection -------------------------------------------------------------------

    def inject_fault(self, operation: str, fault: Fault, *, times: int = 1) -> None:
        """Make the next ``times`` calls of ``operation`` (or ``"lookup"``) misbehave."""
        if operation not in (*p.OPERATIONS, "lookup"):
            raise ValueError(f"unknown operation {operation!r}")
        self._faults.setdefault(operation, []).extend([fault] * times)

    def clear_faults(self) -> None:
        self._faults.clear()

    async def _before(self, operation: str) -> Fault | None:
        queue = self._faults.get(operation)
        fault = queue.pop(0) if queue else None
        if fault == "slow_before":
            await asyncio.sleep(SLOW_SECONDS)  # the caller's timeout ends it
        if fault == "timeout_before":
            raise ProviderTimeout(f"sandbox: {operation} timed out before reaching the processor")
        if fault == "unavailable":
            raise ProviderUnavailable(f"sandbox: {operation} refused (processor unavailable)")
        return fault

    @staticmethod
    async def _after(operation: str, fault: Fault | None, result: ProviderResult) -> ProviderResult:
        if fault == "slow_after":
            await asyncio.sleep(SLOW_SECONDS)  # acted, then the answer never comes
        if fault == "timeout_after":
            raise ProviderTimeout(f"sandbox: {operation} timed out after the processor acted")
        return result

    # -- the provider protocol -------------------------------------------------------------

    async def authorize(
        self, *, amount: int, currency: str, token: str, idempotency_key: str
    ) -> ProviderResult:
        fault = await self._before("authorize")
        if not p.is_valid_token(token):
            # Not even recorded: whatever was sent might be a card number.
            return _failed("authorize", None, amount, currency, p.INVALID_TOKEN, "malformed token")
        card = TEST_TOKENS.get(token)

        async def act(uow: UnitOfWork, attempt: int) -> ProviderResult:
            return await self._authorize(uow, amount, currency, token, card, attempt)

        fingerprint = f"authorize|{amount}|{currency}|{token}"
        result, fresh = await self._once("authorize", idempotency_key, fingerprint, None, act)
        if fresh and result.ok and card is not None and card.behaviour == "timeout":
            raise ProviderTimeout("sandbox: the charge was made, then the answer was lost")
        return await self._after("authorize", fault, result)

    async def capture(self, *, charge_id: str, amount: int, idempotency_key: str) -> ProviderResult:
        fault = await self._before("capture")

        async def act(uow: UnitOfWork, _attempt: int) -> ProviderResult:
            return await self._capture(uow, charge_id, amount)

        fingerprint = f"capture|{charge_id}|{amount}"
        result, _ = await self._once("capture", idempotency_key, fingerprint, charge_id, act)
        return await self._after("capture", fault, result)

    async def void(self, *, charge_id: str, idempotency_key: str) -> ProviderResult:
        fault = await self._before("void")

        async def act(uow: UnitOfWork, _attempt: int) -> ProviderResult:
            return await self._void(uow, charge_id)

        result, _ = await self._once("void", idempotency_key, f"void|{charge_id}", charge_id, act)
        return await self._after("void", fault, result)

    async def refund(self, *, charge_id: str, amount: int, idempotency_key: str) -> ProviderResult:
        fault = await self._before("refund")

        async def act(uow: UnitOfWork, _attempt: int) -> ProviderResult:
            return await self._refund(uow, charge_id, amount)

        fingerprint = f"refund|{charge_id}|{amount}"
        result, _ = await self._once("refund", idempotency_key, fingerprint, charge_id, act)
        return await self._after("refund", fault, result)

    async def lookup(self, idempotency_key: str) -> ProviderResult | None:
        await self._before("lookup")
        async with self._db.transaction() as uow:
            stored = await uow.scalar(
                select(_ops.c.result).where(_ops.c.idempotency_key == idempotency_key)
            )
        return ProviderResult.from_dict(stored) if stored else None

    # -- idempotency -----------------------------------------------------------------------

    async def _once(
        self,
        operation: str,
        key: str,
        fingerprint: str,
        charge_id: str | None,
        act: Act,
    ) -> tuple[ProviderResult, bool]:
        """Run ``act`` at most once per key (again only after a retryable failure); returns the
        answer and whether this call acted."""
        if not key or len(key) > 255:
            raise ValueError("an idempotency key of 1 to 255 characters is required")
        first = True
        for _ in range(_MAX_CLAIMS):
            try:
                async with self._db.transaction() as uow:
                    if first:
                        # The usual case, a key never seen: act, then store the answer under the
                        # key in the same transaction. If the key was stored first (a retry, a
                        # concurrent duplicate), the insert does nothing and raising rolls back
                        # what this call did, so the ledger only ever holds answered operations.
                        result = await act(uow, 1)
                        if await self._store_first(uow, operation, key, fingerprint, result):
                            return result, True
                        raise _KeyTaken
                    claimed = await self._claim(uow, operation, key, fingerprint, charge_id)
                    if isinstance(claimed, ProviderResult):
                        return claimed, False
                    if claimed is None:
                        continue  # another call is retrying this key right now; read again
                    result = await act(uow, claimed)
                    await uow.execute(
                        update(_ops)
                        .where(_ops.c.idempotency_key == key)
                        .values(
                            result=result.to_dict(), charge_id=result.charge_id, updated_at=utcnow()
                        )
                    )
                    return result, True
            except _KeyTaken:
                first = False
                continue
        raise ProviderUnavailable("sandbox: too much contention on one idempotency key")

    @staticmethod
    async def _store_first(
        uow: UnitOfWork, operation: str, key: str, fingerprint: str, result: ProviderResult
    ) -> bool:
        """Store the first answer under ``key``; False when the key is stored already."""
        now = utcnow()
        stored = await uow.changed(
            _first_answer_statement(uow.dialect.name),
            {
                "id": new_id("sop"),
                "idempotency_key": key,
                "operation": operation,
                "charge_id": result.charge_id,
                "fingerprint": fingerprint,
                "attempts": 1,
                "result": result.to_dict(),
                "created_at": now,
                "updated_at": now,
            },
        )
        return stored == 1

    @staticmethod
    async def _claim(
        uow: UnitOfWork, operation: str, key: str, fingerprint: str, charge_id: str | None
    ) -> ProviderResult | int | None:
        """The stored answer, or the attempt number this call may act as (None: lost a race)."""
        row = (
            await uow.execute(
                select(_ops.c.fingerprint, _ops.c.attempts, _ops.c.result).where(
                    _ops.c.idempotency_key == key
                )
            )
        ).first()
        now = utcnow()
        if row is None:
            try:
                await uow.execute(
                    insert(_ops).values(
                        id=new_id("sop"),
                        idempotency_key=key,
                        operation=operation,
                        charge_id=charge_id,
                        fingerprint=fingerprint,
                        attempts=1,
                        result=None,
                        created_at=now,
                        updated_at=now,
                    )
                )
            except IntegrityError as exc:
                raise _KeyTaken from exc
            return 1
        if row.fingerprint != fingerprint:
            return ProviderResult(
                ok=False,
                operation=operation,
                charge_id=charge_id,
                amount=0,
                currency="",
                code=p.IDEMPOTENCY_CONFLICT,
                message="this idempotency key was used for a different request",
            )
        stored = ProviderResult.from_dict(row.result)
        if not stored.retryable:
            return stored
        taken = await uow.changed(
            update(_ops)
            .where(_ops.c.idempotency_key == key, _ops.c.attempts == row.attempts)
            .values(attempts=row.attempts + 1, updated_at=now)
        )
        return row.attempts + 1 if taken == 1 else None

    # -- the operations, each inside the transaction that stores its answer -----------------

    @staticmethod
    async def _authorize(
        uow: UnitOfWork,
        amount: int,
        currency: str,
        token: str,
        card: TestCard | None,
        attempt: int,
    ) -> ProviderResult:
        def fail(code: str, message: str, charge_id: str | None = None) -> ProviderResult:
            brand, last4 = (card.brand, card.last4) if card else (None, None)
            return _failed("authorize", charge_id, amount, currency, code, message, brand, last4)

        if amount <= 0:
            return fail(p.INVALID_AMOUNT, "the amount must be positive")
        if amount > MAX_AMOUNT:
            return fail(p.AMOUNT_TOO_LARGE, "the amount exceeds the per-charge maximum")
        if not _CURRENCY.match(currency):
            return fail(p.INVALID_AMOUNT, "the currency must be an ISO 4217 code")
        if card is None:
            return fail(p.INVALID_TOKEN, "no such token")
        if card.behaviour == "processing_error" and attempt == 1:
            return fail(p.PROCESSING_ERROR, "an error occurred while processing the card; retry")
        charge_id = new_id("ch")
        declined = {"decline": p.PAYMENT_DECLINED, "insufficient_funds": p.INSUFFICIENT_FUNDS}
        code = declined.get(card.behaviour)
        now = utcnow()
        await uow.execute(
            _INSERT_CHARGE,
            {
                "id": charge_id,
                "token": token,
                "card_brand": card.brand,
                "card_last4": card.last4,
                "currency": currency,
                "amount_authorized": 0 if code else amount,
                "amount_captured": 0,
                "amount_refunded": 0,
                "status": "failed" if code else "authorized",
                "failure_code": code,
                "created_at": now,
                "updated_at": now,
            },
        )
        if code == p.PAYMENT_DECLINED:
            return fail(code, "the card was declined", charge_id)
        if code is not None:
            return fail(code, "the card has insufficient funds", charge_id)
        return ProviderResult(
            ok=True,
            operation="authorize",
            charge_id=charge_id,
            amount=amount,
            currency=currency,
            card_brand=card.brand,
            card_last4=card.last4,
        )

    @staticmethod
    async def _capture(uow: UnitOfWork, charge_id: str, amount: int) -> ProviderResult:
        charge = await _charge(uow, charge_id)
        if charge is None:
            return _failed("capture", charge_id, amount, "", p.CHARGE_NOT_FOUND, "no such charge")
        if amount <= 0:
            return _result(charge, "capture", amount, p.INVALID_AMOUNT, "must be positive")
        c = _charges.c
        done = await uow.changed(
            update(_charges)
            .where(
                c.id == charge_id,
                c.status.not_in(("voided", "failed")),
                c.amount_captured + amount <= c.amount_authorized,
            )
            .values(
                amount_captured=c.amount_captured + amount,
                status=case((c.amount_refunded > 0, "partially_refunded"), else_="captured"),
                updated_at=utcnow(),
            )
        )
        if done == 1:
            return _result(charge, "capture", amount)
        charge = await _charge(uow, charge_id)
        assert charge is not None
        if charge.status == "voided":
            return _result(charge, "capture", amount, p.ALREADY_VOIDED, "the charge was voided")
        if charge.status == "failed":
            return _result(charge, "capture", amount, p.CHARGE_FAILED, "the charge had failed")
        message = "the amount exceeds what remains authorized"
        return _result(charge, "capture", amount, p.AMOUNT_EXCEEDS_AUTHORIZED, message)

    @staticmethod
    async def _void(uow: UnitOfWork, charge_id: str) -> ProviderResult:
        charge = await _charge(uow, charge_id)
        if charge is None:
            return _failed("void", charge_id, 0, "", p.CHARGE_NOT_FOUND, "no such charge")
        c = _charges.c
        done = await uow.changed(
            update(_charges)
            .where(c.id == charge_id, c.status == "authorized", c.amount_captured == 0)
            .values(status="voided", updated_at=utcnow())
        )
        amount = charge.amount_authorized
        if done == 1:
            return _result(charge, "void", amount)
        charge = await _charge(uow, charge_id)
        assert charge is not None
        if charge.status == "voided":
            return _result(charge, "void", amount, p.ALREADY_VOIDED, "the charge was voided")
        if charge.status == "failed":
            return _result(charge, "void", amount, p.CHARGE_FAILED, "the charge had failed")
        return _result(charge, "void", amount, p.ALREADY_CAPTURED, "the charge was captured")

    @staticmethod
    async def _refund(uow: UnitOfWork, charge_id: str, amount: int) -> ProviderResult:
        charge = await _charge(uow, charge_id)
        if charge is None:
            return _failed("refund", charge_id, amount, "", p.CHARGE_NOT_FOUND, "no such charge")
        if amount <= 0:
            return _result(charge, "refund", amount, p.INVALID_AMOUNT, "must be positive")
        c = _charges.c
        done = await uow.changed(
            update(_charges)
            .where(c.id == charge_id, c.amount_refunded + amount <= c.amount_captured)
            .values(
                amount_refunded=c.amount_refunded + amount,
                status=case(
                    (c.amount_refunded + amount >= c.amount_captured, "refunded"),
                    else_="partially_refunded",
                ),
                updated_at=utcnow(),
            )
        )
        if done == 1:
            return _result(charge, "refund", amount)
        message = "the amount exceeds what remains captured"
        return _result(charge, "refund", amount, p.AMOUNT_EXCEEDS_CAPTURED, message)


async def _charge(uow: UnitOfWork, charge_id: str) -> SandboxChargeInfo | None:
    row = (await uow.execute(select(_charges).where(_charges.c.id == charge_id))).first()
    return SandboxChargeInfo(**row._asdict()) if row is not None else None


def _failed(
    operation: str,
    charge_id: str | None,
    amount: int,
    currency: str,
    code: str,
    message: str,
    brand: str | None = None,
    last4: str | None = None,
) -> ProviderResult:
    return ProviderResult(
        ok=False,
        operation=operation,
        charge_id=charge_id,
        amount=amount,
        currency=currency,
        code=code,
        message=message,
        card_brand=brand,
        card_last4=last4,
    )


def _result(
    charge: SandboxChargeInfo,
    operation: str,
    amount: int,
    code: str | None = None,
    message: str | None = None,
) -> ProviderResult:
    return ProviderResult(
        ok=code is None,
        operation=operation,
        charge_id=charge.id,
        amount=amount,
        currency=charge.currency,
        code=code,
        message=message,
        card_brand=charge.card_brand,
        card_last4=charge.card_last4,
    )


# -- the ledger, for tests, invariants and the back office ---------------------------------


async def sandbox_charge_summary(uow: UnitOfWork, currency: str | None = None) -> SandboxSummary:
    c = _charges.c
    made = (c.amount_authorized > 0) & (c.status != "voided")
    query = select(
        func.count().filter(made),
        func.count().filter(c.status == "voided"),
        func.count().filter(c.status == "failed"),
        func.coalesce(func.sum(case((made, c.amount_authorized), else_=0)), 0),
        func.coalesce(func.sum(c.amount_captured), 0),
        func.coalesce(func.sum(c.amount_refunded), 0),
    )
    if currency is not None:
        query = query.where(c.currency == currency)
    row = (await uow.execute(query)).one()
    return SandboxSummary(*(int(v) for v in row))


async def list_charges(uow: UnitOfWork, *, limit: int = 500) -> list[SandboxChargeInfo]:
    rows = await uow.execute(
        select(_charges).order_by(_charges.c.created_at.desc(), _charges.c.id.desc()).limit(limit)
    )
    return [SandboxChargeInfo(**row._asdict()) for row in rows]
