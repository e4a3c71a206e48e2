"""A customer's own review: written once they received the product, edited, deleted.

Every check comes before the first write, so a refused request writes nothing. A review
(re)written is judged by the abuse filter; it is published at once only when it is star-only,
unflagged and the shop auto-approves such reviews, and waits for staff otherwise. Whenever an
approved rating appears, changes or goes, the product's figures change in the same
transaction (:mod:`.ratings`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, select, update

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.identity.service import UserInfo
from mercato.ids import new_id
from mercato.problems import not_found
from mercato.reviews.abuse import AbusePolicy, Candidate, flags_for, text_hash
from mercato.reviews.common import (
    MAX_BODY,
    MAX_TITLE,
    REVIEWS,
    ReviewInfo,
    auto_approve_star_only,
    check_rating,
    clean_text,
    display_name,
    insert,
    purchase_not_verified,
    received,
    review_exists,
    review_info,
    review_not_found,
)
from mercato.reviews.ratings import apply_change


class Unset(enum.Enum):
    UNSET = "unset"


UNSET = Unset.UNSET
"""A field a change leaves as it is (``None`` clears a title or text)."""


@dataclass(frozen=True, slots=True)
class ReviewDraft:
    rating: int
    title: str | None = None
    body: str | None = None


@dataclass(frozen=True, slots=True)
class ReviewChanges:
    rating: int | Unset = UNSET
    title: str | Unset | None = UNSET
    body: str | Unset | None = UNSET


def _text(value: str | Unset | None, field: str, limit: int) -> str | None:
    return clean_text(value, field, limit) if isinstance(value, str) else None


async def get_review(uow: UnitOfWork, review_id: str) -> ReviewInfo | None:
    row = (await uow.execute(select(REVIEWS).where(REVIEWS.c.id == review_id))).first()
    return review_info(row) if row is not None else None


async def own_review_of(uow: UnitOfWork, user_id: str, product_id: str) -> ReviewInfo | None:
    """The customer's review of this product, in whatever state."""
    row = (
        await uow.execute(
            select(REVIEWS).where(REVIEWS.c.product_id == product_id, REVIEWS.c.user_id == user_id)
        )
    ).first()
    return review_info(row) if row is not None else None


async def _locked_own(uow: UnitOfWork, user_id: str, review_id: str) -> Row[Any]:
    """The customer's review, locked until the commit; someone else's is "not found"."""
    row = (
        await uow.execute(
            select(REVIEWS)
            .where(REVIEWS.c.id == review_id, REVIEWS.c.user_id == user_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise review_not_found(review_id)
    return row


async def _state_for(uow: UnitOfWork, flags: list[str], title: str | None, body: str | None) -> str:
    if not flags and title is None and body is None and await auto_approve_star_only(uow):
        return "approved"
    return "pending"


async def can_review(uow: UnitOfWork, user_id: str, product_id: str) -> bool:
    """Whether the customer may write a review of this product now: received, not reviewed."""
    if await own_review_of(uow, user_id, product_id) is not None:
        return False
    return await received(uow, user_id, product_id)


async def create_review(
    uow: UnitOfWork,
    author: UserInfo,
    product_id: str,
    draft: ReviewDraft,
    *,
    ip: str | None,
    policy: AbusePolicy,
    now: datetime | None = None,
) -> ReviewInfo:
    """The customer's review of a product they received: 404 for a product shoppers cannot
    see, 409 ``review_exists`` for a second one, 403 ``purchase_not_verified`` before the
    product was delivered to them."""
    rating = check_rating(draft.rating)
    title = clean_text(draft.title, "title", MAX_TITLE)
    body = clean_text(draft.body, "body", MAX_BODY)
    if await catalog.get_product(uow, product_id) is None:
        raise not_found("Product", product_id)
    if await own_review_of(uow, author.id, product_id) is not None:
        raise review_exists()
    if not await received(uow, author.id, product_id):
        raise purchase_not_verified()
    now = now or utcnow()
    review_id = new_id("rev")
    body_hash = text_hash(body)
    flags = await flags_for(
        uow,
        Candidate(review_id, author.id, author.created_at, rating, title, body, body_hash, ip),
        policy,
        now,
    )
    state = await _state_for(uow, flags, title, body)
    statement = (
        insert(uow, REVIEWS)
        .values(
            id=review_id,
            product_id=product_id,
            user_id=author.id,
            author_name=display_name(author.name),
            rating=rating,
            title=title,
            body=body,
            body_hash=body_hash,
            verified_purchase=True,
            state=state,
            flags=flags,
            flagged=bool(flags),
            helpful_count=0,
            report_count=0,
            ip=ip,
            moderated_by="auto" if state == "approved" else None,
            moderated_at=now if state == "approved" else None,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[REVIEWS.c.product_id, REVIEWS.c.user_id])
    )
    if not await uow.changed(statement):  # the same customer, at the same moment
        raise review_exists()
    if state == "approved":
        await apply_change(uow, product_id, None, rating)
    found = await get_review(uow, review_id)
    assert found is not None
    return found


async def edit_review(
    uow: UnitOfWork,
    author: UserInfo,
    review_id: str,
    changes: ReviewChanges,
    *,
    ip: str | None,
    policy: AbusePolicy,
    now: datetime | None = None,
) -> ReviewInfo:
    """The customer's review rewritten (another customer's: 404). A change sends it through
    moderation again, as a new review would go; the product's figures follow."""
    rating = None if isinstance(changes.rating, Unset) else check_rating(changes.rating)
    title = _text(changes.title, "title", MAX_TITLE)
    body = _text(changes.body, "body", MAX_BODY)
    row = await _locked_own(uow, author.id, review_id)
    new_rating = rating if rating is not None else row.rating
    new_title = row.title if isinstance(changes.title, Unset) else title
    new_body = row.body if isinstance(changes.body, Unset) else body
    if (new_rating, new_title, new_body) == (row.rating, row.title, row.body):
        return review_info(row)
    now = now or utcnow()
    body_hash = text_hash(new_body)
    flags = await flags_for(
        uow,
        Candidate(
            review_id, author.id, author.created_at, new_rating, new_title, new_body, body_hash, ip
        ),
        policy,
        now,
    )
    state = await _state_for(uow, flags, new_title, new_body)
    await uow.execute(
        update(REVIEWS)
        .where(REVIEWS.c.id == review_id)
        .values(
            rating=new_rating,
            title=new_title,
            body=new_body,
            body_hash=body_hash,
            state=state,
            reject_reason=None,
            flags=flags,
            flagged=bool(flags),
            ip=ip,
            moderated_by="auto" if state == "approved" else None,
            moderated_at=now if state == "approved" else None,
            updated_at=now,
        )
    )
    before = row.rating if row.state == "approved" else None
    after = new_rating if state == "approved" else None
    await apply_change(uow, row.product_id, before, after)
    found = await get_review(uow, review_id)
    assert found is not None
    return found


async def delete_review(uow: UnitOfWork, user_id: str, review_id: str) -> None:
    """The customer's review gone, with its votes and reports (another customer's: 404)."""
    row = await _locked_own(uow, user_id, review_id)
    await uow.execute(delete(REVIEWS).where(REVIEWS.c.id == review_id))
    if row.state == "approved":
        await apply_change(uow, row.product_id, row.rating, None)
