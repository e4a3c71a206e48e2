"""Reading reviews: a product's published reviews in keyset pages (most helpful, newest,
highest, lowest; one star count only), the staff's moderation queue, and the product page's
review section (the figures, a page, the viewer's own review and whether they may write one).

Cursors are signed and name the listing they belong to, so a cursor of one sort or product
cannot be replayed against another (400 ``invalid_cursor``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork
from mercato.problems import Problem, not_found, validation_problem
from mercato.reviews.common import (
    MAX_PAGE,
    REVIEWS,
    ReviewInfo,
    auto_approve_star_only,
    received,
    review_info,
)
from mercato.reviews.models import STATES
from mercato.reviews.ratings import RatingSummary, rating
from mercato.reviews.writing import own_review_of

Sort = Literal["helpful", "newest", "highest", "lowest"]
SORTS: tuple[str, ...] = get_args(Sort)
_SALT = "mercato.reviews.cursor"


@dataclass(frozen=True, slots=True)
class ReviewQuery:
    sort: Sort = "helpful"
    stars: int | None = None
    limit: int = 10
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ReviewPage:
    items: list[ReviewInfo]
    next_cursor: str | None


def invalid_cursor() -> Problem:
    return Problem(400, "invalid_cursor", "The cursor is not valid for this listing")


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=_SALT)


def _decode(secret_key: str, token: str, scope: str) -> tuple[int, str]:
    try:
        data = _serializer(secret_key).loads(token)
    except BadSignature as exc:
        raise invalid_cursor() from exc
    if (
        not isinstance(data, dict)
        or data.get("s") != scope
        or not isinstance(data.get("k"), int)
        or not isinstance(data.get("i"), str)
    ):
        raise invalid_cursor()
    return int(data["k"]), str(data["i"])


def _encode(secret_key: str, scope: str, key: int, review_id: str) -> str:
    return str(_serializer(secret_key).dumps({"s": scope, "k": key, "i": review_id}))


def _check_query(query: ReviewQuery) -> None:
    if query.sort not in SORTS:
        raise validation_problem("sort", f"must be one of {', '.join(SORTS)}")
    if query.stars is not None and not 1 <= query.stars <= 5:
        raise validation_problem("stars", "must be a whole number from 1 to 5")
    if not 1 <= query.limit <= MAX_PAGE:
        raise validation_problem("limit", f"must be from 1 to {MAX_PAGE}")


# The sort key of each listing (the id, time-ordered, breaks ties: newest first).
_KEYS: dict[str, tuple[Any, bool]] = {
    "helpful": (REVIEWS.c.helpful_count, True),
    "newest": (None, True),
    "highest": (REVIEWS.c.rating, True),
    "lowest": (REVIEWS.c.rating, False),
}


def _after(sort: str, key: int, last_id: str) -> ColumnElement[bool]:
    column, descending = _KEYS[sort]
    if column is None:
        return REVIEWS.c.id < last_id
    beyond = column < key if descending else column > key
    return or_(beyond, and_(column == key, REVIEWS.c.id < last_id))


async def _page(
    uow: UnitOfWork,
    query: Select[Any],
    sort: str,
    limit: int,
    cursor: str | None,
    scope: str,
    secret_key: str,
) -> ReviewPage:
    column, descending = _KEYS[sort]
    if cursor is not None:
        key, last_id = _decode(secret_key, cursor, scope)
        query = query.where(_after(sort, key, last_id))
    order = [] if column is None else [column.desc() if descending else column.asc()]
    rows = (await uow.execute(query.order_by(*order, REVIEWS.c.id.desc()).limit(limit + 1))).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        key = 0 if column is None else int(getattr(last, column.name))
        next_cursor = _encode(secret_key, scope, key, last.id)
    return ReviewPage([review_info(r) for r in rows], next_cursor)


async def product_reviews(
    uow: UnitOfWork, product_id: str, query: ReviewQuery, *, secret_key: str
) -> ReviewPage:
    """A product's published reviews, a page at a time (404 for a product shoppers cannot
    see)."""
    _check_query(query)
    if await catalog.get_product(uow, product_id) is None:
        raise not_found("Product", product_id)
    return await _published_page(uow, product_id, query, secret_key)


async def _published_page(
    uow: UnitOfWork, product_id: str, query: ReviewQuery, secret_key: str
) -> ReviewPage:
    r = REVIEWS.c
    statement = select(REVIEWS).where(r.product_id == product_id, r.state == "approved")
    if query.stars is not None:
        statement = statement.where(r.rating == query.stars)
    scope = f"p:{product_id}:{query.sort}:{query.stars or ''}"
    return await _page(uow, statement, query.sort, query.limit, query.cursor, scope, secret_key)


# -- the product page --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewSection:
    """The reviews part of a product page."""

    summary: RatingSummary
    page: ReviewPage
    query: ReviewQuery
    mine: ReviewInfo | None
    """The viewer's own review, in whatever state (shown to them only)."""
    can_write: bool
    """The viewer received the product and has not reviewed it yet."""


