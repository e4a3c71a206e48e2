"""Payments fixtures: the configured (sandbox) provider, and checks of the money invariants."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select, text

from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.payments import service
from mercato.payments.models import Intent, SandboxCharge
from mercato.payments.sandbox import SandboxProvider
from mercato.runtime import Runtime

CARD_NUMBER_IN_TEXT = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
PAYMENT_TABLES = (
    "payments_intents",
    "payments_intent_events",
    "payments_sandbox_charges",
    "payments_sandbox_operations",
    "outbox_events",
)


@pytest.fixture
def provider(runtime: Runtime) -> SandboxProvider:
    chosen = service.get_provider(runtime)
    assert isinstance(chosen, SandboxProvider)
    return chosen


async def authorized(
    db: Database,
    provider: SandboxProvider,
    amount: int = 10_000,
    *,
    key: str = "auth-1",
    token: str = "tok_visa",  # noqa: S107 (a sandbox test token)
    owner: str = "chk_test",
) -> service.PaymentOutcome:
    outcome = await service.authorize(
        db,
        provider,
        owner=owner,
        amount=amount,
        currency="EUR",
        token=token,
        idempotency_key=key,
    )
    assert outcome.ok, outcome
    return outcome


async def captured(
    db: Database, provider: SandboxProvider, amount: int = 10_000, *, key: str = "auth-1"
) -> service.PaymentOutcome:
    outcome = await authorized(db, provider, amount, key=key)
    done = await service.capture(db, provider, outcome.intent_id, None, f"cap-{key}")
    assert done.ok and done.amount_captured == amount
    return done


async def charge_of(db: Database, intent_id: str) -> SandboxCharge:
    async with db.transaction() as session:
        intent = await session.get(Intent, intent_id)
        assert intent is not None and intent.provider_charge_id is not None
        charge = await session.get(SandboxCharge, intent.provider_charge_id)
        assert charge is not None
        return charge


async def count(db: Database, model: Any, *where: Any) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def outbox_types(db: Database, intent_id: str) -> list[str]:
    async with db.transaction() as session:
        rows = await session.scalars(
            select(OutboxEvent.type)
            .where(OutboxEvent.aggregate_id == intent_id)
            .order_by(OutboxEvent.seq)
        )
        return list(rows)


async def assert_money_invariants(db: Database, intent_id: str) -> service.IntentInfo:
    """The intent, its succeeded operations and the processor's ledger all tell one story."""
    async with db.transaction() as session:
        intent = await service.get_intent(session, intent_id)
        assert intent is not None
        succeeded: dict[str, int] = {}
        for ev in await service.intent_events(session, intent_id):
            if ev.outcome == "succeeded" and ev.amount is not None:
                succeeded[ev.operation] = succeeded.get(ev.operation, 0) + ev.amount
    assert intent.amount_captured == succeeded.get("capture", 0)
    assert intent.amount_refunded == succeeded.get("refund", 0)
    assert 0 <= intent.amount_refunded <= intent.amount_captured <= intent.amount_authorized
    assert intent.net_paid == succeeded.get("capture", 0) - succeeded.get("refund", 0)
    if intent.provider_charge_id is not None:
        charge = await charge_of(db, intent_id)
        assert charge.amount_authorized == intent.amount_authorized
        assert charge.amount_captured == intent.amount_captured
        assert charge.amount_refunded == intent.amount_refunded
    return intent


async def card_numbers_in_tables(db: Database) -> list[str]:
    """Every 13-19 digit number stored in a payments table or the outbox."""
    found: list[str] = []
    async with db.transaction() as session:
        for table in PAYMENT_TABLES:
            rows = await session.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
            for row in rows:
                for value in row:
                    found += CARD_NUMBER_IN_TEXT.findall(str(value))
    return found
