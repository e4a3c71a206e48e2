"""Inventory rules: receive, adjust, reserve, commit, release, expire, restock, and the ledger.

Every stock change is one short transaction on a Core connection, decided by a single
conditional statement per stock row (``UPDATE ... WHERE on_hand - reserved >= :qty``): the
database, not a value read earlier, says whether the units are there, so concurrent callers can
never oversell. The CHECK constraints on ``inventory_stock`` refuse a negative availability even
if a bug slipped past that.

Locking order, to keep PostgreSQL free of deadlocks: an operation touches reservation rows
first (commit, release, expire), then stock rows sorted by (variant_id, warehouse_id). On SQLite
every transaction starts with ``BEGIN IMMEDIATE``, so writers simply queue.

Each change writes movement rows (the ledger) and one ``StockChanged`` event per affected
variant into the outbox, all in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    Row,
    Select,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    text,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mercato import events
from mercato.catalog import service as catalog
from mercato.db import Base, Database, utcnow
from mercato.ids import new_id
from mercato.inventory.models import Movement, Reservation, Stock, Warehouse
from mercato.problems import Problem, validation_problem

MAX_QUANTITY = 100_000
"""The largest quantity one receive, reserve line or adjustment may move."""
DEFAULT_TTL_SECONDS = 600
DEFAULT_LOW_STOCK_THRESHOLD = 5
RESERVE_ATTEMPTS = 8
"""How often reserve re-plans after losing a race for a stock row before it gives up. Every lost
race means another reservation went through, so running out of attempts is rare."""
STOCK_CHANGED = "StockChanged"

_CHUNK = 500
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,15}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# Deadlock detected, serialization failure: PostgreSQL asks the client to retry.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
_OWNER_LOCK_SPACE = 0x1E7A  # first key of the two-key advisory lock taken per reservation owner

Executor = AsyncSession | AsyncConnection
T = TypeVar("T")


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


WAREHOUSES = _table(Warehouse)
STOCK = _table(Stock)
RESERVATIONS = _table(Reservation)
MOVEMENTS = _table(Movement)

# The hot paths run prebuilt statements: building a statement object costs about as much as
# sending it, so reserve, commit and release only bind values.
_INSERT_MOVEMENTS = insert(MOVEMENTS)
_INSERT_RESERVATIONS = insert(RESERVATIONS)
_LOCK_OWNER = text("SELECT pg_advisory_xact_lock(:space, :key)")
_AVAILABLE = (
    select(STOCK.c.variant_id, func.sum(STOCK.c.on_hand - STOCK.c.reserved))
    .join(WAREHOUSES, WAREHOUSES.c.id == STOCK.c.warehouse_id)
    .where(STOCK.c.variant_id.in_(bindparam("ids", expanding=True)), WAREHOUSES.c.active.is_(True))
    .group_by(STOCK.c.variant_id)
)
_CANDIDATES = (
    select(
        STOCK.c.variant_id,
        STOCK.c.warehouse_id,
        WAREHOUSES.c.code,
        WAREHOUSES.c.countries,
        (STOCK.c.on_hand - STOCK.c.reserved).label("available"),
    )
    .join(WAREHOUSES, WAREHOUSES.c.id == STOCK.c.warehouse_id)
    .where(STOCK.c.variant_id.in_(bindparam("ids", expanding=True)), WAREHOUSES.c.active.is_(True))
)
# The conditional UPDATE that decides a hold: it matches only while the units are free.
_TAKE = (
    update(STOCK)
    .where(
        STOCK.c.variant_id == bindparam("v"),
        STOCK.c.warehouse_id == bindparam("w"),
        STOCK.c.on_hand - STOCK.c.reserved >= bindparam("q"),
    )
    .values(
        reserved=STOCK.c.reserved + bindparam("q"),
        version=STOCK.c.version + 1,
        updated_at=bindparam("now"),
    )
)
_STOCK_ROW = and_(STOCK.c.variant_id == bindparam("v"), STOCK.c.warehouse_id == bindparam("w"))
_UNRESERVE = (
    update(STOCK)
    .where(_STOCK_ROW)
    .values(
        reserved=STOCK.c.reserved - bindparam("q"),
        version=STOCK.c.version + 1,
        updated_at=bindparam("now"),
    )
)
_SELL = (
    update(STOCK)
    .where(_STOCK_ROW)
    .values(
        on_hand=STOCK.c.on_hand - bindparam("q"),
        reserved=STOCK.c.reserved - bindparam("q"),
        version=STOCK.c.version + 1,
        updated_at=bindparam("now"),
    )
)
_FLIPPED = (
    RESERVATIONS.c.id,
    RESERVATIONS.c.owner,
    RESERVATIONS.c.variant_id,
    RESERVATIONS.c.warehouse_id,
    RESERVATIONS.c.quantity,
    RESERVATIONS.c.expires_at,
    RESERVATIONS.c.created_at,
)
# Moves an owner's active reservations out of ``active``; a second call finds nothing. The
# warehouse code comes back with each row (a scalar subquery in RETURNING, which PostgreSQL and
# SQLite both allow), so the caller's answer needs no second read.
_FINISH_OWNER = (
    update(RESERVATIONS)
    .where(RESERVATIONS.c.owner == bindparam("b_owner"), RESERVATIONS.c.state == "active")
    .values(state=bindparam("b_state"), updated_at=bindparam("b_now"))
    .returning(
        *_FLIPPED,
        select(WAREHOUSES.c.code)
        .where(WAREHOUSES.c.id == RESERVATIONS.c.warehouse_id)
        .scalar_subquery()
        .label("code"),
    )
)


# --------------------------------------------------------------------------------------------
# What callers see


@dataclass(frozen=True, slots=True)
class WarehouseInfo:
    id: str
    code: str
    name: str
    countries: tuple[str, ...]
    region: str | None
    active: bool

    def ships_to(self, country: str | None) -> bool:
        return country is None or country in self.countries


@dataclass(frozen=True, slots=True)
class StockLevel:
    variant_id: str
    warehouse_id: str
    warehouse_code: str
    on_hand: int
    reserved: int
    available: int
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    id: str
    owner: str
    variant_id: str
    warehouse_id: str
    warehouse_code: str
    quantity: int
    state: str
    expires_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerDifference:
    """A stock row whose numbers disagree with its ledger or its reservations.

    ``expected_on_hand`` = received + adjustments + restocks - sold (commits), from the ledger;
    ``expected_reserved`` = sum of the row's active reservations;
    ``ledger_reserved`` = reserves - releases - expiries - commits, from the ledger.
    """

    variant_id: str
    warehouse_id: str
    on_hand: int
    expected_on_hand: int
    reserved: int
    expected_reserved: int
    ledger_reserved: int

    @property
    def problems(self) -> list[str]:
        found = []
        if self.on_hand != self.expected_on_hand:
            found.append(f"on_hand {self.on_hand} but ledger says {self.expected_on_hand}")
        if self.reserved != self.expected_reserved:
            found.append(
                f"reserved {self.reserved} but active reservations hold {self.expected_reserved}"
            )
        if self.reserved != self.ledger_reserved:
            found.append(f"reserved {self.reserved} but ledger says {self.ledger_reserved}")
        return found


LEDGER_RULE = (
    "for every stock row: received + adjustments + restocks = on_hand + sold (commits), "
    "reserved = sum of active reservations = reserves - releases - expiries - commits"
)


# --------------------------------------------------------------------------------------------
# Input checks (bad input is answered before anything is written)


def check_quantity(field: str, quantity: int) -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise validation_problem(field, "must be a whole number")
    if quantity < 1:
        raise validation_problem(field, "must be at least 1")
    if quantity > MAX_QUANTITY:
        raise validation_problem(field, f"must be at most {MAX_QUANTITY}")


def normalize_country(country: str | None, field: str = "country") -> str | None:
    if country is None:
        return None
    code = country.strip().upper()
    if not _COUNTRY.match(code):
        raise validation_problem(field, "must be an ISO 3166-1 alpha-2 country code such as 'DE'")
    return code


def _check_owner(owner: str) -> None:
    if not owner or len(owner) > 80:
        raise validation_problem("owner", "must be 1 to 80 characters")


def _out_of_stock(short: Sequence[tuple[str, int, int]]) -> Problem:
    lines = [{"variant_id": v, "requested": r, "available": a} for v, r, a in short]
    extra: dict[str, Any] = {"lines": lines}
    if len(lines) == 1:
        extra |= {"variant_id": short[0][0], "available": short[0][2]}
    detail = "; ".join(f"{v}: {r} requested, {a} available" for v, r, a in short)
    return Problem(409, "out_of_stock", f"Not enough stock ({detail})", **extra)


# --------------------------------------------------------------------------------------------
# Small helpers


def _insert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which knows ``ON CONFLICT``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _movement(
    variant_id: str,
    warehouse_id: str,
    kind: str,
    quantity: int,
    now: datetime,
    *,
    reason: str | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    return {
        "id": new_id("mov"),
        "variant_id": variant_id,
        "warehouse_id": warehouse_id,
        "kind": kind,
        "quantity": quantity,
        "reason": reason,
        "reference": reference,
        "created_at": now,
    }


async def _write_movements(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(_INSERT_MOVEMENTS, list(rows))


async def _publish_stock_changed(conn: AsyncConnection, totals: Mapping[str, int]) -> None:
    """One ``StockChanged`` per variant. ``available`` is the figure this transaction saw; a
    consumer that needs the exact current figure re-reads :func:`availability`."""
    await events.publish_many(
        conn,
        (
            (STOCK_CHANGED, v, {"variant_id": v, "available": a, "in_stock": a > 0})
            for v, a in sorted(totals.items())
        ),
    )


async def _publish_after_change(conn: AsyncConnection, variant_ids: Iterable[str]) -> None:
    await _publish_stock_changed(conn, await availability(conn, set(variant_ids)))


def _chunks(values: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def is_retryable(exc: BaseException) -> bool:
    """Whether the database asked us to retry the whole transaction (deadlock, serialization)."""
    if not isinstance(exc, DBAPIError):
        return False
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in _RETRYABLE_SQLSTATES


async def in_transaction(
    db: Database, work: Callable[[AsyncConnection], Awaitable[T]], *, attempts: int = 3
) -> T:
    """Run ``work`` in its own transaction, again (bounded) if PostgreSQL reports a deadlock or
    serialization failure; every other error goes to the caller."""
    for attempt in range(1, attempts + 1):
        try:
            async with db.connect() as conn:
                return await work(conn)
        except DBAPIError as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# Variants (through the catalog's service) and warehouses


async def _catalog_variants(
    conn: AsyncConnection, ids: Collection[str]
) -> dict[str, catalog.VariantInfo]:
    return await catalog.get_variants(conn, ids)


async def _lookup(session: AsyncSession, key: str, by_id: bool) -> catalog.VariantInfo | None:
    if by_id:
        return (await catalog.get_variants(session, [key])).get(key)
    return await catalog.get_variant_by_sku(session, key)


async def resolve_variant(
    conn: AsyncConnection, sku_or_variant: str, field: str = "sku"
) -> catalog.VariantInfo:
    """The catalog variant with this SKU (or id); 422 ``unknown_variant`` naming ``field``."""
    # Ids look like "var_..." (a SKU might too): try the likelier reading first.
    by_id = sku_or_variant.startswith("var_")
    variant = await _lookup(conn, sku_or_variant, by_id)
    if variant is None:
        variant = await _lookup(conn, sku_or_variant, not by_id)
    if variant is None:
        raise validation_problem(
            field, f"no variant with SKU or id {sku_or_variant!r}", code="unknown_variant"
        )
    return variant


VariantRef = str | catalog.VariantInfo
"""A variant by SKU or id, or one the caller already looked up in the catalog."""


async def _variant(conn: AsyncConnection, ref: VariantRef) -> catalog.VariantInfo:
    if isinstance(ref, catalog.VariantInfo):
        return ref
    return await resolve_variant(conn, ref)


async def _check_reservable(conn: AsyncConnection, variant_ids: Collection[str]) -> None:
    found = await _catalog_variants(conn, variant_ids)
    unknown = sorted(set(variant_ids) - found.keys())
    if unknown:
        raise validation_problem(
            "lines", f"unknown variant(s): {', '.join(unknown)}", code="unknown_variant"
        )
    inactive = sorted(v for v, info in found.items() if not info.active)
    if inactive:
        raise Problem(
            409,
            "variant_unavailable",
            f"Not for sale (archived or inactive): {', '.join(inactive)}",
            variant_ids=inactive,
        )


def _warehouse_info(row: Row[Any]) -> WarehouseInfo:
    return WarehouseInfo(
        id=row.id,
        code=row.code,
        name=row.name,
        countries=tuple(row.countries or ()),
        region=row.region,
        active=bool(row.active),
    )


async def create_warehouse(
    conn: AsyncConnection,
    *,
    code: str,
    name: str,
    countries: Sequence[str],
    region: str | None = None,
) -> WarehouseInfo:
    code = code.strip().upper()
    if not _CODE.match(code):
        raise validation_problem("code", "2-16 characters: letters, digits, '-' or '_'")
    name = name.strip()
    if not name or len(name) > 120:
        raise validation_problem("name", "must be 1 to 120 characters")
    normalized = sorted(
        {normalize_country(c, f"countries[{i}]") or "" for i, c in enumerate(countries)}
    )
    warehouse_id = new_id("wh")
    row: dict[str, Any] = {
        "id": warehouse_id,
        "code": code,
        "name": name,
        "countries": normalized,
        "region": region,
        "active": True,
        "created_at": utcnow(),
    }
    created = await conn.execute(
        _insert(conn, WAREHOUSES).values(row).on_conflict_do_nothing(index_elements=["code"])
    )
    if created.rowcount != 1:
        raise Problem(409, "warehouse_exists", f"A warehouse with code {code!r} already exists")
    return WarehouseInfo(
        id=warehouse_id,
        code=code,
        name=name,
        countries=tuple(normalized),
        region=region,
        active=True,
    )


async def list_warehouses(executor: Executor) -> list[WarehouseInfo]:
    rows = await executor.execute(select(WAREHOUSES).order_by(WAREHOUSES.c.code))
    return [_warehouse_info(r) for r in rows]


async def get_warehouse(executor: Executor, code: str, field: str = "warehouse") -> WarehouseInfo:
    """The warehouse with this code; 422 ``unknown_warehouse`` naming ``field``."""
    row = (
        await executor.execute(select(WAREHOUSES).where(WAREHOUSES.c.code == code.strip().upper()))
    ).first()
    if row is None:
        raise validation_problem(
            field, f"no warehouse with code {code!r}", code="unknown_warehouse"
        )
    return _warehouse_info(row)


# --------------------------------------------------------------------------------------------
# Reading stock


async def availability(executor: Executor, variant_ids: Collection[str]) -> dict[str, int]:
    """Units available to sell per variant, summed over active warehouses (0 when none)."""
    wanted = sorted(set(variant_ids))
    found = dict.fromkeys(wanted, 0)
    for chunk in _chunks(wanted):
        rows = await executor.execute(_AVAILABLE, {"ids": list(chunk)})
        for variant_id, available in rows:
            found[variant_id] = int(available or 0)
    return found


def low_stock_hint(available: int, threshold: int = DEFAULT_LOW_STOCK_THRESHOLD) -> str | None:
    """ "Only 3 left" when a shopper should hurry; ``None`` when plenty (or none) is left."""
    if 0 < available <= threshold:
        return f"Only {available} left"
    return None


def _stock_level(row: Row[Any]) -> StockLevel:
    return StockLevel(
        variant_id=row.variant_id,
        warehouse_id=row.warehouse_id,
        warehouse_code=row.code,
        on_hand=row.on_hand,
        reserved=row.reserved,
        available=row.on_hand - row.reserved,
        version=row.version,
        updated_at=row.updated_at,
    )


def _stock_select() -> Select[Any]:
    return select(
        STOCK.c.variant_id,
        STOCK.c.warehouse_id,
        WAREHOUSES.c.code,
        STOCK.c.on_hand,
        STOCK.c.reserved,
        STOCK.c.version,
        STOCK.c.updated_at,
    ).join(WAREHOUSES, WAREHOUSES.c.id == STOCK.c.warehouse_id)


async def stock_for_variant(executor: Executor, variant_id: str) -> list[StockLevel]:
    """The variant's stock in every warehouse that has a row for it, by warehouse code."""
    rows = await executor.execute(
        _stock_select().where(STOCK.c.variant_id == variant_id).order_by(WAREHOUSES.c.code)
    )
    return [_stock_level(r) for r in rows]


