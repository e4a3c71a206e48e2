"""A customer's address book: saved delivery addresses, one of them the default.

The default address is where a signed-in customer's goods go when they chose no country (see
``destinations.py``), and what checkout offers first. Exactly one address is the default
while a customer keeps any: the first one saved becomes it, and deleting it hands the role to
the newest that remains. Changes to one customer's book queue behind a lock on the
customer's row (SQLite's writers queue anyway), and a unique index over the default rows keeps
"one default" true whatever runs against the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from mercato.db import UnitOfWork, utcnow
from mercato.identity.destinations import check_served
from mercato.identity.models import Address, User
from mercato.ids import new_id
from mercato.problems import Problem, not_found, validation_problem

MAX_ADDRESSES = 20
"""How many addresses one customer may keep."""


@dataclass(frozen=True, slots=True)
class AddressFields:
    """An address as checkout takes it (already checked for shape by the caller's schema)."""

    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True)
class AddressInfo:
    id: str
    name: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    region: str | None
    country: str
    is_default: bool
    created_at: datetime
    updated_at: datetime

    def fields(self) -> AddressFields:
        return AddressFields(
            name=self.name,
            line1=self.line1,
            city=self.city,
            postal_code=self.postal_code,
            country=self.country,
            line2=self.line2,
            region=self.region,
        )


_FIELD_NAMES = tuple(f.name for f in fields(AddressFields))
_REQUIRED = frozenset({"name", "line1", "city", "postal_code", "country"})


