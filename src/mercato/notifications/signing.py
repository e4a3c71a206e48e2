"""Webhook signatures: HMAC-SHA256 over ``"<unix time>.<body>"`` with the endpoint's secret.

The header reads ``Mercato-Signature: t=1700000000,v1=<hex>``. The timestamp is inside the
signed text, so a receiver that checks it against its own clock (:func:`verify_signature`, five
minutes either way by default) refuses a captured request replayed later; the event id in the
body (also in ``Mercato-Event-Id``) lets it drop a redelivery it has already processed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "Mercato-Signature"
EVENT_ID_HEADER = "Mercato-Event-Id"
EVENT_TYPE_HEADER = "Mercato-Event-Type"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def compute_signature(secret: str, timestamp: int, body: bytes | str) -> str:
    signed = str(timestamp).encode() + b"." + _as_bytes(body)
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes | str, timestamp: int) -> str:
    return f"t={timestamp},v1={compute_signature(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes | str,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs exactly ``body`` with ``secret`` and its timestamp is within
    ``tolerance_seconds`` of ``now`` (default: this machine's clock). Several ``v1=`` values are
    accepted (one matching is enough), so a sender may sign with an old and a new secret."""
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if not value.isdigit() or timestamp is not None:
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = compute_signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)