async def _stock_level_of(conn: AsyncConnection, variant_id: str, warehouse_id: str) -> StockLevel:
    row = (
        await conn.execute(
            _stock_select().where(
                STOCK.c.variant_id == variant_id, STOCK.c.warehouse_id == warehouse_id
            )
        )
    ).one()
    return _stock_level(row)


def _reservation_select() -> Select[Any]:
    return select(
        RESERVATIONS.c.id,
        RESERVATIONS.c.owner,
        RESERVATIONS.c.variant_id,
        RESERVATIONS.c.warehouse_id,
        WAREHOUSES.c.code,
        RESERVATIONS.c.quantity,
        RESERVATIONS.c.state,
        RESERVATIONS.c.expires_at,
        RESERVATIONS.c.created_at,
    ).join(WAREHOUSES, WAREHOUSES.c.id == RESERVATIONS.c.warehouse_id)


_ACTIVE_FOR_OWNER = _reservation_select().where(
    RESERVATIONS.c.owner == bindparam("owner"), RESERVATIONS.c.state == "active"
)


def _reservation_info(
    row: Row[Any], code: str | None = None, state: str | None = None
) -> ReservationInfo:
    return ReservationInfo(
        id=row.id,
        owner=row.owner,
        variant_id=row.variant_id,
        warehouse_id=row.warehouse_id,
        warehouse_code=code if code is not None else row.code,
        quantity=row.quantity,
        state=state if state is not None else row.state,
        expires_at=row.expires_at,
        created_at=row.created_at,
    )


