"""The shopper's destination: the chosen country, else the shop's default; the shop serves the
countries some warehouse ships to and some shipping zone covers."""

from __future__ import annotations

import pytest

from mercato.checkout import service as checkout
from mercato.db import Database
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.problems import Problem


async def _shop(db: Database) -> None:
    async with db.transaction() as uow:
        await inventory.create_warehouse(uow, code="BER", name="Berlin", countries=["DE", "AT"])
        await inventory.create_warehouse(uow, code="LYO", name="Lyon", countries=["FR"])
        await checkout.create_zone(uow, name="Europe", countries=["DE", "FR", "GB"])


async def test_the_shop_serves_where_a_warehouse_ships_and_a_zone_covers(db: Database) -> None:
    async with db.transaction() as uow:
        assert await identity.served_countries(uow) == ()
    await _shop(db)
    async with db.transaction() as uow:
        assert await identity.served_countries(uow) == ("DE", "FR")


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [(None, ("DE", "shop")), ("fr", ("FR", "chosen")), (" FR ", ("FR", "chosen"))],
)
async def test_a_chosen_country_wins_over_the_shops_default(
    db: Database, chosen: str | None, expected: tuple[str, str]
) -> None:
    await _shop(db)
    async with db.transaction() as uow:
        found = await identity.resolve_destination(
            uow, chosen=chosen, user_id=None, shop_default="DE"
        )
    assert (found.country, found.source) == expected


async def test_a_country_not_served_is_refused_naming_the_served_ones(db: Database) -> None:
    await _shop(db)
    async with db.transaction() as uow:
        with pytest.raises(Problem) as refused:
            await identity.resolve_destination(uow, chosen="GB", user_id=None, shop_default="DE")
    problem = refused.value
    assert (problem.status, problem.code) == (422, "country_not_served")
    assert "United Kingdom" in problem.detail and "DE, FR" in problem.detail
    assert problem.extra["served_countries"] == ["DE", "FR"]
    assert problem.extra["errors"][0]["field"] == "country"


@pytest.mark.parametrize(
    ("chosen", "code"),
    [
        ("D", "validation_error"),
        ("DEU", "validation_error"),
        ("1A", "validation_error"),
        ("É1", "validation_error"),
        ("ZZ", "unknown_country"),
        ("AA", "unknown_country"),
    ],
)
async def test_a_malformed_or_unknown_code_names_the_field(
    db: Database, chosen: str, code: str
) -> None:
    await _shop(db)
    async with db.transaction() as uow:
        with pytest.raises(Problem) as refused:
            await identity.resolve_destination(uow, chosen=chosen, user_id=None, shop_default="DE")
    assert (refused.value.status, refused.value.code) == (422, code)
    assert refused.value.extra["errors"][0]["field"] == "country"


async def test_a_stale_choice_falls_back_when_not_strict(db: Database) -> None:
    """A cookie naming a country the shop stopped serving is not an error on every page."""
    await _shop(db)
    async with db.transaction() as uow:
        for stale in ("GB", "nonsense"):
            found = await identity.resolve_destination(
                uow, chosen=stale, user_id=None, shop_default="DE", strict=False
            )
            assert (found.country, found.source) == ("DE", "shop")


async def test_a_default_the_shop_does_not_serve_gives_way_to_one_it_does(db: Database) -> None:
    await _shop(db)
    async with db.transaction() as uow:
        found = await identity.resolve_destination(
            uow, chosen=None, user_id=None, shop_default="GB"
        )
    assert found.country == "DE"
    assert identity.country_name("DE") == "Germany"
