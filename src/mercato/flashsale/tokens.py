"""Admission tokens: what an admitted buyer shows the checkout.

``fsa1.<sale id>.<customer id>.<expiry, Unix seconds>.<signature>``, the signature being
base64url(HMAC-SHA256(key, "<sale>\\n<customer>\\n<expiry>")) under a key derived from the
shop's secret for this one purpose. No row stores the token: the server recomputes it, compares
in constant time, refuses it after its expiry, and the checkout also requires the buyer's place
to be admitted with exactly that expiry (a token of an earlier admission opens nothing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from mercato.problems import Problem

_PURPOSE = b"mercato flash-sale admission v1"
PREFIX = "fsa1"
MAX_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Admission:
    sale_id: str
    customer_id: str
    expires_at: datetime


def _signature(secret_key: str, sale_id: str, customer_id: str, expiry: int) -> str:
    key = hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()
    message = f"{sale_id}\n{customer_id}\n{expiry}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_token(secret_key: str, sale_id: str, customer_id: str, expires_at: datetime) -> str:
    expiry = int(expires_at.timestamp())
    signature = _signature(secret_key, sale_id, customer_id, expiry)
    return f"{PREFIX}.{sale_id}.{customer_id}.{expiry}.{signature}"


def invalid_admission(detail: str = "The admission token is not valid") -> Problem:
    return Problem(403, "invalid_admission", detail, title="Not admitted")


def admission_expired() -> Problem:
    return Problem(
        403, "admission_expired", "The admission token has expired", title="Not admitted"
    )


def read_token(secret_key: str, token: str, now: datetime) -> Admission:
    """The admission a token stands for; 403 ``invalid_admission`` when it was not made by this
    shop (or was altered), 403 ``admission_expired`` past its expiry."""
    parts = token.split(".") if len(token) <= MAX_LENGTH else []
    if len(parts) != 5 or parts[0] != PREFIX or not parts[3].isdigit():
        raise invalid_admission()
    _, sale_id, customer_id, expiry_text, offered = parts
    expiry = int(expiry_text)
    expected = _signature(secret_key, sale_id, customer_id, expiry)
    if not hmac.compare_digest(expected.encode(), offered.encode()):
        raise invalid_admission()
    expires_at = datetime.fromtimestamp(expiry, UTC)
    if now >= expires_at:
        raise admission_expired()
    return Admission(sale_id, customer_id, expires_at)
