"""Tables of the recommendations module.

``recommendations_parts``: a build's lists as stored, in parts of a few megabytes ordered by
``part``: once joined, a NumPy ``.npz`` file (no pickles) of the compact arrays each process
holds (see ``store.py``): the sorted product ids, and per kind the CSR ``indptr``, the
neighbours' indexes, the scores and the rule measures. A JSON row per product took minutes to
read back at a million products; the parts take about a second.

``recommendations_state``: one row (``id = 1``) naming the version shoppers are served and
when it was built. A build writes its parts under a new version and then moves this pointer in
the same transaction, deleting the old parts: readers see the old lists or the new, never a mix.

``recommendations_wishlist``: what each customer saved, and whether they were told it is back
in stock. ``recommendations_recent_views``: the products each shopper looked at lately.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, UTCDateTime, utcnow

KINDS: tuple[str, ...] = ("bought_together", "also_bought", "popular")


class RecommendationPart(Base):
    __tablename__ = "recommendations_parts"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


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