async def review_section(
    uow: UnitOfWork,
    product_id: str,
    query: ReviewQuery,
    *,
    viewer_id: str | None,
    secret_key: str,
) -> ReviewSection:
    _check_query(query)
    mine = await own_review_of(uow, viewer_id, product_id) if viewer_id else None
    can_write = (
        viewer_id is not None and mine is None and await received(uow, viewer_id, product_id)
    )
    return ReviewSection(
        summary=await rating(uow, product_id),
        page=await _published_page(uow, product_id, query, secret_key),
        query=query,
        mine=mine,
        can_write=can_write,
    )


# -- the moderation queue ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaffFilters:
    state: str | None = None
    stars: int | None = None
    flagged: bool | None = None
    product_id: str | None = None


async def staff_reviews(
    uow: UnitOfWork,
    filters: StaffFilters,
    *,
    cursor: str | None = None,
    limit: int = MAX_PAGE,
    secret_key: str,
) -> ReviewPage:
    """Reviews for staff, newest first, by state, stars, flag and product."""
    if filters.state is not None and filters.state not in STATES:
        raise validation_problem("state", f"must be one of {', '.join(STATES)}")
    _check_query(ReviewQuery(stars=filters.stars, limit=limit))
    r = REVIEWS.c
    statement = select(REVIEWS)
    if filters.state is not None:
        statement = statement.where(r.state == filters.state)
    if filters.stars is not None:
        statement = statement.where(r.rating == filters.stars)
    if filters.flagged is not None:
        statement = statement.where(r.flagged == filters.flagged)
    if filters.product_id is not None:
        statement = statement.where(r.product_id == filters.product_id)
    scope = (
        f"s:{filters.state or ''}:{filters.stars or ''}:{filters.flagged}:"
        f"{filters.product_id or ''}"
    )
    return await _page(uow, statement, "newest", limit, cursor, scope, secret_key)


async def count_by_state(uow: UnitOfWork) -> dict[str, int]:
    """How many reviews are in each state (the queue's length is ``pending``)."""
    rows = await uow.execute(select(REVIEWS.c.state, func.count()).group_by(REVIEWS.c.state))
    return {state: int(n) for state, n in rows}


@dataclass(frozen=True, slots=True)
class ModerationQueue:
    """The back office's review page: a page of reviews, how many are in each state, the
    titles of their products, and whether star-only reviews are published at once."""

    page: ReviewPage
    counts: dict[str, int]
    product_titles: dict[str, str]
    auto_approve_star_only: bool


async def moderation_queue(
    uow: UnitOfWork, filters: StaffFilters, *, cursor: str | None, limit: int, secret_key: str
) -> ModerationQueue:
    page = await staff_reviews(uow, filters, cursor=cursor, limit=limit, secret_key=secret_key)
    products = await catalog.get_products(uow, {r.product_id for r in page.items})
    return ModerationQueue(
        page=page,
        counts=await count_by_state(uow),
        product_titles={pid: view.title for pid, view in products.items()},
        auto_approve_star_only=await auto_approve_star_only(uow),
    )


@dataclass(frozen=True, slots=True)
class BuyerReview:
    """One published review as a seller's performance reads it: who, which product, how many
    stars, when."""

    user_id: str
    product_id: str
    rating: int
    created_at: datetime


async def reviews_by_buyers(
    uow: UnitOfWork, user_ids: set[str], product_ids: set[str]
) -> list[BuyerReview]:
    """The approved reviews written by ``user_ids`` of ``product_ids`` (one query)."""
    if not user_ids or not product_ids:
        return []
    rows = await uow.execute(
        select(REVIEWS.c.user_id, REVIEWS.c.product_id, REVIEWS.c.rating, REVIEWS.c.created_at)
        .where(
            REVIEWS.c.state == "approved",
            REVIEWS.c.user_id.in_(sorted(user_ids)),
            REVIEWS.c.product_id.in_(sorted(product_ids)),
        )
        .order_by(REVIEWS.c.created_at, REVIEWS.c.id)
    )
    return [BuyerReview(r.user_id, r.product_id, int(r.rating), r.created_at) for r in rows]
