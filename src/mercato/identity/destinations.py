"""Where a shopper's goods would go: the destination every availability, delivery date and
shipping answer is computed for.

The country comes from, in order: the shopper's explicit choice ("Deliver to" on the pages,
``?country=`` on the API), the signed-in customer's default address, the shop's default
country. An explicit choice the shop cannot serve is refused with the countries it does serve;
a default that the shop no longer serves falls through to the next one.

Which countries the shop serves is known above this module (warehouses ship to some countries,
shipping zones cover some): each reader in :data:`served_country_readers`, filled by
``modules.wire()``, names the countries one part of the shop can serve, and the shop serves
those every reader names.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Literal

from babel import Locale

from mercato.db import UnitOfWork
from mercato.problems import Problem, validation_problem

DestinationSource = Literal["chosen", "address", "shop"]
ServedCountryReader = Callable[[UnitOfWork], Awaitable[Collection[str]]]
DefaultCountryReader = Callable[[UnitOfWork, str], Awaitable[str | None]]

# Filled by modules.wire(): the inventory (countries some warehouse ships to) and the checkout
# (countries some shipping zone covers).
served_country_readers: list[ServedCountryReader] = []
# The signed-in customer's default address, when they keep one (user id → country).
default_country_readers: list[DefaultCountryReader] = []

_CODE = re.compile(r"[A-Za-z]{2}")
_ENGLISH = Locale("en")
# Territories CLDR names that are not countries one delivers to (groupings, reserved and
# pseudo codes); Kosovo's user-assigned XK stays, as everyone uses it.
_NOT_COUNTRIES = frozenset(
    {"AC", "CP", "CQ", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "XA", "XB", "ZZ"}
)


@dataclass(frozen=True, slots=True)
class Destination:
    country: str
    source: DestinationSource

    @property
    def country_name(self) -> str:
        return country_name(self.country)


def country_name(code: str) -> str:
    """The country's English name ("Germany"), or the code itself when it has none."""
    return str(_ENGLISH.territories.get(code, code))


def parse_country(value: str, field: str = "country") -> str:
    """An ISO 3166-1 alpha-2 code as the shop keeps it (upper case); 422 naming ``field`` when
    it is not one: ``validation_error`` when not two letters, ``unknown_country`` when two
    letters that name no country ("AA", "ZZ": a rule the API's pattern cannot state)."""
    code = value.strip().upper()
    if not _CODE.fullmatch(code):
        raise validation_problem(field, "must be an ISO 3166-1 alpha-2 country code such as 'DE'")
    if code in _NOT_COUNTRIES or code not in _ENGLISH.territories:
        raise validation_problem(
            field, f"{code!r} is not an ISO 3166-1 country code", code="unknown_country"
        )
    return code


async def served_countries(uow: UnitOfWork) -> tuple[str, ...] | None:
    """The countries the shop delivers to, sorted; ``None`` when nothing constrains them."""
    served: set[str] | None = None
    for reader in served_country_readers:
        names = set(await reader(uow))
        served = names if served is None else served & names
    return None if served is None else tuple(sorted(served))


def not_served(country: str, served: Collection[str], field: str = "country") -> Problem:
    listed = ", ".join(served) or "nowhere yet"
    return Problem(
        422,
        "country_not_served",
        f"We do not deliver to {country_name(country)} ({country}); we deliver to: {listed}",
        title="Country not served",
        errors=[
            {
                "field": field,
                "message": f"the shop does not deliver to {country}",
                "type": "country_not_served",
            }
        ],
        served_countries=list(served),
    )


async def check_served(uow: UnitOfWork, country: str, field: str = "country") -> str:
    """``country`` parsed, and refused (422 ``country_not_served``) unless the shop delivers
    there."""
    code = parse_country(country, field)
    served = await served_countries(uow)
    if served is not None and code not in served:
        raise not_served(code, served, field)
    return code


async def resolve_destination(
    uow: UnitOfWork,
    *,
    chosen: str | None,
    user_id: str | None,
    shop_default: str,
    strict: bool = True,
    field: str = "country",
) -> Destination:
    """The shopper's destination. ``chosen`` is refused when malformed or not served if
    ``strict`` (an API parameter), and ignored instead otherwise (a stale cookie)."""
    found, _ = await destination_and_choices(
        uow,
        chosen=chosen,
        user_id=user_id,
        shop_default=shop_default,
        strict=strict,
        field=field,
    )
    return found


async def destination_and_choices(
    uow: UnitOfWork,
    *,
    chosen: str | None,
    user_id: str | None,
    shop_default: str,
    strict: bool = True,
    field: str = "country",
) -> tuple[Destination, tuple[str, ...] | None]:
    """:func:`resolve_destination`, and the countries the shopper may choose among (those the
    shop serves; ``None`` when nothing constrains them), read once for both."""
    served = await served_countries(uow)

    def serves(code: str) -> bool:
        return served is None or code in served

    if chosen:
        try:
            code = parse_country(chosen, field)
        except Problem:
            if strict:
                raise
        else:
            if serves(code):
                return Destination(code, "chosen"), served
            if strict:
                raise not_served(code, served or (), field)
    if user_id is not None:
        for reader in default_country_readers:
            found = await reader(uow, user_id)
            if found and serves(found):
                return Destination(found, "address"), served
    if serves(shop_default) or not served:
        return Destination(shop_default, "shop"), served
    # The shop's default is not served (a misconfigured shop): the first country it serves.
    return Destination(served[0], "shop"), served
