"""The sandbox processor on its own: test tokens, idempotency by key, limits under concurrency."""

from __future__ import annotations

import asyncio

import pytest

from mercato.db import Database
from mercato.payments.models import SandboxCharge, SandboxOperation
from mercato.payments.provider import ProviderResult, ProviderTimeout, ProviderUnavailable
from mercato.payments.sandbox import SandboxProvider, list_charges, sandbox_charge_summary
from tests.payments.conftest import count


async def _auth(
    provider: SandboxProvider,
    token: str = "tok_visa",  # noqa: S107 (a sandbox test token)
    key: str = "k1",
    amount: int = 5000,
) -> ProviderResult:
    return await provider.authorize(amount=amount, currency="EUR", token=token, idempotency_key=key)


@pytest.mark.parametrize(
    ("token", "brand", "last4"),
    [
        ("tok_visa", "visa", "4242"),
        ("tok_mastercard", "mastercard", "4444"),
        ("tok_amex", "amex", "8431"),
    ],
)
async def test_approving_tokens_authorize(
    db: Database, provider: SandboxProvider, token: str, brand: str, last4: str
) -> None:
    result = await _auth(provider, token)
    assert result.ok and result.code is None
    assert (result.card_brand, result.card_last4, result.amount) == (brand, last4, 5000)
    assert result.charge_id is not None and result.charge_id.startswith("ch_")
    async with db.transaction() as session:
        summary = await sandbox_charge_summary(session)
        [charge] = await list_charges(session)
    assert summary.charges == 1 and summary.amount_authorized == 5000
    assert (charge.id, charge.status, charge.token) == (result.charge_id, "authorized", token)


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("tok_chargeDeclined", "payment_declined"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
async def test_declining_tokens_record_a_failed_charge_and_take_nothing(
    db: Database, provider: SandboxProvider, token: str, code: str
) -> None:
    result = await _auth(provider, token)
    assert not result.ok and result.code == code
    async with db.transaction() as session:
        summary = await sandbox_charge_summary(session)
    assert (summary.charges, summary.failed, summary.amount_authorized) == (0, 1, 0)
    # Declines are final: the same key answers the same, without a second attempt.
    again = await _auth(provider, token)
    assert again == result
    assert await count(db, SandboxCharge) == 1


async def test_processing_error_fails_once_then_succeeds_with_the_same_key(
    db: Database, provider: SandboxProvider
) -> None:
    first = await _auth(provider, "tok_processingError")
    assert not first.ok and first.code == "processing_error" and first.retryable
    assert await count(db, SandboxCharge) == 0  # nothing charged
    second = await _auth(provider, "tok_processingError")
    assert second.ok and second.charge_id is not None
    third = await _auth(provider, "tok_processingError")
    assert third == second
    assert await count(db, SandboxCharge) == 1
    async with db.transaction() as session:
        op = (await session.execute(SandboxOperation.__table__.select())).one()
    assert op.attempts == 2
    # A new key is a new request: it fails once again.
    other = await _auth(provider, "tok_processingError", key="k2")
    assert other.code == "processing_error"


async def test_timeout_after_charge_is_found_by_lookup_and_never_charged_twice(
    db: Database, provider: SandboxProvider
) -> None:
    with pytest.raises(ProviderTimeout):
        await _auth(provider, "tok_timeoutAfterCharge")
    found = await provider.lookup("k1")
    assert found is not None and found.ok and found.charge_id is not None
    retried = await _auth(provider, "tok_timeoutAfterCharge")
    assert retried == found
    async with db.transaction() as session:
        summary = await sandbox_charge_summary(session)
    assert summary.charges == 1 and summary.amount_authorized == 5000


async def test_unknown_token_is_refused_and_malformed_ones_are_not_even_recorded(
    db: Database, provider: SandboxProvider
) -> None:
    unknown = await _auth(provider, "tok_nobody")
    assert not unknown.ok and unknown.code == "invalid_token"
    assert await count(db, SandboxCharge) == 0
    for bad in ("4242424242424242", "tok_4242424242424242", "tok_visa; DROP", ""):
        result = await _auth(provider, bad, key=f"bad-{bad}")
        assert result.code == "invalid_token"
    assert await count(db, SandboxOperation) == 1  # only tok_nobody's answer


async def test_same_key_with_a_different_request_is_a_conflict(
    db: Database, provider: SandboxProvider
) -> None:
    first = await _auth(provider)
    again = await _auth(provider)
    assert again == first
    conflict = await _auth(provider, amount=6000)
    assert not conflict.ok and conflict.code == "idempotency_conflict"
    other_card = await _auth(provider, token="tok_mastercard")
    assert other_card.code == "idempotency_conflict"
    assert await count(db, SandboxCharge) == 1
    assert await provider.lookup("k1") == first
    assert await provider.lookup("never-sent") is None


async def test_capture_void_refund_limits(db: Database, provider: SandboxProvider) -> None:
    auth = await _auth(provider, amount=100)
    ch = auth.charge_id
    assert ch is not None
    part = await provider.capture(charge_id=ch, amount=40, idempotency_key="c1")
    assert part.ok and part.amount == 40
    too_much = await provider.capture(charge_id=ch, amount=61, idempotency_key="c2")
    assert too_much.code == "amount_exceeds_authorized"
    rest = await provider.capture(charge_id=ch, amount=60, idempotency_key="c3")
    assert rest.ok
    void = await provider.void(charge_id=ch, idempotency_key="v1")
    assert void.code == "already_captured"
    over = await provider.refund(charge_id=ch, amount=101, idempotency_key="r1")
    assert over.code == "amount_exceeds_captured"
    partial = await provider.refund(charge_id=ch, amount=30, idempotency_key="r2")
    assert partial.ok
    rest_back = await provider.refund(charge_id=ch, amount=70, idempotency_key="r3")
    assert rest_back.ok
    async with db.transaction() as session:
        [charge] = await list_charges(session)
    assert (charge.amount_captured, charge.amount_refunded, charge.status) == (100, 100, "refunded")
    missing = await provider.capture(charge_id="ch_nope", amount=1, idempotency_key="c4")
    assert missing.code == "charge_not_found"


async def test_void_releases_an_uncaptured_authorization(
    db: Database, provider: SandboxProvider
) -> None:
    auth = await _auth(provider, amount=100)
    assert auth.charge_id is not None
    voided = await provider.void(charge_id=auth.charge_id, idempotency_key="v1")
    assert voided.ok
    again = await provider.void(charge_id=auth.charge_id, idempotency_key="v2")
    assert again.code == "already_voided"
    capture = await provider.capture(charge_id=auth.charge_id, amount=1, idempotency_key="c1")
    assert capture.code == "already_voided"
    async with db.transaction() as session:
        summary = await sandbox_charge_summary(session)
    assert (summary.charges, summary.voided, summary.amount_captured) == (0, 1, 0)


async def test_amount_rules(provider: SandboxProvider) -> None:
    assert (await _auth(provider, amount=0, key="a")).code == "invalid_amount"
    assert (await _auth(provider, amount=100_000_000, key="b")).code == "amount_too_large"


async def test_concurrent_captures_never_exceed_the_authorization(
    db: Database, provider: SandboxProvider
) -> None:
    auth = await _auth(provider, amount=100)
    ch = auth.charge_id
    assert ch is not None
    results = await asyncio.gather(
        *(provider.capture(charge_id=ch, amount=10, idempotency_key=f"c{i}") for i in range(20))
    )
    assert sum(r.ok for r in results) == 10
    assert {r.code for r in results if not r.ok} == {"amount_exceeds_authorized"}
    async with db.transaction() as session:
        summary = await sandbox_charge_summary(session)
    assert summary.amount_captured == 100


async def test_concurrent_calls_with_one_key_act_once(
    db: Database, provider: SandboxProvider
) -> None:
    results = await asyncio.gather(*(_auth(provider, key="same") for _ in range(8)))
    assert len({r.charge_id for r in results}) == 1
    assert await count(db, SandboxCharge) == 1


async def test_injected_faults(db: Database, provider: SandboxProvider) -> None:
    provider.inject_fault("authorize", "unavailable")
    with pytest.raises(ProviderUnavailable):
        await _auth(provider)
    provider.inject_fault("authorize", "timeout_before")
    with pytest.raises(ProviderTimeout):
        await _auth(provider)
    assert await provider.lookup("k1") is None  # neither reached the processor
    provider.inject_fault("authorize", "timeout_after")
    with pytest.raises(ProviderTimeout):
        await _auth(provider)
    assert (found := await provider.lookup("k1")) is not None and found.ok
    provider.inject_fault("lookup", "unavailable")
    with pytest.raises(ProviderUnavailable):
        await provider.lookup("k1")
    assert await count(db, SandboxCharge) == 1
    with pytest.raises(ValueError, match="unknown operation"):
        provider.inject_fault("teleport", "unavailable")