def _info(row: Address) -> AddressInfo:
    return AddressInfo(
        id=row.id,
        name=row.name,
        line1=row.line1,
        line2=row.line2,
        city=row.city,
        postal_code=row.postal_code,
        region=row.region,
        country=row.country,
        is_default=row.is_default,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def address_not_found(address_id: str) -> Problem:
    # Another customer's address answers exactly as one that does not exist.
    return not_found("Address", address_id)


def too_many_addresses() -> Problem:
    return Problem(
        409,
        "address_limit",
        f"An address book holds at most {MAX_ADDRESSES} addresses; delete one first",
        title="Address book full",
        max_addresses=MAX_ADDRESSES,
    )


async def _lock_customer(uow: UnitOfWork, user_id: str) -> None:
    """Changes to one customer's book queue here (PostgreSQL; SQLite's writers queue anyway),
    so that two "make default" calls cannot both see the other's address as not default."""
    found = await uow.scalar(select(User.id).where(User.id == user_id).with_for_update())
    if found is None:
        raise not_found("User", user_id)


async def _owned(uow: UnitOfWork, user_id: str, address_id: str) -> Address:
    row = await uow.scalar(
        select(Address).where(Address.id == address_id, Address.user_id == user_id)
    )
    if row is None:
        raise address_not_found(address_id)
    return row


async def _make_default(uow: UnitOfWork, user_id: str, address_id: str) -> None:
    # The old default first: the unique index allows one default row at any moment.
    await uow.execute(
        update(Address)
        .where(Address.user_id == user_id, Address.is_default, Address.id != address_id)
        .values(is_default=False)
        .execution_options(synchronize_session=False)
    )
    await uow.execute(
        update(Address)
        .where(Address.id == address_id)
        .values(is_default=True)
        .execution_options(synchronize_session=False)
    )


async def list_addresses(uow: UnitOfWork, user_id: str) -> list[AddressInfo]:
    """The customer's addresses, the default first, then the newest."""
    rows = await uow.scalars(
        select(Address)
        .where(Address.user_id == user_id)
        .order_by(Address.is_default.desc(), Address.created_at.desc(), Address.id.desc())
    )
    return [_info(r) for r in rows]


async def get_address(uow: UnitOfWork, user_id: str, address_id: str) -> AddressInfo | None:
    """One of the customer's addresses (None when it is not theirs, or gone)."""
    row = await uow.scalar(
        select(Address).where(Address.id == address_id, Address.user_id == user_id)
    )
    return _info(row) if row is not None else None


async def default_address(uow: UnitOfWork, user_id: str) -> AddressInfo | None:
    row = await uow.scalar(select(Address).where(Address.user_id == user_id, Address.is_default))
    return _info(row) if row is not None else None


async def default_address_country(uow: UnitOfWork, user_id: str) -> str | None:
    """The country of the customer's default address (a ``default_country_readers`` hook)."""
    return await uow.scalar(
        select(Address.country).where(Address.user_id == user_id, Address.is_default)
    )


async def add_address(
    uow: UnitOfWork, user_id: str, address: AddressFields, *, make_default: bool = False
) -> AddressInfo:
    """Save an address. Its country must be one the shop delivers to (422
    ``country_not_served`` naming them); the first address, or one saved with
    ``make_default``, becomes the default. 409 ``address_limit`` past MAX_ADDRESSES."""
    country = await check_served(uow, address.country)
    await _lock_customer(uow, user_id)
    count = await uow.scalar(
        select(func.count()).select_from(Address).where(Address.user_id == user_id)
    )
    if (count or 0) >= MAX_ADDRESSES:
        raise too_many_addresses()
    now = utcnow()
    row = Address(
        id=new_id("adr"),
        user_id=user_id,
        name=address.name,
        line1=address.line1,
        line2=address.line2 or None,
        city=address.city,
        postal_code=address.postal_code,
        region=address.region or None,
        country=country,
        is_default=False,
        created_at=now,
        updated_at=now,
    )
    uow.add(row)
    await uow.flush()
    if make_default or not count:
        await _make_default(uow, user_id, row.id)
        await uow.refresh(row)
    return _info(row)


async def update_address(
    uow: UnitOfWork,
    user_id: str,
    address_id: str,
    changes: Mapping[str, Any],
    *,
    make_default: bool | None = None,
) -> AddressInfo:
    """Change some of an address's fields (``line2`` and ``region`` may be cleared with
    ``None``), and make it the default with ``make_default=True``. A default address stops
    being one only when another becomes the default (422 on ``make_default=False``)."""
    unknown = sorted(set(changes) - set(_FIELD_NAMES))
    if unknown:
        raise validation_problem(unknown[0], "is not a field of an address")
    for name in _REQUIRED & set(changes):
        if changes[name] is None:
            raise validation_problem(name, "must not be null")
    values = dict(changes)
    if "country" in values:
        values["country"] = await check_served(uow, str(values["country"]))
    await _lock_customer(uow, user_id)
    row = await _owned(uow, user_id, address_id)
    if make_default is False and row.is_default:
        raise validation_problem(
            "is_default", "make another address the default instead of unsetting this one"
        )
    for name, value in values.items():
        setattr(row, name, value or None if name in ("line2", "region") else value)
    row.updated_at = utcnow()
    await uow.flush()
    if make_default:
        await _make_default(uow, user_id, row.id)
    await uow.refresh(row)
    return _info(row)


async def make_default_address(uow: UnitOfWork, user_id: str, address_id: str) -> AddressInfo:
    return await update_address(uow, user_id, address_id, {}, make_default=True)


async def delete_address(uow: UnitOfWork, user_id: str, address_id: str) -> None:
    """Forget an address; when it was the default, the newest that remains becomes it."""
    await _lock_customer(uow, user_id)
    row = await _owned(uow, user_id, address_id)
    was_default = row.is_default
    await uow.execute(
        delete(Address).where(Address.id == address_id).execution_options(synchronize_session=False)
    )
    uow.expunge(row)
    if not was_default:
        return
    newest = await uow.scalar(
        select(Address.id)
        .where(Address.user_id == user_id)
        .order_by(Address.created_at.desc(), Address.id.desc())
        .limit(1)
    )
    if newest is not None:
        await _make_default(uow, user_id, newest)
