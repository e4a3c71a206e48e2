"""Payment intents through the service: every test token, idempotency, timeouts resolved by
lookup, partial captures and refunds, concurrency, and the money invariants."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

import pytest
from sqlalchemy import update

from mercato.db import Database, utcnow
from mercato.payments import operations, registry, service
from mercato.payments.events import recover_pending_operations
from mercato.payments.models import Intent, IntentEvent, SandboxCharge, SandboxOperation
from mercato.payments.sandbox import (
    Fault,
    SandboxProvider,
    list_charges,
    sandbox_charge_summary,
)
from mercato.problems import Problem
from mercato.runtime import Runtime
from tests.payments.conftest import (
    assert_money_invariants,
    authorized,
    captured,
    card_numbers_in_tables,
    charge_of,
    count,
    outbox_types,
)


async def _authorize(
    db: Database,
    provider: SandboxProvider,
    token: str,
    *,
    key: str = "auth-1",
    amount: int = 10_000,
) -> service.PaymentOutcome:
    return await service.authorize(
        db, provider, owner="chk_1", amount=amount, currency="EUR", token=token, idempotency_key=key
    )


async def _summary(db: Database) -> tuple[int, int, int, int]:
    async with db.transaction() as session:
        s = await sandbox_charge_summary(session)
    return s.charges, s.amount_authorized, s.amount_captured, s.amount_refunded


# -- authorize: the test tokens --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "brand", "last4"),
    [("tok_visa", "visa", "4242"), ("tok_mastercard", "mastercard", "4444")],
)
async def test_approving_tokens_authorize_the_intent(
    db: Database, provider: SandboxProvider, token: str, brand: str, last4: str
) -> None:
    outcome = await _authorize(db, provider, token)
    assert outcome.ok and not outcome.pending and outcome.code is None
    assert (outcome.status, outcome.amount_authorized, outcome.currency) == (
        "authorized",
        10_000,
        "EUR",
    )
    assert (outcome.card_brand, outcome.card_last4) == (brand, last4)
    assert await _summary(db) == (1, 10_000, 0, 0)
    assert await outbox_types(db, outcome.intent_id) == ["PaymentAuthorized"]
    async with db.transaction() as session:
        info = await service.get_intent(session, outcome.intent_id)
        [event] = await service.intent_events(session, outcome.intent_id)
    assert info is not None and info.provider == "sandbox" and info.owner == "chk_1"
    assert (event.operation, event.outcome, event.status_from, event.status_to) == (
        "authorize",
        "succeeded",
        "requires_payment",
        "authorized",
    )


@pytest.mark.parametrize(
    ("token", "code", "problem_code"),
    [
        ("tok_chargeDeclined", "payment_declined", "payment_declined"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds", "insufficient_funds"),
        ("tok_unknownCard", "invalid_token", "invalid_payment_token"),
    ],
)
async def test_refused_tokens_fail_the_intent_with_a_402_problem(
    db: Database, provider: SandboxProvider, token: str, code: str, problem_code: str
) -> None:
    outcome = await _authorize(db, provider, token)
    assert not outcome.ok and not outcome.pending
    assert (outcome.status, outcome.code, outcome.amount_authorized) == ("failed", code, 0)
    problem = service.payment_problem(outcome)
    assert (problem.status, problem.code) == (402, problem_code)
    assert problem.extra["intent_id"] == outcome.intent_id
    assert (await _summary(db))[0] == 0  # nothing charged
    assert await outbox_types(db, outcome.intent_id) == ["PaymentFailed"]
    # Retrying with the same key answers the same, without asking the card again.
    assert await _authorize(db, provider, token) == outcome
    assert await count(db, SandboxOperation) == 1


async def test_processing_error_is_retried_with_the_same_key_and_charges_once(
    db: Database, provider: SandboxProvider
) -> None:
    outcome = await _authorize(db, provider, "tok_processingError")
    assert outcome.ok and outcome.status == "authorized"
    assert await _summary(db) == (1, 10_000, 0, 0)
    async with db.transaction() as session:
        [op] = (await session.execute(SandboxOperation.__table__.select())).all()
    assert op.attempts == 2


async def test_processing_error_that_persists_fails_the_intent(
    db: Database, provider: SandboxProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations, "SEND_ATTEMPTS", 1)
    outcome = await _authorize(db, provider, "tok_processingError")
    assert (outcome.ok, outcome.status, outcome.code) == (False, "failed", "processing_error")
    assert service.payment_problem(outcome).code == "payment_processing_error"
    assert await _summary(db) == (0, 0, 0, 0)


async def test_timeout_after_charge_is_resolved_by_lookup_without_a_second_charge(
    db: Database, provider: SandboxProvider
) -> None:
    outcome = await _authorize(db, provider, "tok_timeoutAfterCharge")
    assert outcome.ok and outcome.status == "authorized" and outcome.card_last4 == "0341"
    assert await _summary(db) == (1, 10_000, 0, 0)
    again = await _authorize(db, provider, "tok_timeoutAfterCharge")
    assert again.intent_id == outcome.intent_id and again.ok
    assert await _summary(db) == (1, 10_000, 0, 0)
    assert await count(db, Intent) == 1
    assert await count(db, IntentEvent) == 1
    assert await outbox_types(db, outcome.intent_id) == ["PaymentAuthorized"]


async def test_timeout_after_charge_with_lookup_down_stays_pending_then_retry_resolves(
    db: Database, provider: SandboxProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations, "SEND_ATTEMPTS", 1)
    provider.inject_fault("lookup", "unavailable", times=2)
    outcome = await _authorize(db, provider, "tok_timeoutAfterCharge")
    # The send charged and lost the answer, and the lookups failed: the outcome is unknown.
    assert (outcome.ok, outcome.pending, outcome.status) == (False, True, "requires_payment")
    assert service.payment_problem(outcome).code == "payment_timeout"
    retried = await _authorize(db, provider, "tok_timeoutAfterCharge")
    assert retried.ok and retried.intent_id == outcome.intent_id
    assert await _summary(db) == (1, 10_000, 0, 0)


async def test_same_key_returns_the_same_intent_and_a_different_request_conflicts(
    db: Database, provider: SandboxProvider
) -> None:
    first = await _authorize(db, provider, "tok_visa")
    second = await _authorize(db, provider, "tok_visa")
    assert second == first
    for token, amount in (("tok_visa", 10_001), ("tok_mastercard", 10_000)):
        with pytest.raises(Problem) as exc:
            await _authorize(db, provider, token, amount=amount)
        assert (exc.value.status, exc.value.code) == (409, "idempotency_conflict")
    assert await _summary(db) == (1, 10_000, 0, 0)
    assert await count(db, Intent) == 1


async def test_concurrent_authorizations_with_one_key_charge_once(
    db: Database, provider: SandboxProvider
) -> None:
    outcomes = await asyncio.gather(*(_authorize(db, provider, "tok_visa") for _ in range(6)))
    assert {o.intent_id for o in outcomes} == {outcomes[0].intent_id}
    assert all(o.ok for o in outcomes)
    assert await _summary(db) == (1, 10_000, 0, 0)
    assert await outbox_types(db, outcomes[0].intent_id) == ["PaymentAuthorized"]


@pytest.mark.parametrize(
    "bad",
    ["4242424242424242", "4242 4242 4242 4242", "4000-0000-0000-0002", "tok_4242424242424242"],
)
async def test_card_numbers_are_refused_and_never_stored_or_logged(
    db: Database, provider: SandboxProvider, caplog: pytest.LogCaptureFixture, bad: str
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Problem) as exc:
        await _authorize(db, provider, bad)
    assert (exc.value.status, exc.value.code) == (422, "invalid_payment_token")
    assert exc.value.extra["errors"][0]["field"] == "payment_token"
    assert "4242" not in exc.value.detail and "0002" not in exc.value.detail
    assert await count(db, Intent) == 0
    assert await count(db, SandboxOperation) == 0
    await authorized(db, provider)  # a real payment afterwards: its rows hold no card number
    assert await card_numbers_in_tables(db) == []
    digits = "".join(c for c in bad if c.isdigit())
    assert digits not in caplog.text and bad not in caplog.text


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("amount", {"amount": 0}),
        ("amount", {"amount": -5}),
        ("currency", {"currency": "eur"}),
        ("idempotency_key", {"idempotency_key": ""}),
        ("idempotency_key", {"idempotency_key": "has space"}),
        ("owner", {"owner": ""}),
    ],
)
async def test_bad_input_is_refused_before_anything_is_written(
    db: Database, provider: SandboxProvider, field: str, kwargs: dict[str, object]
) -> None:
    args: dict[str, object] = {
        "owner": "chk_1",
        "amount": 100,
        "currency": "EUR",
        "token": "tok_visa",
        "idempotency_key": "k",
    } | kwargs
    with pytest.raises(Problem) as exc:
        await service.authorize(db, provider, **args)  # type: ignore[arg-type]
    assert exc.value.status == 422 and exc.value.extra["errors"][0]["field"] == field
    assert await count(db, Intent) == 0


# -- capture and void ------------------------------------------------------------------------------


async def test_partial_capture_then_the_rest(db: Database, provider: SandboxProvider) -> None:
    auth = await authorized(db, provider, 10_000)
    part = await service.capture(db, provider, auth.intent_id, 3_000, "cap-1")
    assert (part.ok, part.status, part.amount_captured) == (True, "captured", 3_000)
    rest = await service.capture(db, provider, auth.intent_id, None, "cap-2")
    assert (rest.status, rest.amount_captured) == ("captured", 10_000)
    # A retried capture answers the same and takes nothing more.
    assert (await service.capture(db, provider, auth.intent_id, 3_000, "cap-1")).ok
    assert await _summary(db) == (1, 10_000, 10_000, 0)
    await assert_money_invariants(db, auth.intent_id)
    assert await outbox_types(db, auth.intent_id) == [
        "PaymentAuthorized",
        "PaymentCaptured",
        "PaymentCaptured",
    ]


async def test_capture_more_than_authorized_is_refused(
    db: Database, provider: SandboxProvider
) -> None:
    auth = await authorized(db, provider, 10_000)
    await service.capture(db, provider, auth.intent_id, 6_000, "cap-1")
    with pytest.raises(Problem) as exc:
        await service.capture(db, provider, auth.intent_id, 4_001, "cap-2")
    assert (exc.value.status, exc.value.code) == (422, "capture_exceeds_authorized")
    assert exc.value.extra["capturable"] == 4_000
    with pytest.raises(Problem) as exc:
        await service.capture(db, provider, auth.intent_id, 5_000, "cap-1")  # reused key
    assert exc.value.code == "idempotency_conflict"
    assert await count(db, IntentEvent) == 2
    assert await _summary(db) == (1, 10_000, 6_000, 0)
    await assert_money_invariants(db, auth.intent_id)


async def test_void_releases_the_authorization_once(
    db: Database, provider: SandboxProvider
) -> None:
    auth = await authorized(db, provider)
    voided = await service.void(db, provider, auth.intent_id, "void-1")
    assert (voided.ok, voided.status) == (True, "voided")
    again = await service.void(db, provider, auth.intent_id, "void-2")  # a no-op success
    assert (again.ok, again.status) == (True, "voided")
    assert (await service.void(db, provider, auth.intent_id, "void-1")).ok  # a replay
    charge = await charge_of(db, auth.intent_id)
    assert charge.status == "voided"
    assert (await _summary(db))[0] == 0
    with pytest.raises(Problem) as exc:
        await service.capture(db, provider, auth.intent_id, None, "cap-1")
    assert (exc.value.status, exc.value.code) == (409, "payment_voided")
    assert await outbox_types(db, auth.intent_id) == ["PaymentAuthorized", "PaymentVoided"]


async def test_void_after_capture_is_refused(db: Database, provider: SandboxProvider) -> None:
    done = await captured(db, provider, 5_000)
    with pytest.raises(Problem) as exc:
        await service.void(db, provider, done.intent_id, "void-1")
    assert (exc.value.status, exc.value.code) == (409, "payment_already_captured")
    intent = await assert_money_invariants(db, done.intent_id)
    assert intent.status == "captured"


async def test_void_of_a_failed_authorization_is_a_no_op(
    db: Database, provider: SandboxProvider
) -> None:
    failed = await _authorize(db, provider, "tok_chargeDeclined")
    outcome = await service.void(db, provider, failed.intent_id, "void-1")
    assert (outcome.ok, outcome.status) == (True, "failed")
    with pytest.raises(Problem) as exc:
        await service.capture(db, provider, failed.intent_id, None, "cap-1")
    assert exc.value.code == "payment_not_authorized"


async def test_unknown_intent_is_not_found(db: Database, provider: SandboxProvider) -> None:
    for call in (
        service.capture(db, provider, "pi_nope", None, "k"),
        service.void(db, provider, "pi_nope", "k"),
        service.refund(db, provider, "pi_nope", 1, "k"),
        service.recover(db, provider, "pi_nope"),
    ):
        with pytest.raises(Problem) as exc:
            await call
        assert (exc.value.status, exc.value.code) == (404, "not_found")


# -- refunds ---------------------------------------------------------------------------------------


async def test_partial_then_full_refund_and_no_more(
    db: Database, provider: SandboxProvider
) -> None:
    done = await captured(db, provider, 10_000)
    part = await service.refund(db, provider, done.intent_id, 2_500, "ref-1")
    assert (part.ok, part.status, part.amount_refunded, part.net_paid) == (
        True,
        "partially_refunded",
        2_500,
        7_500,
    )
    await assert_money_invariants(db, done.intent_id)
    rest = await service.refund(db, provider, done.intent_id, 7_500, "ref-2")
    assert (rest.status, rest.amount_refunded, rest.net_paid) == ("refunded", 10_000, 0)
    events_before = await count(db, IntentEvent)
    with pytest.raises(Problem) as exc:
        await service.refund(db, provider, done.intent_id, 1, "ref-3")
    assert (exc.value.status, exc.value.code) == (422, "refund_exceeds_captured")
    assert exc.value.extra["refundable"] == 0
    assert await count(db, IntentEvent) == events_before  # nothing written
    assert await _summary(db) == (1, 10_000, 10_000, 10_000)
    await assert_money_invariants(db, done.intent_id)
    assert (await outbox_types(db, done.intent_id))[-2:] == ["PaymentRefunded", "PaymentRefunded"]


async def test_refund_more_than_captured_changes_nothing(
    db: Database, provider: SandboxProvider
) -> None:
    auth = await authorized(db, provider, 10_000)
    await service.capture(db, provider, auth.intent_id, 4_000, "cap-1")
    with pytest.raises(Problem) as exc:
        await service.refund(db, provider, auth.intent_id, 4_001, "ref-1")
    assert (exc.value.status, exc.value.code) == (422, "refund_exceeds_captured")
    assert exc.value.extra["refundable"] == 4_000
    intent = await assert_money_invariants(db, auth.intent_id)
    assert (intent.status, intent.amount_refunded) == ("captured", 0)
    assert await count(db, IntentEvent, IntentEvent.operation == "refund") == 0
    assert await _summary(db) == (1, 10_000, 4_000, 0)


async def test_refund_retried_with_the_same_key_refunds_once(
    db: Database, provider: SandboxProvider
) -> None:
    done = await captured(db, provider, 10_000)
    first = await service.refund(db, provider, done.intent_id, 3_000, "ref-1")
    second = await service.refund(db, provider, done.intent_id, 3_000, "ref-1")
    assert first == second and second.amount_refunded == 3_000
    with pytest.raises(Problem) as exc:
        await service.refund(db, provider, done.intent_id, 4_000, "ref-1")
    assert exc.value.code == "idempotency_conflict"
    assert await _summary(db) == (1, 10_000, 10_000, 3_000)


async def test_refund_timing_out_after_acting_is_found_by_lookup(
    db: Database, provider: SandboxProvider
) -> None:
    done = await captured(db, provider, 10_000)
    provider.inject_fault("refund", "timeout_after")
    outcome = await service.refund(db, provider, done.intent_id, 4_000, "ref-1")
    assert (outcome.ok, outcome.amount_refunded) == (True, 4_000)
    assert await _summary(db) == (1, 10_000, 10_000, 4_000)
    await assert_money_invariants(db, done.intent_id)


async def test_refund_timing_out_after_acting_then_retried_refunds_once(
    db: Database, provider: SandboxProvider
) -> None:
    done = await captured(db, provider, 10_000)
    # The refund is made, the answer is lost, and the provider stays unreachable meanwhile.
    provider.inject_fault("refund", "timeout_after")
    provider.inject_fault("refund", "unavailable", times=2)
    provider.inject_fault("lookup", "unavailable", times=2)
    pending = await service.refund(db, provider, done.intent_id, 10_000, "ref-1")
    assert (pending.ok, pending.pending, pending.code) == (False, True, "provider_timeout")
    assert pending.amount_refunded == 0  # not counted until the provider confirms it
    # A refund under another key cannot slip past the one in flight.
    with pytest.raises(Problem) as exc:
        await service.refund(db, provider, done.intent_id, 1, "ref-2")
    assert exc.value.code == "refund_exceeds_captured"
    retried = await service.refund(db, provider, done.intent_id, 10_000, "ref-1")
    assert (retried.ok, retried.status, retried.amount_refunded) == (True, "refunded", 10_000)
    assert await _summary(db) == (1, 10_000, 10_000, 10_000)
    assert (await outbox_types(db, done.intent_id)).count("PaymentRefunded") == 1
    await assert_money_invariants(db, done.intent_id)


async def test_concurrent_refunds_never_exceed_what_was_captured(
    db: Database, provider: SandboxProvider
) -> None:
    done = await captured(db, provider, 100)
    results = await asyncio.gather(
        *(service.refund(db, provider, done.intent_id, 10, f"ref-{i}") for i in range(20)),
        return_exceptions=True,
    )
    succeeded = [r for r in results if isinstance(r, service.PaymentOutcome)]
    refused = [r for r in results if isinstance(r, Problem)]
    assert len(succeeded) == 10 and all(r.ok for r in succeeded)
    assert len(refused) == 10
    assert {(r.status, r.code) for r in refused} == {(422, "refund_exceeds_captured")}
    intent = await assert_money_invariants(db, done.intent_id)
    assert (intent.status, intent.amount_refunded, intent.net_paid) == ("refunded", 100, 0)
    assert await _summary(db) == (1, 100, 100, 100)
    assert (await outbox_types(db, done.intent_id)).count("PaymentRefunded") == 10


async def test_concurrent_captures_never_exceed_the_authorization(
    db: Database, provider: SandboxProvider
) -> None:
    auth = await authorized(db, provider, 100)
    results = await asyncio.gather(
        *(service.capture(db, provider, auth.intent_id, 10, f"cap-{i}") for i in range(15)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, service.PaymentOutcome) and r.ok for r in results) == 10
    assert all(
        isinstance(r, service.PaymentOutcome) or (isinstance(r, Problem) and r.status == 422)
        for r in results
    )
    intent = await assert_money_invariants(db, auth.intent_id)
    assert intent.amount_captured == 100


# -- recovery --------------------------------------------------------------------------------------


async def test_recover_settles_an_authorization_whose_answer_was_lost(
    db: Database, provider: SandboxProvider
) -> None:
    provider.inject_fault("authorize", "timeout_after")
    provider.inject_fault("authorize", "unavailable", times=2)
    provider.inject_fault("lookup", "unavailable", times=2)
    pending = await _authorize(db, provider, "tok_visa")
    assert pending.pending and pending.status == "requires_payment"
    recovered = await service.recover(db, provider, pending.intent_id)
    assert (recovered.ok, recovered.pending, recovered.status) == (True, False, "authorized")
    assert await _summary(db) == (1, 10_000, 0, 0)
    again = await service.recover(db, provider, pending.intent_id)
    assert again.ok and again.status == "authorized"


async def test_recover_sends_an_operation_that_never_reached_the_provider(
    db: Database, provider: SandboxProvider
) -> None:
    done = await captured(db, provider, 10_000)
    provider.inject_fault("refund", "timeout_before", times=3)
    provider.inject_fault("lookup", "unavailable", times=6)
    pending = await service.refund(db, provider, done.intent_id, 1_000, "ref-1")
    assert pending.pending
    assert await _summary(db) == (1, 10_000, 10_000, 0)
    recovered = await service.recover(db, provider, done.intent_id)
    assert recovered.ok and recovered.amount_refunded == 1_000
    assert await _summary(db) == (1, 10_000, 10_000, 1_000)
    await assert_money_invariants(db, done.intent_id)


async def test_void_settles_an_authorization_in_flight_first(
    db: Database, provider: SandboxProvider
) -> None:
    provider.inject_fault("authorize", "timeout_after")
    provider.inject_fault("authorize", "unavailable", times=2)
    provider.inject_fault("lookup", "unavailable", times=2)
    pending = await _authorize(db, provider, "tok_visa")
    assert pending.pending
    voided = await service.void(db, provider, pending.intent_id, "void-1")
    assert (voided.ok, voided.status) == (True, "voided")
    assert (await charge_of(db, pending.intent_id)).status == "voided"
    assert (await _summary(db))[0] == 0


async def test_worker_job_recovers_stale_operations(
    runtime: Runtime, db: Database, provider: SandboxProvider
) -> None:
    done = await captured(db, provider, 10_000)
    provider.inject_fault("refund", "timeout_after")
    provider.inject_fault("refund", "unavailable", times=2)
    provider.inject_fault("lookup", "unavailable", times=2)
    assert (await service.refund(db, provider, done.intent_id, 500, "ref-1")).pending
    assert await recover_pending_operations(runtime) == 0  # not stale yet
    async with db.transaction() as session:  # age the pending operation
        await session.execute(
            update(IntentEvent)
            .where(IntentEvent.outcome == "pending")
            .values(created_at=utcnow() - timedelta(hours=1))
        )
    assert await recover_pending_operations(runtime) == 1
    intent = await assert_money_invariants(db, done.intent_id)
    assert intent.amount_refunded == 500


# -- the invariant under a random mix of operations and faults -------------------------------------


async def test_money_invariant_holds_at_every_step(db: Database, provider: SandboxProvider) -> None:
    rng = random.Random(20261123)
    auth = await authorized(db, provider, 50_000)
    faults: tuple[Fault | None, ...] = (
        "timeout_after",
        "timeout_before",
        "unavailable",
        None,
        None,
        None,
    )
    for step in range(30):
        operation = rng.choice(("capture", "refund", "refund"))
        amount = rng.randint(1, 8_000)
        fault = rng.choice(faults)
        if fault is not None:
            provider.inject_fault(operation, fault)
        try:
            if operation == "capture":
                await service.capture(db, provider, auth.intent_id, amount, f"s{step}")
            else:
                await service.refund(db, provider, auth.intent_id, amount, f"s{step}")
        except Problem as exc:
            assert exc.status == 422
        provider.clear_faults()
        await assert_money_invariants(db, auth.intent_id)
    async with db.transaction() as session:
        charges = await list_charges(session)
    assert len(charges) == 1


# -- reading, selection ----------------------------------------------------------------------------


async def test_find_intent_by_owner_prefers_the_live_one(
    db: Database, provider: SandboxProvider
) -> None:
    ok = await authorized(db, provider, key="a1", owner="chk_9")
    await authorized_or_failed(db, provider)
    async with db.transaction() as session:
        found = await service.find_intent_by_owner(session, "chk_9")
        assert await service.find_intent_by_owner(session, "chk_none") is None
    assert found is not None and found.id == ok.intent_id


async def authorized_or_failed(db: Database, provider: SandboxProvider) -> None:
    outcome = await service.authorize(
        db,
        provider,
        owner="chk_9",
        amount=100,
        currency="EUR",
        token="tok_chargeDeclined",
        idempotency_key="a2",
    )
    assert outcome.status == "failed"


async def test_provider_is_chosen_by_configuration(runtime: Runtime) -> None:
    first = service.get_provider(runtime)
    assert isinstance(first, SandboxProvider) and first.name == "sandbox"
    assert service.get_provider(runtime) is first
    runtime.settings.payment_provider = "acme-pay"
    with pytest.raises(RuntimeError, match="unknown payment provider"):
        service.get_provider(runtime)
    service.register_provider("acme-pay", lambda rt: SandboxProvider(rt.db))
    try:
        assert service.get_provider(runtime) is not first
    finally:
        registry._FACTORIES.pop("acme-pay")


async def test_sandbox_ledger_matches_paid_intents(db: Database, provider: SandboxProvider) -> None:
    for i in range(3):
        done = await captured(db, provider, 1_000 * (i + 1), key=f"auth-{i}")
        await service.refund(db, provider, done.intent_id, 100, f"ref-{i}")
    await _authorize(db, provider, "tok_chargeDeclined", key="declined")
    async with db.transaction() as session:
        summary = await sandbox_charge_summary(session, currency="EUR")
    assert (summary.charges, summary.failed) == (3, 1)
    assert summary.amount_captured - summary.amount_refunded == 6_000 - 300
    assert await count(db, SandboxCharge) == 4
