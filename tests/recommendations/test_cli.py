"""The owner's commands on a basket file: bad lines are counted skips in the report, the rules
carry their measures, and the evaluation compares every recommender with popularity."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mercato.cli import app

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