async def list_reservations(
    executor: Executor,
    *,
    state: str | None = "active",
    variant_id: str | None = None,
    owner: str | None = None,
    limit: int = 100,
) -> list[ReservationInfo]:
    """Reservations, newest first, filtered by state, variant and owner."""
    query = _reservation_select()
    if state is not None:
        query = query.where(RESERVATIONS.c.state == state)
    if variant_id is not None:
        query = query.where(RESERVATIONS.c.variant_id == variant_id)
    if owner is not None:
        query = query.where(RESERVATIONS.c.owner == owner)
    rows = await executor.execute(
        query.order_by(RESERVATIONS.c.created_at.desc(), RESERVATIONS.c.id.desc()).limit(limit)
    )
    return [_reservation_info(r) for r in rows]


async def active_reservations(
    executor: Executor,
    *,
    variant_id: str | None = None,
    owner: str | None = None,
    limit: int = 100,
) -> list[ReservationInfo]:
    return await list_reservations(
        executor, state="active", variant_id=variant_id, owner=owner, limit=limit
    )


# --------------------------------------------------------------------------------------------
# Receive, adjust, restock (staff and returns)


async def _add_on_hand(
    conn: AsyncConnection, variant_id: str, warehouse_id: str, quantity: int, now: datetime
) -> None:
    stmt = _insert(conn, STOCK).values(
        variant_id=variant_id,
        warehouse_id=warehouse_id,
        on_hand=quantity,
        reserved=0,
        version=1,
        updated_at=now,
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["variant_id", "warehouse_id"],
            set_={
                "on_hand": STOCK.c.on_hand + stmt.excluded.on_hand,
                "version": STOCK.c.version + 1,
                "updated_at": now,
            },
        )
    )


