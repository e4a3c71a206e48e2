"""The owner's commands on a basket file: bad lines are counted skips in the report, the rules
carry their measures, and the evaluation compares every recommender with popularity."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from mercato.cli import app
from mercato.db import Database
from mercato.recommendations.store import current_version
from mercato.settings import Settings
from tests.recommendations.conftest import make_shop, sell, sell_history

runner = CliRunner()


def _basket_file(tmp_path: Path) -> Path:
    lines = [b"bread,butter", b"bread,butter,jam", b"bread,jam", b"butter", b"bread"] * 6
    lines += [b"", b"milk,milk,eggs", b"caf\xe9,tea"]
    path = tmp_path / "baskets.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_rules_from_a_basket_file(tmp_path: Path) -> None:
    path = _basket_file(tmp_path)
    result = runner.invoke(
        app,
        [
            "recommendations",
            "rules",
            "--baskets",
            str(path),
            "--min-support",
            "0.3",
            "--min-confidence",
            "0.6",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "31 baskets read" in result.output
    assert "1 duplicate item" in result.output and "1 empty line" in result.output
    assert "1 not utf8" in result.output
    assert "{jam} → {bread}" in result.output  # confidence 1.0
    assert "{bread} → {butter}" not in result.output  # confidence 0.5


def test_evaluate_a_basket_file(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["recommendations", "evaluate", "--baskets", str(_basket_file(tmp_path))]
    )
    assert result.exit_code == 0, result.output
    for name in ("popular", "bought_together", "itemknn", "rp3beta", "ease", "hit-rate@10"):
        assert name in result.output


async def test_build_and_evaluate_the_shops_own_orders(settings: Settings, db: Database) -> None:
    shop = await make_shop(db)
    await sell_history(db, shop)
    for i in range(3):  # customers who come back for the teapot after the kettle
        await sell(db, shop, f"back{i}", "kettle")
        await sell(db, shop, f"back{i}", "teapot")
    built = await asyncio.to_thread(
        runner.invoke, app, ["recommendations", "build", "--database", settings.database_url]
    )
    assert built.exit_code == 0, built.output
    assert "Built version 1 from 18 orders" in built.output
    async with db.transaction() as uow:
        assert await current_version(uow) == 1
    measured = await asyncio.to_thread(
        runner.invoke, app, ["recommendations", "evaluate", "--database", settings.database_url]
    )
    assert measured.exit_code == 0, measured.output
    assert "(3 cases)" in measured.output
