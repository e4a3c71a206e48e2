"""What the staff payments API answers with: amounts as decimal strings, never card numbers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from mercato.money import format_minor
from mercato.payments.service import IntentEventInfo, IntentInfo, SandboxChargeInfo


class IntentEventOut(BaseModel):
    id: str
    operation: str
    idempotency_key: str
    amount: str | None
    outcome: str
    status_from: str
    status_to: str | None
    code: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, event: IntentEventInfo, currency: str) -> IntentEventOut:
        return cls(
            id=event.id,
            operation=event.operation,
            idempotency_key=event.idempotency_key,
            amount=None if event.amount is None else format_minor(event.amount, currency),
            outcome=event.outcome,
            status_from=event.status_from,
            status_to=event.status_to,
            code=event.code,
            created_at=event.created_at,
            completed_at=event.completed_at,
        )


class IntentOut(BaseModel):
    id: str
    owner: str
    status: str
    currency: str
    amount: str
    amount_authorized: str
    amount_captured: str
    amount_refunded: str
    net_paid: str
    provider: str
    provider_charge_id: str | None
    card_brand: str | None
    card_last4: str | None
    failure_code: str | None
    created_at: datetime
    updated_at: datetime
    events: list[IntentEventOut]

    @classmethod
    def of(cls, intent: IntentInfo, events: list[IntentEventInfo]) -> IntentOut:
        cur = intent.currency
        return cls(
            id=intent.id,
            owner=intent.owner,
            status=intent.status,
            currency=cur,
            amount=format_minor(intent.amount, cur),
            amount_authorized=format_minor(intent.amount_authorized, cur),
            amount_captured=format_minor(intent.amount_captured, cur),
            amount_refunded=format_minor(intent.amount_refunded, cur),
            net_paid=format_minor(intent.net_paid, cur),
            provider=intent.provider,
            provider_charge_id=intent.provider_charge_id,
            card_brand=intent.card_brand,
            card_last4=intent.card_last4,
            failure_code=intent.failure_code,
            created_at=intent.created_at,
            updated_at=intent.updated_at,
            events=[IntentEventOut.of(e, cur) for e in events],
        )


class SandboxChargeOut(BaseModel):
    id: str
    token: str
    card_brand: str | None
    card_last4: str | None
    currency: str
    amount_authorized: str
    amount_captured: str
    amount_refunded: str
    status: str
    failure_code: str | None
    created_at: datetime

    @classmethod
    def of(cls, charge: SandboxChargeInfo) -> SandboxChargeOut:
        cur = charge.currency
        return cls(
            id=charge.id,
            token=charge.token,
            card_brand=charge.card_brand,
            card_last4=charge.card_last4,
            currency=cur,
            amount_authorized=format_minor(charge.amount_authorized, cur),
            amount_captured=format_minor(charge.amount_captured, cur),
            amount_refunded=format_minor(charge.amount_refunded, cur),
            status=charge.status,
            failure_code=charge.failure_code,
            created_at=charge.created_at,
        )


class SandboxLedgerOut(BaseModel):
    charges: list[SandboxChargeOut]
