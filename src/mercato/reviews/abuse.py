"""The abuse filter: what makes a review wait for staff whatever the auto-approval says.

* ``link`` — a web address in the title or text (reviews are not advertising space);
* ``repeated_text`` — the same text (case and spacing aside) in another review;
* ``burst_customer`` / ``burst_ip`` — a burst of reviews from one customer, or one address;
* ``new_account_extreme`` — a new account giving 1 or 5 stars to many products.

A flag never refuses a review: it only sends it to the moderation queue, marked.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from mercato.db import UnitOfWork
from mercato.reviews.common import REVIEWS
from mercato.settings import Settings

FLAGS = ("link", "repeated_text", "burst_customer", "burst_ip", "new_account_extreme")
MIN_REPEATED = 20
"""Texts shorter than this ("Great!", "Works fine") are too common to count as copies."""

_LINK = re.compile(
    r"(?:https?://|www\.|\b[a-z0-9-]+\.(?:com|net|org|info|biz|io|co|ru|cn|xyz|top|shop|site|"
    r"online|click|link|de|uk|fr|eu)\b)",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class AbusePolicy:
    burst_count: int = 4
    """This many reviews (or more) from one customer or address within ``burst_window``."""
    burst_window: timedelta = timedelta(hours=1)
    new_account_age: timedelta = timedelta(days=7)
    extreme_count: int = 3
    """This many 1- or 5-star reviews (or more) from an account younger than the age above."""

    @classmethod
    def from_settings(cls, settings: Settings) -> AbusePolicy:
        return cls(
            burst_count=settings.review_burst_count,
            burst_window=timedelta(seconds=settings.review_burst_window_seconds),
            new_account_age=timedelta(days=settings.review_new_account_days),
            extreme_count=settings.review_extreme_count,
        )


def has_link(*texts: str | None) -> bool:
    return any(text and _LINK.search(text) for text in texts)


def text_hash(body: str | None) -> str | None:
    """The fingerprint of a text for the "repeated" check; None for short or no text."""
    if body is None:
        return None
    normalised = _SPACES.sub(" ", body.casefold()).strip()
    if len(normalised) < MIN_REPEATED:
        return None
    return hashlib.sha256(normalised.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A review about to be written (or rewritten), as the filter judges it."""

    review_id: str
    user_id: str
    account_created_at: datetime
    rating: int
    title: str | None
    body: str | None
    body_hash: str | None
    ip: str | None


async def _count(uow: UnitOfWork, *conditions: object) -> int:
    query = select(func.count()).select_from(REVIEWS).where(*conditions)  # type: ignore[arg-type]
    return int(await uow.scalar(query) or 0)


async def flags_for(
    uow: UnitOfWork, review: Candidate, policy: AbusePolicy, now: datetime
) -> list[str]:
    """The abuse flags of ``review`` (empty: nothing suspicious)."""
    r = REVIEWS.c
    others = r.id != review.review_id
    found: list[str] = []
    if has_link(review.title, review.body):
        found.append("link")
    if review.body_hash is not None and await _count(uow, r.body_hash == review.body_hash, others):
        found.append("repeated_text")
    since = now - policy.burst_window
    recent = await _count(uow, r.user_id == review.user_id, r.created_at >= since, others)
    if recent + 1 >= policy.burst_count:
        found.append("burst_customer")
    if review.ip:
        from_ip = await _count(uow, r.ip == review.ip, r.created_at >= since, others)
        if from_ip + 1 >= policy.burst_count:
            found.append("burst_ip")
    if review.rating in (1, 5) and review.account_created_at >= now - policy.new_account_age:
        extreme = await _count(uow, r.user_id == review.user_id, r.rating.in_((1, 5)), others)
        if extreme + 1 >= policy.extreme_count:
            found.append("new_account_extreme")
    return found