async def _add_stock(
    conn: AsyncConnection,
    kind: str,
    sku_or_variant: VariantRef,
    warehouse_code: str,
    quantity: int,
    *,
    reference: str | None,
    reason: str | None = None,
) -> StockLevel:
    check_quantity("quantity", quantity)
    variant = await _variant(conn, sku_or_variant)
    warehouse = await get_warehouse(conn, warehouse_code)
    now = utcnow()
    await _add_on_hand(conn, variant.id, warehouse.id, quantity, now)
    movement = _movement(
        variant.id, warehouse.id, kind, quantity, now, reason=reason, reference=reference
    )
    await _write_movements(conn, [movement])
    await _publish_after_change(conn, [variant.id])
    return await _stock_level_of(conn, variant.id, warehouse.id)


async def receive(
    conn: AsyncConnection,
    sku_or_variant: VariantRef,
    warehouse_code: str,
    quantity: int,
    reference: str | None = None,
) -> StockLevel:
    """Goods arrived at a warehouse: on_hand grows by ``quantity`` (1..MAX_QUANTITY).

    Stock of an archived variant may still be received: the shelf count must stay true.
    """
    return await _add_stock(
        conn, "receive", sku_or_variant, warehouse_code, quantity, reference=reference
    )


async def restock(
    conn: AsyncConnection,
    sku_or_variant: VariantRef,
    warehouse_code: str,
    quantity: int,
    reference: str | None = None,
) -> StockLevel:
    """Returned goods put back on the shelf (``reference``: the return or order)."""
    return await _add_stock(
        conn, "restock", sku_or_variant, warehouse_code, quantity, reference=reference
    )


