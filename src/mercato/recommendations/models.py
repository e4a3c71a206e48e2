"""Tables of the recommendations module.

``recommendations_lists``: one row per (build version, kind, product): the product's top list
as JSON (``[[product id, score, confidence, support, lift], ...]``; the rule measures are null
for similarity and popularity). The shop-wide popular list has the product id ``""``.

``recommendations_state``: one row (``id = 1``) naming the version shoppers are served and
when it was built. A build writes its rows under a new version and then moves this pointer in
the same transaction, deleting the old rows: readers see the old lists or the new, never a mix.

``recommendations_wishlist``: what each customer saved, and whether they were told it is back
in stock. ``recommendations_recent_views``: the products each shopper looked at lately.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, JSONType, UTCDateTime, utcnow

KINDS: tuple[str, ...] = ("bought_together", "also_bought", "popular")


class RecommendationList(Base):
    __tablename__ = "recommendations_lists"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    items: Mapped[list[Any]] = mapped_column(JSONType)

    __table_args__ = (
        CheckConstraint("kind IN ('bought_together', 'also_bought', 'popular')", name="kind"),
    )


class RecommendationState(Base):
    __tablename__ = "recommendations_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The orders the build saw and which similarity model made "also bought" (for the CLI).
    orders_seen: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str] = mapped_column(String(24))

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class WishlistEntry(Base):
    """A product (or one variant of it) a customer saved: one row per (customer, product).

    ``sold_out_at`` is set when nothing of the saved item is available any more, and cleared by
    the one transaction that tells the customer it is back (``restock_notified_at``): a
    conditional update, so two deliveries of the same stock event cannot both tell them.
    """

    __tablename__ = "recommendations_wishlist"

    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    variant_id: Mapped[str | None] = mapped_column(String(40))
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sold_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    restock_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # A stock event finds the entries of its product.
    __table_args__ = (Index("ix_recommendations_wishlist_product_id", "product_id"),)


class RecentView(Base):
    """A product a shopper looked at: ``owner`` is a customer's id (``usr_...``) or a guest's
    key (``gst_...``, from a signed cookie); at most the last 50 per owner are kept."""

    __tablename__ = "recommendations_recent_views"

    owner: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    viewed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    # The worker forgets guests' lists nobody came back to.
    __table_args__ = (Index("ix_recommendations_recent_views_viewed_at", "viewed_at"),)
