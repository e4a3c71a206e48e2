"""Synonyms: a staff-edited list of interchangeable terms, applied at query time (no reindex
needed) and cached per process for a few seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.problems import Problem, not_found, validation_problem
from mercato.runtime import Runtime
from mercato.search import query as q
from mercato.search.models import Synonym
from mercato.search.replica import engine_for

log = logging.getLogger("mercato.search")

SYNONYM_TTL = 5.0


@dataclass(frozen=True, slots=True)
class SynonymInfo:
    id: str
    terms: list[str]
    created_at: datetime


@dataclass
class _SynonymCache:
    synonyms: q.Synonyms
    loaded: float


def normalise_term(term: str) -> str:
    return " ".join(term.lower().split())


async def list_synonyms(uow: UnitOfWork) -> list[SynonymInfo]:
    rows = (await uow.scalars(select(Synonym).order_by(Synonym.created_at, Synonym.id))).all()
    return [SynonymInfo(r.id, list(r.terms), r.created_at) for r in rows]


async def add_synonyms(uow: UnitOfWork, runtime: Runtime, terms: Sequence[str]) -> SynonymInfo:
    """A new group; each term needs at least one word, and the group two different terms.
    This process's searches use it as soon as it is committed (others within a few seconds)."""
    cleaned: list[str] = []
    for i, term in enumerate(terms):
        normal = normalise_term(term)
        if not q.words_of(normal):
            raise validation_problem(f"terms.{i}", "must contain a word")
        if normal not in cleaned:
            cleaned.append(normal)
    if len({tuple(w.stem for w in q.words_of(t)) for t in cleaned}) < 2:
        raise validation_problem("terms", "a group needs at least two different terms")
    for existing in await list_synonyms(uow):
        if set(existing.terms) == set(cleaned):
            raise Problem(
                409, "synonyms_exist", "This synonym group exists already", id=existing.id
            )
    row = Synonym(id=new_id("syn"), terms=cleaned, created_at=utcnow())
    uow.add(row)
    await uow.flush()
    _forget_after_commit(uow, runtime)
    return SynonymInfo(row.id, list(row.terms), row.created_at)


async def delete_synonyms(uow: UnitOfWork, runtime: Runtime, synonym_id: str) -> None:
    row = await uow.get(Synonym, synonym_id)
    if row is None:
        raise not_found("Synonym group", synonym_id)
    await uow.delete(row)
    await uow.flush()
    _forget_after_commit(uow, runtime)


def _forget_after_commit(uow: UnitOfWork, runtime: Runtime) -> None:
    # Not before the commit: a search in between would cache the old list again.
    uow.after_commit(lambda: forget_synonyms(runtime))


def forget_synonyms(runtime: Runtime) -> None:
    engine_for(runtime).synonyms = None


async def current_synonyms(runtime: Runtime) -> q.Synonyms:
    """The synonym groups, re-read from the database at most every few seconds per process (in
    a short read of its own: a search holds no transaction, and answers from the last list
    when the database cannot be reached)."""
    engine = engine_for(runtime)
    cache = engine.synonyms
    now = time.monotonic()
    if isinstance(cache, _SynonymCache) and now - cache.loaded < SYNONYM_TTL:
        return cache.synonyms
    try:
        async with runtime.db.transaction() as uow:
            groups = await list_synonyms(uow)
    except Exception:
        if isinstance(cache, _SynonymCache):
            log.warning("synonyms could not be re-read; using the last list", exc_info=True)
            return cache.synonyms
        raise
    synonyms = q.Synonyms.of(g.terms for g in groups)
    engine.synonyms = _SynonymCache(synonyms, now)
    return synonyms