async def adjust(
    conn: AsyncConnection,
    sku_or_variant: VariantRef,
    warehouse_code: str,
    delta: int,
    reason: str,
) -> StockLevel:
    """Correct on_hand by ``delta`` (a stock count, damage) with a reason. It never takes
    on_hand below what is reserved: that is a 409 ``insufficient_stock`` naming what is free."""
    if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
        raise validation_problem("delta", "must be a non-zero whole number")
    if abs(delta) > MAX_QUANTITY:
        raise validation_problem("delta", f"must be between -{MAX_QUANTITY} and {MAX_QUANTITY}")
    reason = (reason or "").strip()
    if not reason or len(reason) > 200:
        raise validation_problem("reason", "must be 1 to 200 characters")
    variant = await _variant(conn, sku_or_variant)
    warehouse = await get_warehouse(conn, warehouse_code)
    now = utcnow()
    if delta > 0:
        await _add_on_hand(conn, variant.id, warehouse.id, delta, now)
    else:
        taken = await conn.execute(
            update(STOCK)
            .where(
                STOCK.c.variant_id == variant.id,
                STOCK.c.warehouse_id == warehouse.id,
                STOCK.c.on_hand - STOCK.c.reserved >= -delta,
            )
            .values(on_hand=STOCK.c.on_hand + delta, version=STOCK.c.version + 1, updated_at=now)
        )
        if taken.rowcount != 1:
            levels = await stock_for_variant(conn, variant.id)
            free = next((s.available for s in levels if s.warehouse_id == warehouse.id), 0)
            raise Problem(
                409,
                "insufficient_stock",
                f"Cannot remove {-delta} units: only {free} are not reserved in {warehouse.code}",
                variant_id=variant.id,
                warehouse=warehouse.code,
                available=free,
            )
    movement = _movement(variant.id, warehouse.id, "adjust", delta, now, reason=reason)
    await _write_movements(conn, [movement])
    await _publish_after_change(conn, [variant.id])
    return await _stock_level_of(conn, variant.id, warehouse.id)


# --------------------------------------------------------------------------------------------
# Reserve


@dataclass(frozen=True, slots=True)
class _Candidate:
    variant_id: str
    warehouse_id: str
    code: str
    countries: tuple[str, ...]
    available: int


@dataclass(frozen=True, slots=True)
class _Hold:
    variant_id: str
    warehouse_id: str
    code: str
    quantity: int


