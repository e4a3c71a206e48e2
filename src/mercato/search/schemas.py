"""What crosses the search API's staff side (the public answers are plain dicts)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from mercato.text import PlainLine

Term = Annotated[str, PlainLine(min_length=1, max_length=60)]


class SynonymsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    terms: Annotated[list[Term], Field(min_length=2, max_length=20)]


class SynonymsOut(BaseModel):
    id: str
    terms: list[str]
    created_at: datetime


class SynonymList(BaseModel):
    items: list[SynonymsOut]
