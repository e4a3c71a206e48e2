"""This process's copy of the search index: its engine (one per data directory), the settings
that name the replica this host feeds, and the problem answered while no index is built."""

from __future__ import annotations

import weakref
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.search.engine import IndexStore, SearchEngine

EXTRAS_KEY = "search"


class SearchSettings(BaseSettings):
    """``MERCATO_SEARCH_*``: which replica this host's follower feeds, and writer memory."""

    model_config = SettingsConfigDict(env_prefix="MERCATO_SEARCH_", extra="ignore")

    replica: str = "default"  # "none" turns the worker's consumer off on this host
    writer_memory_mb: int = 64


@lru_cache(maxsize=1)
def search_settings() -> SearchSettings:
    return SearchSettings()


def consumer_name(replica: str | None = None) -> str | None:
    """The outbox consumer feeding this host's replica (each replica is its own consumer, so
    every host sees every event); None when this host keeps no replica."""
    name = (replica if replica is not None else search_settings().replica).strip()
    if name.lower() in {"", "none", "off"}:
        return None
    return "search-index" if name == "default" else f"search-index@{name}"


# --------------------------------------------------------------------------------------------
# The per-process engine

_ENGINES: weakref.WeakValueDictionary[Path, SearchEngine] = weakref.WeakValueDictionary()


def engine_for(runtime: Runtime) -> SearchEngine:
    """This process's engine for the runtime's data directory (one per directory, so a process
    never opens two writers on the same index)."""
    engine = runtime.extras.get(EXTRAS_KEY)
    if isinstance(engine, SearchEngine):
        return engine
    root = (Path(runtime.settings.data_dir) / "search").resolve()
    engine = _ENGINES.get(root)
    if engine is None:
        engine = SearchEngine(
            IndexStore(root), writer_memory=search_settings().writer_memory_mb * 1_000_000
        )
        _ENGINES[root] = engine
    runtime.extras[EXTRAS_KEY] = engine
    return engine


def engines() -> list[SearchEngine]:
    """The engines this process holds."""
    return list(_ENGINES.values())


def unavailable() -> Problem:
    return Problem(
        503,
        "search_unavailable",
        "The search index has not been built yet; run `mercato reindex`.",
        title="Search unavailable",
    )


async def index_readiness(runtime: Runtime) -> str | None:
    """The readiness probe's check: this process can open the search index (None), or why
    not. A shop whose index was never built answers searches with 503 until it is."""
    if engine_for(runtime).reader() is None:
        return "the search index is not built or cannot be opened: run `mercato reindex`"
    return None