def sum_lines(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    """One total per variant: two lines of the same variant draw on the same stock rows."""
    totals: dict[str, int] = defaultdict(int)
    for variant_id, quantity in lines:
        totals[variant_id] += quantity
    return dict(totals)


def _check_lines(lines: Sequence[tuple[str, int]]) -> dict[str, int]:
    if not lines:
        raise validation_problem("lines", "at least one line is required")
    for i, (variant_id, quantity) in enumerate(lines):
        if not isinstance(variant_id, str) or not variant_id:
            raise validation_problem(f"lines[{i}].variant_id", "is required")
        check_quantity(f"lines[{i}].quantity", quantity)
    wanted = sum_lines(lines)
    for variant_id, total in wanted.items():
        if total > MAX_QUANTITY:
            raise validation_problem(
                "lines", f"{variant_id}: {total} units in total, at most {MAX_QUANTITY}"
            )
    return wanted


async def _lock_owner(conn: AsyncConnection, owner: str) -> None:
    """Serialise reservations of one owner on PostgreSQL (SQLite writers are serial anyway), so
    two concurrent calls for the same checkout cannot both place holds."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(owner.encode(), digest_size=4).digest()
    key = int.from_bytes(digest, "big", signed=True)
    await conn.execute(_LOCK_OWNER, {"space": _OWNER_LOCK_SPACE, "key": key})


async def _active_for_owner(conn: AsyncConnection, owner: str) -> list[ReservationInfo]:
    rows = await conn.execute(_ACTIVE_FOR_OWNER, {"owner": owner})
    return sorted(
        (_reservation_info(r) for r in rows), key=lambda r: (r.variant_id, r.warehouse_id)
    )


async def _candidates(conn: AsyncConnection, variant_ids: Collection[str]) -> list[_Candidate]:
    rows = await conn.execute(_CANDIDATES, {"ids": sorted(variant_ids)})
    return [
        _Candidate(r.variant_id, r.warehouse_id, r.code, tuple(r.countries or ()), r.available)
        for r in rows
    ]


def plan_holds(
    wanted: Mapping[str, int],
    candidates: Sequence[_Candidate],
    country: str | None,
    warehouse_id: str | None = None,
) -> tuple[list[_Hold], list[tuple[str, int, int]]]:
    """Where each variant's units come from: one warehouse that can fill the whole line (the
    fullest, so stock stays balanced), else a split across the warehouses that ship to
    ``country``, fullest first. Returns the holds sorted in locking order, and the lines that
    cannot be filled as (variant_id, requested, available)."""
    by_variant: dict[str, list[_Candidate]] = defaultdict(list)
    for c in candidates:
        ships = country is None or country in c.countries
        if c.available > 0 and ships and warehouse_id in (None, c.warehouse_id):
            by_variant[c.variant_id].append(c)
    holds: list[_Hold] = []
    short: list[tuple[str, int, int]] = []
    for variant_id, quantity in sorted(wanted.items()):
        options = sorted(by_variant[variant_id], key=lambda c: (-c.available, c.code))
        total = sum(c.available for c in options)
        if total < quantity:
            short.append((variant_id, quantity, total))
            continue
        if options[0].available >= quantity:
            c = options[0]
            holds.append(_Hold(variant_id, c.warehouse_id, c.code, quantity))
            continue
        remaining = quantity
        for c in options:
            take = min(remaining, c.available)
            holds.append(_Hold(variant_id, c.warehouse_id, c.code, take))
            remaining -= take
            if remaining == 0:
                break
    holds.sort(key=lambda h: (h.variant_id, h.warehouse_id))
    return holds, short


async def _take(conn: AsyncConnection, hold: _Hold, now: datetime) -> bool:
    """The conditional UPDATE that decides whether the units are still there."""
    params = {"v": hold.variant_id, "w": hold.warehouse_id, "q": hold.quantity, "now": now}
    return (await conn.execute(_TAKE, params)).rowcount == 1


async def _hold_attempt(
    conn: AsyncConnection,
    owner: str,
    holds: Sequence[_Hold],
    candidates: Sequence[_Candidate],
    now: datetime,
    expires_at: datetime,
) -> list[ReservationInfo] | None:
    """Write the reservation rows, their ledger rows and the events, then place the holds, all
    inside a savepoint; ``None`` (and nothing left behind) when a race for a row was lost.

    The conditional UPDATEs come last so that each stock row stays locked only from the UPDATE
    to the commit: on a hot variant that lock is the queue everyone waits in.

    The savepoint matters when a hold fails: a PostgreSQL READ COMMITTED UPDATE that waited for
    a concurrent writer locks the row's new version before it re-checks the condition, and
    keeps that lock when the check fails. Going on to another row while holding it is how two
    re-planning reservations would deadlock; rolling back to the savepoint drops it. (Plain
    SAVEPOINT statements: SQLAlchemy's nested-transaction bookkeeping costs more than the
    round trip.)
    """
    rows: list[dict[str, Any]] = [
        {
            "id": new_id("rsv"),
            "owner": owner,
            "variant_id": h.variant_id,
            "warehouse_id": h.warehouse_id,
            "quantity": h.quantity,
            "state": "active",
            "expires_at": expires_at,
            "created_at": now,
            "updated_at": now,
        }
        for h in holds
    ]
    # What the event says is what this transaction planned with; consumers that need the
    # exact figure re-read availability().
    totals: dict[str, int] = defaultdict(int)
    for c in candidates:
        totals[c.variant_id] += c.available
    for h in holds:
        totals[h.variant_id] -= h.quantity

    await conn.exec_driver_sql("SAVEPOINT inventory_holds")
    await conn.execute(_INSERT_RESERVATIONS, rows)
    await _write_movements(
        conn,
        [
            _movement(h.variant_id, h.warehouse_id, "reserve", h.quantity, now, reference=r["id"])
            for r, h in zip(rows, holds, strict=True)
        ],
    )
    await _publish_stock_changed(conn, totals)
    for hold in holds:  # already in locking order
        if not await _take(conn, hold, now):
            await conn.exec_driver_sql("ROLLBACK TO SAVEPOINT inventory_holds")
            await conn.exec_driver_sql("RELEASE SAVEPOINT inventory_holds")
            return None
    # Not released on success: the commit ends it with the transaction, one round trip less
    # while the stock rows are locked.
    return [
        ReservationInfo(
            id=r["id"],
            owner=owner,
            variant_id=h.variant_id,
            warehouse_id=h.warehouse_id,
            warehouse_code=h.code,
            quantity=h.quantity,
            state="active",
            expires_at=expires_at,
            created_at=now,
        )
        for r, h in zip(rows, holds, strict=True)
    ]


async def reserve(
    conn: AsyncConnection,
    owner: str,
    lines: Sequence[tuple[str, int]],
    country: str | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    *,
    warehouse: str | None = None,
    now: datetime | None = None,
    check_catalog: bool = True,
    new_owner: bool = False,
) -> list[ReservationInfo]:
    """Hold stock for ``owner`` (a checkout, a cart): every line or nothing.

    ``lines`` are (variant_id, quantity); lines of the same variant are summed first. Units come
    from warehouses shipping to ``country`` (any active warehouse when ``None``), or only from
    ``warehouse`` when given. The holds expire after ``ttl_seconds``.

    Idempotent per owner: while the owner has active reservations, calling again with the same
    totals returns them; different totals are a 409 ``reservation_conflict``.

    Errors (nothing is held): 422 for bad input (``unknown_variant``, ``unknown_warehouse``,
    quantities outside 1..MAX_QUANTITY), 409 ``variant_unavailable`` for an archived or inactive
    variant, 409 ``out_of_stock`` with ``lines: [{variant_id, requested, available}]``, and
    409 ``stock_contention`` (retry) in the rare case that every re-plan lost its race again.
    ``check_catalog=False`` skips the catalog lookup for callers that validated the variants in
    the same transaction. ``new_owner=True`` says the owner came into being in this very
    transaction (a row the caller just inserted under a fresh id), so nobody can hold anything
    for it yet: the owner's lock and the read of its existing holds are skipped.
    """
    _check_owner(owner)
    wanted = _check_lines(lines)
    country = normalize_country(country)
    if ttl_seconds <= 0:
        raise validation_problem("ttl_seconds", "must be positive")
    now = now or utcnow()
    only = await get_warehouse(conn, warehouse) if warehouse is not None else None

    existing = []
    if not new_owner:
        await _lock_owner(conn, owner)
        existing = await _active_for_owner(conn, owner)
    if existing:
        if sum_lines((r.variant_id, r.quantity) for r in existing) == wanted:
            return existing
        raise Problem(
            409,
            "reservation_conflict",
            f"{owner!r} already holds different reservations; release them first",
            owner=owner,
        )
    if check_catalog:
        await _check_reservable(conn, wanted.keys())

    only_id = only.id if only is not None else None
    expires_at = now + timedelta(seconds=ttl_seconds)
    for _ in range(RESERVE_ATTEMPTS):
        candidates = await _candidates(conn, wanted.keys())
        holds, short = plan_holds(wanted, candidates, country, only_id)
        if short:
            raise _out_of_stock(short)
        held = await _hold_attempt(conn, owner, holds, candidates, now, expires_at)
        if held is not None:
            return held
    # Lost the race for a row on every fresh plan: the stock is there but contended.
    raise Problem(
        409,
        "stock_contention",
        "Stock for these items is changing quickly; please try again",
        headers={"Retry-After": "1"},
    )


# --------------------------------------------------------------------------------------------
# Commit, release, expire


async def _settle(
    conn: AsyncConnection,
    flipped: Sequence[Row[Any]],
    kind: str,
    now: datetime,
    reason: str | None,
) -> None:
    """Give back (or sell) the units of reservations this transaction just moved out of
    ``active``: the stock rows in locking order, one ledger row per reservation.

    A sale writes the ledger first and the stock ``UPDATE`` last, as :func:`reserve` does: each
    stock row stays locked from it to the commit, and on a popular variant that lock is the
    queue every checkout waits in. It publishes no ``StockChanged``: on_hand and reserved fall
    together, so what can be sold (and whether the variant is in stock) is what the reservation
    already announced. A release or an expiry gives units back and announces the new figure."""
    per_row: dict[tuple[str, str], int] = defaultdict(int)
    for r in flipped:
        per_row[(r.variant_id, r.warehouse_id)] += r.quantity
    stock_rows = [{"v": v, "w": w, "q": q, "now": now} for (v, w), q in sorted(per_row.items())]
    movements = [
        _movement(
            r.variant_id, r.warehouse_id, kind, r.quantity, now, reason=reason, reference=r.id
        )
        for r in flipped
    ]
    if kind == "commit":
        await _write_movements(conn, movements)
        await conn.execute(_SELL, stock_rows)
        return
    await conn.execute(_UNRESERVE, stock_rows)
    await _write_movements(conn, movements)
    await _publish_after_change(conn, {r.variant_id for r in flipped})


async def _finish_owner(
    conn: AsyncConnection, owner: str, state: str, kind: str, reason: str | None
) -> list[ReservationInfo]:
    now = utcnow()
    # Only rows still active change: a second call (or a racing expiry) finds nothing to do.
    params = {"b_owner": owner, "b_state": state, "b_now": now}
    flipped = (await conn.execute(_FINISH_OWNER, params)).all()
    if not flipped:
        return []
    await _settle(conn, flipped, kind, now, reason)
    infos = [_reservation_info(r, r.code or "", state) for r in flipped]
    return sorted(infos, key=lambda r: (r.variant_id, r.warehouse_id))


async def commit(conn: AsyncConnection, owner: str) -> list[ReservationInfo]:
    """The owner bought what it holds: each active reservation becomes ``committed`` and its
    units leave on_hand and reserved together. Returns what this call committed (nothing when
    called again). A hold past its ``expires_at`` that the worker has not released yet still
    holds its units and is committed; one that was expired or released meanwhile is not, so the
    caller compares the answer with what it expected."""
    _check_owner(owner)
    return await _finish_owner(conn, owner, "committed", "commit", None)


async def release(
    conn: AsyncConnection, owner: str, reason: str = "released"
) -> list[ReservationInfo]:
    """Give the owner's active holds back (checkout abandoned, payment failed). Idempotent."""
    _check_owner(owner)
    return await _finish_owner(conn, owner, "released", "release", reason[:200] or None)


