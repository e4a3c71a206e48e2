"""Tables of the recommendations module.

``recommendations_parts``: a build's lists as stored, in parts of a few megabytes ordered by
``part``: once joined, a NumPy ``.npz`` file (no pickles) of the compact arrays each process
holds (see ``store.py``): the sorted product ids, and per kind the CSR ``indptr``, the
neighbours' indexes, the scores and the rule measures. A JSON row per product took minutes to
read back at a million products; the parts take about a second.

``recommendations_state``: one row (``id = 1``) naming the version shoppers are served and
when it was built. A build writes its parts under a new version and then moves this pointer in
the same transaction, deleting the old parts: readers see the old lists or the new, never a mix.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, LargeBinary, String
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
