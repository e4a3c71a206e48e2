"""What every flash-sale rule shares: the tables, what callers see, the problems."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, bindparam, select

from mercato.db import Base, UnitOfWork
from mercato.flashsale.models import Entry, Sale, SaleVariant
from mercato.problems import Problem, not_found


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


SALES = _table(Sale)
SALE_VARIANTS = _table(SaleVariant)
ENTRIES = _table(Entry)

MAX_ALLOCATION = 100_000
MAX_LIMIT = 100
MAX_RATE = 1_000_000  # buyers per minute
HOLD_MARGIN_SECONDS = 24 * 3600
"""The sale's inventory hold outlives its end by this much: if no worker ended the sale, the
inventory's own expiry still gives the units back to regular stock."""


def hold_owner(sale_id: str) -> str:
    """The inventory owner of a sale's allocation."""
    return f"flashsale:{sale_id}"


@dataclass(frozen=True, slots=True)
class SaleVariantInfo:
    variant_id: str
    allocation: int
    sold: int


@dataclass(frozen=True, slots=True)
class SaleInfo:
    id: str
    title: str
    price: int
    currency: str
    allocation: int
    per_customer_limit: int
    admission_rate: int
    starts_at: datetime
    ends_at: datetime
    status: str
    sold: int
    held: int
    admissions: int
    next_position: int
    served_through: int
    created_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    variants: tuple[SaleVariantInfo, ...] = ()

    @property
    def remaining(self) -> int:
        """Units neither sold nor held: what the gate may still hand out."""
        return 0 if self.status == "ended" else self.allocation - self.sold - self.held

    def status_at(self, now: datetime) -> str:
        """The status as buyers see it at ``now`` (the stored one may lag the clock)."""
        if self.status == "ended" or now >= self.ends_at:
            return "ended"
        return "live" if now >= self.starts_at else "scheduled"


@dataclass(frozen=True, slots=True)
class EntryInfo:
    id: str
    sale_id: str
    customer_id: str
    state: str
    position: int | None
    units: int
    purchased: int
    joined_at: datetime
    last_seen_at: datetime
    admitted_at: datetime | None
    hold_expires_at: datetime | None
    finished_at: datetime | None
    expired_reason: str | None


def sale_info(row: Row[Any], variants: tuple[SaleVariantInfo, ...] = ()) -> SaleInfo:
    return SaleInfo(
        id=row.id,
        title=row.title,
        price=row.price,
        currency=row.currency,
        allocation=row.allocation,
        per_customer_limit=row.per_customer_limit,
        admission_rate=row.admission_rate,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        status=row.status,
        sold=row.sold,
        held=row.held,
        admissions=row.admissions,
        next_position=row.next_position,
        served_through=row.served_through,
        created_at=row.created_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        variants=variants,
    )


def entry_info(row: Row[Any]) -> EntryInfo:
    return EntryInfo(
        id=row.id,
        sale_id=row.sale_id,
        customer_id=row.customer_id,
        state=row.state,
        position=row.position,
        units=row.units,
        purchased=row.purchased,
        joined_at=row.joined_at,
        last_seen_at=row.last_seen_at,
        admitted_at=row.admitted_at,
        hold_expires_at=row.hold_expires_at,
        finished_at=row.finished_at,
        expired_reason=row.expired_reason,
    )


_SALE = select(SALES).where(SALES.c.id == bindparam("sale_id"))
_SALE_LOCKED = _SALE.with_for_update()
_VARIANTS = (
    select(SALE_VARIANTS)
    .where(SALE_VARIANTS.c.sale_id == bindparam("sale_id"))
    .order_by(SALE_VARIANTS.c.variant_id)
)
_ENTRY = select(ENTRIES).where(
    ENTRIES.c.sale_id == bindparam("sale_id"), ENTRIES.c.customer_id == bindparam("customer_id")
)


def no_such_sale(sale_id: str) -> Problem:
    return not_found("Flash sale", sale_id)


async def find_sale(
    uow: UnitOfWork, sale_id: str, *, lock: bool = False, variants: bool = False
) -> SaleInfo | None:
    """The sale; ``lock`` takes its row for the transaction (PostgreSQL; SQLite writers are
    serial anyway): admissions, reconciliation, purchases and the end queue on it, so the
    gate and the database change together."""
    row = (await uow.execute(_SALE_LOCKED if lock else _SALE, {"sale_id": sale_id})).first()
    if row is None:
        return None
    found: tuple[SaleVariantInfo, ...] = ()
    if variants:
        rows = await uow.execute(_VARIANTS, {"sale_id": sale_id})
        found = tuple(SaleVariantInfo(r.variant_id, r.allocation, r.sold) for r in rows)
    return sale_info(row, found)


async def get_sale(
    uow: UnitOfWork, sale_id: str, *, lock: bool = False, variants: bool = False
) -> SaleInfo:
    sale = await find_sale(uow, sale_id, lock=lock, variants=variants)
    if sale is None:
        raise no_such_sale(sale_id)
    return sale


async def find_entry(uow: UnitOfWork, sale_id: str, customer_id: str) -> EntryInfo | None:
    row = (await uow.execute(_ENTRY, {"sale_id": sale_id, "customer_id": customer_id})).first()
    return entry_info(row) if row is not None else None


def sale_ended(sale_id: str) -> Problem:
    return Problem(409, "sale_ended", f"Flash sale {sale_id!r} has ended", sale_id=sale_id)


def not_in_queue(sale_id: str) -> Problem:
    return Problem(
        404,
        "not_in_queue",
        f"You have no place in the waiting room of flash sale {sale_id!r}; join it first",
        title="Not found",
        sale_id=sale_id,
    )
