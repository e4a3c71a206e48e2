"""``mercato search reindex`` and ``mercato search status``."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner, Result

from mercato.cli import app as cli_app
from mercato.db import Database
from mercato.search.engine import IndexStore, SearchEngine
from mercato.settings import Settings, get_settings
from tests.factories import make_product


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli_app, args, catch_exceptions=False)


async def cli(*args: str) -> Result:
    # The commands run their own event loop (asyncio.run): keep them off the test's loop.
    return await asyncio.to_thread(_invoke, list(args))


async def test_reindex_and_status(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MERCATO_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        async with db.transaction() as session:
            for i in range(3):
                await make_product(session, title=f"Acme kettle {i}")
        result = await cli("search", "reindex", "--database", settings.database_url)
        assert result.exit_code == 0, result.output
        assert "Indexed 3 products" in result.output
        reader = SearchEngine(IndexStore(settings.data_dir / "search")).reader()
        assert reader is not None and reader.searcher().num_docs == 3
        result = await cli("search", "status", "--database", settings.database_url)
        assert result.exit_code == 0, result.output
        assert "'documents': 3" in result.output
    finally:
        get_settings.cache_clear()
