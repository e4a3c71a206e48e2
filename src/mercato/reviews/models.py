"""Tables of the reviews module.

``reviews_reviews``: one review per (product, customer), unique, with its moderation state.
``helpful_count`` and ``report_count`` are counters kept in the same transaction as the vote or
report row that each one counts; the unique (review, customer) pair of ``reviews_votes`` and
``reviews_reports`` is what makes a second vote or report impossible, however concurrent.

``reviews_ratings``: per product, the count, the sum and the 1-5 histogram of its *approved*
reviews, changed by deltas (``count = count + 1``) in the transaction that changes a review's
state or rating, so concurrent moderation of one product's reviews never loses an update.

``reviews_settings``: shop-wide key/value settings of the module (auto-approval).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, JSONType, UTCDateTime, utcnow

STATES: tuple[str, ...] = ("pending", "approved", "rejected")
REPORT_REASONS: tuple[str, ...] = ("spam", "offensive", "off_topic")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Review(Base):
    __tablename__ = "reviews_reviews"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[str] = mapped_column(String(40))
    # The name shown with the review, as it was when written (the account may change later).
    author_name: Mapped[str] = mapped_column(String(60))
    rating: Mapped[int] = mapped_column(Integer)
    title: Mapped[str | None] = mapped_column(String(120))
    body: Mapped[str | None] = mapped_column(Text)
    # sha256 of the normalised text: the abuse filter's "same text elsewhere" lookup.
    body_hash: Mapped[str | None] = mapped_column(String(64))
    verified_purchase: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(16))
    reject_reason: Mapped[str | None] = mapped_column(String(500))
    # What the abuse filter found (codes), and whether staff still have to look at it.
    flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    helpful_count: Mapped[int] = mapped_column(Integer, default=0)
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    response: Mapped[str | None] = mapped_column(Text)
    response_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ip: Mapped[str | None] = mapped_column(String(45))
    moderated_by: Mapped[str | None] = mapped_column(String(80))
    moderated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("product_id", "user_id"),
        CheckConstraint("rating >= 1 AND rating <= 5", name="rating_1_to_5"),
        CheckConstraint(_in("state", STATES), name="state"),
        CheckConstraint("helpful_count >= 0", name="helpful_non_negative"),
        CheckConstraint("report_count >= 0", name="reports_non_negative"),
        # The product page's sorts, each a keyset over approved reviews with the id last.
        Index("ix_reviews_reviews_product_id_state_id", "product_id", "state", "id"),
        Index(
            "ix_reviews_reviews_product_id_state_rating_id", "product_id", "state", "rating", "id"
        ),
        Index(
            "ix_reviews_reviews_product_id_state_helpful_count_id",
            "product_id",
            "state",
            "helpful_count",
            "id",
        ),
        # The moderation queue, and the abuse filter's look-ups.
        Index("ix_reviews_reviews_state_id", "state", "id"),
        Index("ix_reviews_reviews_user_id_created_at", "user_id", "created_at"),
        Index("ix_reviews_reviews_ip_created_at", "ip", "created_at"),
        Index("ix_reviews_reviews_body_hash", "body_hash"),
    )


class Vote(Base):
    """One customer found one review helpful (at most once: the primary key)."""

    __tablename__ = "reviews_votes"

    review_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("reviews_reviews.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Report(Base):
    """One customer reported one review (at most once), with a reason."""

    __tablename__ = "reviews_reports"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    review_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("reviews_reviews.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("review_id", "user_id"),
        CheckConstraint(_in("reason", REPORT_REASONS), name="reason"),
    )


class Rating(Base):
    """A product's approved reviews in figures."""

    __tablename__ = "reviews_ratings"

    product_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    stars_1: Mapped[int] = mapped_column(Integer, default=0)
    stars_2: Mapped[int] = mapped_column(Integer, default=0)
    stars_3: Mapped[int] = mapped_column(Integer, default=0)
    stars_4: Mapped[int] = mapped_column(Integer, default=0)
    stars_5: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(
            "count >= 0 AND total >= 0 AND stars_1 >= 0 AND stars_2 >= 0 AND stars_3 >= 0 "
            "AND stars_4 >= 0 AND stars_5 >= 0",
            name="non_negative",
        ),
        CheckConstraint(
            "count = stars_1 + stars_2 + stars_3 + stars_4 + stars_5", name="histogram_sums"
        ),
    )


class Setting(Base):
    """Shop-wide review settings as key/value rows (``auto_approve_star_only``)."""

    __tablename__ = "reviews_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