async def expire_due(conn: AsyncConnection, now: datetime | None = None, limit: int = 500) -> int:
    """Release up to ``limit`` active reservations whose ``expires_at`` has passed; returns how
    many. Rows another transaction is committing or releasing are skipped (PostgreSQL) rather
    than waited for; they are either settled by it or picked up on the next run."""
    now = now or utcnow()
    due = (
        select(RESERVATIONS.c.id)
        .where(RESERVATIONS.c.state == "active", RESERVATIONS.c.expires_at <= now)
        .order_by(RESERVATIONS.c.expires_at, RESERVATIONS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    flipped = (
        await conn.execute(
            update(RESERVATIONS)
            .where(RESERVATIONS.c.id.in_(due), RESERVATIONS.c.state == "active")
            .values(state="expired", updated_at=now)
            .returning(*_FLIPPED)
        )
    ).all()
    if flipped:
        await _settle(conn, flipped, "expire", now, "expired")
    return len(flipped)


# --------------------------------------------------------------------------------------------
# The ledger check


async def check_ledger(
    executor: Executor, variant_ids: Collection[str] | None = None
) -> list[LedgerDifference]:
    """Every stock row (and every ledger or reservation key without one) whose figures disagree:

    * on_hand  = received + adjustments + restocks - sold (commits), summed from the ledger;
    * reserved = the sum of the row's active reservations;
    * reserved = reserves - releases - expiries - commits, summed from the ledger.

    One statement, so PostgreSQL answers from one snapshot even while stock moves.
    """
    m, r = MOVEMENTS.c, RESERVATIONS.c
    signed_on_hand = case(
        (m.kind.in_(("receive", "adjust", "restock")), m.quantity),
        (m.kind == "commit", -m.quantity),
        else_=0,
    )
    signed_reserved = case(
        (m.kind == "reserve", m.quantity),
        (m.kind.in_(("release", "expire", "commit")), -m.quantity),
        else_=0,
    )
    ledger_q = select(
        m.variant_id,
        m.warehouse_id,
        func.sum(signed_on_hand).label("on_hand"),
        func.sum(signed_reserved).label("reserved"),
    )
    held_q = select(r.variant_id, r.warehouse_id, func.sum(r.quantity).label("reserved")).where(
        r.state == "active"
    )
    stock_keys = select(STOCK.c.variant_id, STOCK.c.warehouse_id)
    if variant_ids is not None:
        chosen = sorted(set(variant_ids))
        ledger_q = ledger_q.where(m.variant_id.in_(chosen))
        held_q = held_q.where(r.variant_id.in_(chosen))
        stock_keys = stock_keys.where(STOCK.c.variant_id.in_(chosen))
    ledger = ledger_q.group_by(m.variant_id, m.warehouse_id).subquery("ledger")
    held = held_q.group_by(r.variant_id, r.warehouse_id).subquery("held")
    keys = union(
        stock_keys,
        select(ledger.c.variant_id, ledger.c.warehouse_id),
        select(held.c.variant_id, held.c.warehouse_id),
    ).subquery("keys")

    def joined(sub: Any) -> Any:
        return and_(
            sub.c.variant_id == keys.c.variant_id, sub.c.warehouse_id == keys.c.warehouse_id
        )

    on_hand = func.coalesce(STOCK.c.on_hand, 0)
    reserved = func.coalesce(STOCK.c.reserved, 0)
    expected_on_hand = func.coalesce(ledger.c.on_hand, 0)
    ledger_reserved = func.coalesce(ledger.c.reserved, 0)
    expected_reserved = func.coalesce(held.c.reserved, 0)
    query = (
        select(
            keys.c.variant_id,
            keys.c.warehouse_id,
            on_hand.label("on_hand"),
            expected_on_hand.label("expected_on_hand"),
            reserved.label("reserved"),
            expected_reserved.label("expected_reserved"),
            ledger_reserved.label("ledger_reserved"),
        )
        .select_from(keys)
        .outerjoin(STOCK, joined(STOCK))
        .outerjoin(ledger, joined(ledger))
        .outerjoin(held, joined(held))
        .where(
            or_(
                on_hand != expected_on_hand,
                reserved != expected_reserved,
                reserved != ledger_reserved,
            )
        )
        .order_by(keys.c.variant_id, keys.c.warehouse_id)
    )
    rows = await executor.execute(query)
    return [
        LedgerDifference(
            variant_id=row.variant_id,
            warehouse_id=row.warehouse_id,
            on_hand=int(row.on_hand),
            expected_on_hand=int(row.expected_on_hand),
            reserved=int(row.reserved),
            expected_reserved=int(row.expected_reserved),
            ledger_reserved=int(row.ledger_reserved),
        )
        for row in rows
    ]


async def count_stock_rows(executor: Executor) -> int:
    return int((await executor.execute(select(func.count()).select_from(STOCK))).scalar_one())


# --------------------------------------------------------------------------------------------
# For the back office


@dataclass(frozen=True, slots=True)
class LowStock:
    """A variant's stock summed over the active warehouses."""

    variant_id: str
    on_hand: int
    reserved: int
    available: int


async def low_stock(executor: Executor, threshold: int, *, limit: int = 20) -> list[LowStock]:
    """Variants with at most ``threshold`` units available over the active warehouses (sold
    out ones included), fewest first. Only variants that have a stock row somewhere."""
    if not 1 <= limit <= 1000:
        raise validation_problem("limit", "must be between 1 and 1000")
    available = func.sum(STOCK.c.on_hand - STOCK.c.reserved)
    rows = await executor.execute(
        select(
            STOCK.c.variant_id,
            func.sum(STOCK.c.on_hand).label("on_hand"),
            func.sum(STOCK.c.reserved).label("reserved"),
            available.label("available"),
        )
        .join(WAREHOUSES, WAREHOUSES.c.id == STOCK.c.warehouse_id)
        .where(WAREHOUSES.c.active.is_(True))
        .group_by(STOCK.c.variant_id)
        .having(available <= threshold)
        .order_by(available, STOCK.c.variant_id)
        .limit(limit)
    )
    return [LowStock(r.variant_id, int(r.on_hand), int(r.reserved), int(r.available)) for r in rows]


async def stock_for_variants(
    executor: Executor, variant_ids: Collection[str]
) -> dict[str, list[StockLevel]]:
    """Each variant's stock rows, by warehouse code (variants without any map to ``[]``)."""
    wanted = sorted(set(variant_ids))
    found: dict[str, list[StockLevel]] = {v: [] for v in wanted}
    for chunk in _chunks(wanted):
        rows = await executor.execute(
            _stock_select()
            .where(STOCK.c.variant_id.in_(list(chunk)))
            .order_by(STOCK.c.variant_id, WAREHOUSES.c.code)
        )
        for r in rows:
            found[r.variant_id].append(_stock_level(r))
    return found
