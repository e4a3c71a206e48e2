"""The payments module's public face: what other modules call.

Money moves in :mod:`mercato.payments.operations` (authorize, capture, void, refund, recover:
each calls the payment processor between short transactions of its own, so they take the
``Database`` and the provider rather than a unit of work), which records each operation once
through :mod:`mercato.payments.recording`; what an intent is now is read in
:mod:`mercato.payments.intents` (every function there takes the caller's unit of work).
"""

from __future__ import annotations

from mercato.payments.intents import (
    PROVIDER_TIMEOUT,
    PROVIDER_UNAVAILABLE,
    IntentEventInfo,
    IntentInfo,
    PaymentOutcome,
    find_intent_by_owner,
    get_intent,
    intent_events,
    list_intents,
    payment_problem,
    pending_intents,
)
from mercato.payments.operations import (
    BACKOFF_SECONDS,
    LOOKUP_ATTEMPTS,
    MAX_KEY_LENGTH,
    MAX_OWNER_LENGTH,
    SEND_ATTEMPTS,
    authorize,
    capture,
    recover,
    refund,
    void,
)
from mercato.payments.provider import (
    PaymentProvider,
    ProviderResult,
    ProviderTimeout,
    ProviderUnavailable,
)
from mercato.payments.registry import get_provider, register_provider
from mercato.payments.sandbox import (
    TEST_TOKENS,
    SandboxChargeInfo,
    SandboxProvider,
    SandboxSummary,
    list_charges,
    sandbox_charge_summary,
)

__all__ = [
    "BACKOFF_SECONDS",
    "LOOKUP_ATTEMPTS",
    "MAX_KEY_LENGTH",
    "MAX_OWNER_LENGTH",
    "PROVIDER_TIMEOUT",
    "PROVIDER_UNAVAILABLE",
    "SEND_ATTEMPTS",
    "TEST_TOKENS",
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
    "list_intents",
    "payment_problem",
    "pending_intents",
    "recover",
    "refund",
    "register_provider",
    "sandbox_charge_summary",
    "void",
]
