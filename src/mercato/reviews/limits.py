"""How often a customer may write reviews and vote or report: one place for the API and the
pages (429 ``rate_limited`` with ``Retry-After``)."""

from __future__ import annotations

from typing import Literal

from mercato.ratelimit import Rate, TokenBucketLimiter, throttle
from mercato.settings import Settings

Kind = Literal["write", "vote"]

_DETAIL: dict[Kind, str] = {
    "write": "Too many reviews written; try again later",
    "vote": "Too many votes and reports; try again shortly",
}


def _rate(settings: Settings, kind: Kind) -> Rate:
    if kind == "write":
        per_hour = settings.review_write_rate_per_hour
        return Rate(per_hour, per_hour / 3600)
    return Rate.per_minute(settings.review_vote_rate_per_minute)


async def throttle_customer(
    limiter: TokenBucketLimiter, settings: Settings, kind: Kind, user_id: str
) -> None:
    """Spend one of the customer's ``kind`` allowance (writes and edits, or votes and
    reports), or answer 429."""
    await throttle(
        limiter, {f"reviews:{kind}:{user_id}": _rate(settings, kind)}, detail=_DETAIL[kind]
    )
