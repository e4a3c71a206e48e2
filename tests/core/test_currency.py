"""The shop's currency is a setting: ``MERCATO_CURRENCY``, EUR unless told otherwise, refused
at start when it is not an ISO code; and the round figures chosen in it (the demo shop's prices,
the price facet's steps) suit currencies with and without decimals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from mercato.catalog.demo import ShopGenerator
from mercato.cli import app as cli
from mercato.money import exponent, format_minor, local_figure, round_unit
from mercato.settings import Settings


def test_the_default_currency_is_the_euro(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MERCATO_CURRENCY", raising=False)
    assert Settings().currency == "EUR"


def test_the_currency_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCATO_CURRENCY", "GBP")
    assert Settings().currency == "GBP"
    assert Settings(currency="JPY").currency == "JPY"


@pytest.mark.parametrize("bad", ["eur", "EURO", "EU", "E1R", "", " GBP", "GBP "])
def test_a_currency_that_is_not_three_capital_letters_is_refused(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="MERCATO_CURRENCY must be an ISO 4217 code"):
        Settings(currency=bad)
    monkeypatch.setenv("MERCATO_CURRENCY", bad)
    with pytest.raises(ValidationError, match="MERCATO_CURRENCY"):
        Settings()


async def test_the_command_line_refuses_to_start_with_a_bad_currency(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "sqlite":
        pytest.skip("the refusal comes before any database is opened")
    from mercato.settings import get_settings

    monkeypatch.setenv("MERCATO_CURRENCY", "euro")
    get_settings.cache_clear()
    database = tmp_path / "demo.db"
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["demo", "--no-serve", "--products", "5", "--database", str(database)],
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "Invalid configuration: MERCATO_CURRENCY" in " ".join(result.output.split())
    assert "'euro'" in result.output
    assert not database.exists()  # nothing was started, not even a migration


@pytest.mark.parametrize(
    ("currency", "unit", "figure"),
    [
        ("EUR", 100, "4.99"),
        ("GBP", 100, "4.99"),
        ("USD", 100, "4.99"),
        ("JPY", 100, "499"),
        ("KRW", 1000, "4990"),
        ("SEK", 1000, "49.90"),
        ("KWD", 1000, "4.990"),
    ],
)
def test_round_figures_suit_the_currency(currency: str, unit: int, figure: str) -> None:
    assert round_unit(currency) == unit
    assert format_minor(local_figure(499, currency), currency) == figure


@pytest.mark.parametrize("currency", ["GBP", "JPY", "KWD"])
def test_the_demo_shop_in_another_currency_is_the_same_shop_in_its_round_figures(
    currency: str,
) -> None:
    def rows(shop: ShopGenerator) -> list[tuple[str, str, int, int | None, str]]:
        return [
            (v["product_id"], v["sku"], v["price"], v["compare_at"], v["currency"])
            for batch in shop.batches(size=10)
            for v in batch.variants
        ]

    euros = rows(ShopGenerator(60, 9, currency="EUR"))
    local = rows(ShopGenerator(60, 9, currency=currency))
    assert [r[:2] for r in local] == [r[:2] for r in euros]
    assert {r[4] for r in local} == {currency}
    for (_, _, price, was, _), (_, _, euro_price, euro_was, _) in zip(local, euros, strict=True):
        assert price == local_figure(euro_price, currency)
        assert (was is None) == (euro_was is None)
        assert was is None or was > price
    # Sensible amounts: a few euros to a few thousand, as the like figures of the currency.
    lowest = min(r[2] for r in local) / 10 ** exponent(currency)
    highest = max(r[2] for r in local) / 10 ** exponent(currency)
    if currency == "JPY":
        assert lowest >= 100 and highest <= 1_000_000
    else:
        assert lowest >= 1 and highest <= 10_000
