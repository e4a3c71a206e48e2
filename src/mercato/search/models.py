"""The search module's one table: staff-edited synonym groups, applied at query time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, JSONType, UTCDateTime, utcnow


class Synonym(Base):
    """A group of interchangeable terms ("tv", "television"): a query naming any of them also
    finds products that name another. Each term is one or more words, stored lower case."""

    __tablename__ = "search_synonyms"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    terms: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
