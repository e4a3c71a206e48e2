"""The payment provider port: what Mercato needs from a card processor.

Every money-moving call carries an idempotency key. A processor that sees the same key again
answers with the stored result instead of acting again, and :meth:`PaymentProvider.lookup`
retrieves an operation by its key. Together they make a lost answer (a timeout after the
processor acted) recoverable without ever charging twice: ask, or resend with the same key.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Protocol

# Result codes a provider answers with (``ProviderResult.code``).
PAYMENT_DECLINED = "payment_declined"
INSUFFICIENT_FUNDS = "insufficient_funds"
PROCESSING_ERROR = "processing_error"  # transient: resend with the same idempotency key
INVALID_TOKEN = "invalid_token"  # noqa: S105 (a result code, not a secret)
INVALID_AMOUNT = "invalid_amount"
AMOUNT_TOO_LARGE = "amount_too_large"
AMOUNT_EXCEEDS_AUTHORIZED = "amount_exceeds_authorized"
AMOUNT_EXCEEDS_CAPTURED = "amount_exceeds_captured"
ALREADY_CAPTURED = "already_captured"
ALREADY_VOIDED = "already_voided"
CHARGE_NOT_FOUND = "charge_not_found"
CHARGE_FAILED = "charge_failed"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"

RETRYABLE_CODES = frozenset({PROCESSING_ERROR})

OPERATIONS = ("authorize", "capture", "void", "refund")

# A processor token (``tok_visa``); anything else is refused before it is stored or logged.
TOKEN_PATTERN = re.compile(r"^tok_[A-Za-z0-9_]{1,64}$")
# 13 to 19 digits, optionally grouped by single spaces or dashes: the shape of a card number.
_CARD_NUMBER = re.compile(r"(?:\d[ -]?){12,18}\d")


def looks_like_card_number(text: str) -> bool:
    return _CARD_NUMBER.search(text) is not None


def is_valid_token(token: str) -> bool:
    """A well-formed processor token that does not smuggle a card number."""
    return TOKEN_PATTERN.fullmatch(token) is not None and not looks_like_card_number(token)


class ProviderError(Exception):
    """The provider could not be asked or did not answer."""


class ProviderTimeout(ProviderError):
    """No answer in time: the operation may or may not have happened (look it up by key)."""


class ProviderUnavailable(ProviderError):
    """The provider refused the connection: the operation did not happen."""


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """One operation's answer. ``ok`` is False for declines and rule violations (see ``code``)."""

    ok: bool
    operation: str
    charge_id: str | None
    amount: int
    currency: str
    code: str | None = None
    message: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None

    @property
    def retryable(self) -> bool:
        return not self.ok and self.code in RETRYABLE_CODES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProviderResult:
        return cls(
            ok=bool(data["ok"]),
            operation=str(data["operation"]),
            charge_id=data.get("charge_id"),
            amount=int(data["amount"]),
            currency=str(data["currency"]),
            code=data.get("code"),
            message=data.get("message"),
            card_brand=data.get("card_brand"),
            card_last4=data.get("card_last4"),
        )


class PaymentProvider(Protocol):
    """A card processor. Amounts are int minor units; ``currency`` is ISO 4217."""

    name: str

    async def authorize(
        self, *, amount: int, currency: str, token: str, idempotency_key: str
    ) -> ProviderResult:
        """Hold ``amount`` on the card behind ``token``; the result's ``charge_id`` names it."""
        ...

    async def capture(self, *, charge_id: str, amount: int, idempotency_key: str) -> ProviderResult:
        """Take (part of) what is still held: at most authorized - captured."""
        ...

    async def void(self, *, charge_id: str, idempotency_key: str) -> ProviderResult:
        """Release an authorization of which nothing was captured."""
        ...

    async def refund(self, *, charge_id: str, amount: int, idempotency_key: str) -> ProviderResult:
        """Give back (part of) what was captured: at most captured - refunded."""
        ...

    async def lookup(self, idempotency_key: str) -> ProviderResult | None:
        """The stored result of the operation sent with this key; None if it never arrived."""
        ...
