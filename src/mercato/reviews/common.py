"""What the review rules share: the tables, a review as callers see it, the limits of what a
customer may write (plain text), the problems with their stable codes, and the hook through
which the module that knows deliveries answers "did this customer receive this product?"."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Row, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from mercato.db import UnitOfWork, utcnow
from mercato.problems import Problem, not_found, validation_problem
from mercato.reviews.models import Rating, Report, Review, Setting, Vote
from mercato.text import check_plain

REVIEWS = cast(Table, Review.__table__)
VOTES = cast(Table, Vote.__table__)
REPORTS = cast(Table, Report.__table__)
RATINGS = cast(Table, Rating.__table__)
SETTINGS = cast(Table, Setting.__table__)

MAX_TITLE = 120
MAX_BODY = 5000
MAX_REASON = 500
MAX_RESPONSE = 2000
MAX_NOTE = 500
MAX_AUTHOR = 60
MAX_ACTOR = 80
MAX_PAGE = 50

State = Literal["pending", "approved", "rejected"]
ReportReason = Literal["spam", "offensive", "off_topic"]


def insert(uow: UnitOfWork, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's ``INSERT`` (for its ``ON CONFLICT`` clauses)."""
    if uow.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# -- what a customer may write -----------------------------------------------------------------

SINGLE_LINE_FIELDS = frozenset({"title", "reason"})


def clean_text(value: str | None, field: str, limit: int) -> str | None:
    """Plain text as it will be stored: trimmed, line breaks as ``\n``, ``None`` when empty.
    Control and invisible formatting characters (line breaks and tabs allowed but in a title or
    a reason) or more than ``limit`` characters are a 422 naming ``field``. Markup is kept as
    typed: pages escape it, so ``<b>`` shows as ``<b>``."""
    if value is None:
        return None
    check_plain(field, value, multiline=field not in SINGLE_LINE_FIELDS)
    text = unicodedata.normalize("NFC", value).replace("\r\n", "\n").strip()
    if len(text) > limit:
        raise validation_problem(field, f"at most {limit} characters")
    return text or None


def check_rating(value: Any) -> int:
    """A whole number of stars, 1 to 5 (``4.5``, ``"4"`` and ``True`` are not ratings)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise validation_problem("rating", "must be a whole number from 1 to 5")
    if not 1 <= value <= 5:
        raise validation_problem("rating", "must be a whole number from 1 to 5")
    return value


def display_name(name: str) -> str:
    """The name shown with a review: the account's first name ("Ada" of "Ada Lovelace")."""
    first = (name or "").strip().split(" ")[0][:MAX_AUTHOR]
    return first or "Customer"


# -- problems ----------------------------------------------------------------------------------


def review_not_found(review_id: str) -> Problem:
    return not_found("Review", review_id)


def purchase_not_verified() -> Problem:
    return Problem(
        403,
        "purchase_not_verified",
        "Only customers who received this product can review it",
        title="Not a verified buyer",
    )


def review_exists() -> Problem:
    return Problem(
        409,
        "review_exists",
        "You have reviewed this product already; edit that review instead",
        title="Already reviewed",
    )


def own_review() -> Problem:
    return Problem(403, "own_review", "This is your own review", title="Own review")


def invalid_transition(state: str, wanted: str) -> Problem:
    return Problem(
        409,
        "invalid_transition",
        f"The review is {state} already"
        if state == wanted
        else f"A {state} review cannot be {wanted}",
        title="Invalid transition",
        state=state,
    )


# -- a review as callers see it ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewInfo:
    id: str
    product_id: str
    user_id: str
    author_name: str
    rating: int
    title: str | None
    body: str | None
    verified_purchase: bool
    state: str
    reject_reason: str | None
    flags: tuple[str, ...]
    flagged: bool
    helpful_count: int
    report_count: int
    response: str | None
    response_at: datetime | None
    moderated_by: str | None
    moderated_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def star_only(self) -> bool:
        return self.title is None and self.body is None


def review_info(row: Row[Any]) -> ReviewInfo:
    return ReviewInfo(
        id=row.id,
        product_id=row.product_id,
        user_id=row.user_id,
        author_name=row.author_name,
        rating=row.rating,
        title=row.title,
        body=row.body,
        verified_purchase=bool(row.verified_purchase),
        state=row.state,
        reject_reason=row.reject_reason,
        flags=tuple(row.flags or ()),
        flagged=bool(row.flagged),
        helpful_count=row.helpful_count,
        report_count=row.report_count,
        response=row.response,
        response_at=row.response_at,
        moderated_by=row.moderated_by,
        moderated_at=row.moderated_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# -- who received what ---------------------------------------------------------------------------

PurchaseCheck = Callable[[UnitOfWork, str, str], Awaitable[bool]]
purchase_checks: list[PurchaseCheck] = []
"""``check(uow, user_id, product_id)``: did this customer receive this product? Filled by
``modules.wire`` with the fulfilment module's answer (deliveries live above this module)."""


async def received(uow: UnitOfWork, user_id: str, product_id: str) -> bool:
    """Whether the customer had this product delivered: what makes a purchase "verified"."""
    for check in purchase_checks:
        if await check(uow, user_id, product_id):
            return True
    return False


# -- the shop's review settings ------------------------------------------------------------------

AUTO_APPROVE_STAR_ONLY = "auto_approve_star_only"
DEFAULT_AUTO_APPROVE_STAR_ONLY = True


async def auto_approve_star_only(uow: UnitOfWork) -> bool:
    """Whether a star-only review (no title, no text) from a verified buyer that the abuse
    filter does not flag is published at once, without waiting for staff."""
    value = await uow.scalar(
        select(SETTINGS.c.value).where(SETTINGS.c.key == AUTO_APPROVE_STAR_ONLY)
    )
    return DEFAULT_AUTO_APPROVE_STAR_ONLY if value is None else bool(value)


async def set_auto_approve_star_only(uow: UnitOfWork, value: bool) -> bool:
    statement = insert(uow, SETTINGS).values(
        key=AUTO_APPROVE_STAR_ONLY, value=value, updated_at=utcnow()
    )
    await uow.execute(
        statement.on_conflict_do_update(
            index_elements=[SETTINGS.c.key],
            set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
        )
    )
    return value
