"""Tables of the recommendations module.

``recommendations_lists``: one row per (build version, kind, product): the product's top list
as JSON (``[[product id, score, confidence, support, lift], ...]``; the rule measures are null
for similarity and popularity). The shop-wide popular list has the product id ``""``.

``recommendations_state``: one row (``id = 1``) naming the version shoppers are served and
when it was built. A build writes its rows under a new version and then moves this pointer in
the same transaction, deleting the old rows: readers see the old lists or the new, never a mix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Integer, String
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
