"""Reservations: hold stock for an owner (a checkout, a phone order), then sell it (commit) or
give it back (release, expiry).

Each hold is decided by a single conditional statement per stock row (``UPDATE ... WHERE
on_hand - reserved >= :qty``): the database, not a value read earlier, says whether the units
are there, so concurrent callers can never oversell. The CHECK constraints on
``inventory_stock`` refuse a negative availability even if a bug slipped past that.

Locking order, to keep PostgreSQL free of deadlocks: an operation touches reservation rows
first (commit, release, expire), then stock rows sorted by (variant_id, warehouse_id). On SQLite
every transaction starts with ``BEGIN IMMEDIATE``, so writers simply queue.

These are the hot paths of a checkout: prebuilt statements, as few round trips as the rules
allow; the counts are pinned by the checkout's statement tests.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, and_, bindparam, insert, select, text, update

from mercato.db import UnitOfWork, utcnow
from mercato.identity import service as identity
from mercato.ids import new_id
from mercato.inventory.common import (
    DEFAULT_TTL_SECONDS,
    MAX_QUANTITY,
    RESERVATIONS,
    STOCK,
    WAREHOUSES,
    ReservationInfo,
    check_quantity,
    normalize_country,
)
from mercato.inventory.ledger import (
    movement,
    publish_after_change,
    publish_stock_changed,
    write_movements,
)
from mercato.inventory.warehouses import check_reservable, get_warehouse
from mercato.metrics import RESERVATION_FAILURES
from mercato.problems import Problem, validation_problem

RESERVE_ATTEMPTS = 8
"""How often reserve re-plans after losing a race for a stock row before it gives up. Every lost
race means another reservation went through, so running out of attempts is rare."""
_OWNER_LOCK_SPACE = 0x1E7A  # first key of the two-key advisory lock taken per reservation owner

# Reserve, commit and release run prebuilt statements: building a statement object costs about
# as much as sending it, so they only bind values.
_INSERT_RESERVATIONS = insert(RESERVATIONS)
_LOCK_OWNER = text("SELECT pg_advisory_xact_lock(:space, :key)")
_CANDIDATES = (
    select(
        STOCK.c.variant_id,
        STOCK.c.warehouse_id,
        WAREHOUSES.c.code,
        WAREHOUSES.c.countries,
        (STOCK.c.on_hand - STOCK.c.reserved).label("available"),
        WAREHOUSES.c.pooled,
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


def _check_owner(owner: str) -> None:
    if not owner or len(owner) > 80:
        raise validation_problem("owner", "must be 1 to 80 characters")


def not_deliverable(country: str, short: Sequence[tuple[str, int, int]]) -> Problem:
    """409 ``not_deliverable``: the units are there, but no warehouse that has them ships to
    ``country``."""
    lines = [
        {"variant_id": v, "requested": r, "available": a, "available_elsewhere": True}
        for v, r, a in short
    ]
    extra: dict[str, Any] = {"lines": lines, "country": country}
    if len(lines) == 1:
        extra |= {"variant_id": short[0][0], "available": short[0][2]}
    name = identity.country_name(country)
    ids = ", ".join(v for v, _, _ in short)
    return Problem(
        409,
        "not_deliverable",
        f"Not available for delivery to {name} ({country}): {ids}",
        title="Not available for delivery",
        **extra,
    )


def _refusal(
    short: Sequence[tuple[str, int, int]],
    candidates: Sequence[_Candidate],
    country: str | None,
    warehouse_id: str | None,
) -> Problem:
    """Why the lines cannot be held: out of reach of ``country`` when none of their units can
    reach it and warehouses shipping elsewhere could fill every one of them, else out of stock
    (some units reach it, only too few: the shopper can still buy those)."""
    if country is not None and all(available <= 0 for _, _, available in short):
        wanted = {v: r for v, r, _ in short}
        _, short_anywhere = plan_holds(wanted, candidates, None, warehouse_id)
        if not short_anywhere:
            return not_deliverable(country, short)
    return _out_of_stock(short)


def _out_of_stock(short: Sequence[tuple[str, int, int]]) -> Problem:
    lines = [{"variant_id": v, "requested": r, "available": a} for v, r, a in short]
    extra: dict[str, Any] = {"lines": lines}
    if len(lines) == 1:
        extra |= {"variant_id": short[0][0], "available": short[0][2]}
    detail = "; ".join(f"{v}: {r} requested, {a} available" for v, r, a in short)
    return Problem(409, "out_of_stock", f"Not enough stock ({detail})", **extra)


# --------------------------------------------------------------------------------------------
# Reading reservations


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
    uow: UnitOfWork,
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
    rows = await uow.execute(
        query.order_by(RESERVATIONS.c.created_at.desc(), RESERVATIONS.c.id.desc()).limit(limit)
    )
    return [_reservation_info(r) for r in rows]


async def active_reservations(
    uow: UnitOfWork,
    *,
    variant_id: str | None = None,
    owner: str | None = None,
    limit: int = 100,
) -> list[ReservationInfo]:
    return await list_reservations(
        uow, state="active", variant_id=variant_id, owner=owner, limit=limit
    )


# --------------------------------------------------------------------------------------------
# Reserve


@dataclass(frozen=True, slots=True)
class _Candidate:
    variant_id: str
    warehouse_id: str
    code: str
    countries: tuple[str, ...]
    available: int
    pooled: bool = True


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


async def _lock_owner(uow: UnitOfWork, owner: str) -> None:
    """Serialise reservations of one owner on PostgreSQL (SQLite writers are serial anyway), so
    two concurrent calls for the same checkout cannot both place holds."""
    if uow.dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(owner.encode(), digest_size=4).digest()
    key = int.from_bytes(digest, "big", signed=True)
    await uow.execute(_LOCK_OWNER, {"space": _OWNER_LOCK_SPACE, "key": key})


async def _active_for_owner(uow: UnitOfWork, owner: str) -> list[ReservationInfo]:
    rows = await uow.execute(_ACTIVE_FOR_OWNER, {"owner": owner})
    return sorted(
        (_reservation_info(r) for r in rows), key=lambda r: (r.variant_id, r.warehouse_id)
    )


async def _candidates(uow: UnitOfWork, variant_ids: Collection[str]) -> list[_Candidate]:
    rows = await uow.execute(_CANDIDATES, {"ids": sorted(variant_ids)})
    return [
        _Candidate(
            r.variant_id,
            r.warehouse_id,
            r.code,
            tuple(r.countries or ()),
            r.available,
            bool(r.pooled),
        )
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
    ``country``, fullest first. Without ``warehouse_id`` only pooled warehouses count (a
    marketplace seller's stock is held only by naming its warehouse). Returns the holds sorted
    in locking order, and the lines that cannot be filled as (variant_id, requested,
    available)."""
    by_variant: dict[str, list[_Candidate]] = defaultdict(list)
    for c in candidates:
        ships = country is None or country in c.countries
        chosen = c.pooled if warehouse_id is None else warehouse_id == c.warehouse_id
        if c.available > 0 and ships and chosen:
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


async def _take(uow: UnitOfWork, hold: _Hold, now: datetime) -> bool:
    """The conditional UPDATE that decides whether the units are still there."""
    params = {"v": hold.variant_id, "w": hold.warehouse_id, "q": hold.quantity, "now": now}
    return await uow.changed(_TAKE, params) == 1


async def _hold_attempt(
    uow: UnitOfWork,
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

    await uow.exec_driver_sql("SAVEPOINT inventory_holds")
    await uow.execute(_INSERT_RESERVATIONS, rows)
    await write_movements(
        uow,
        [
            movement(h.variant_id, h.warehouse_id, "reserve", h.quantity, now, reference=r["id"])
            for r, h in zip(rows, holds, strict=True)
        ],
    )
    await publish_stock_changed(uow, totals)
    for hold in holds:  # already in locking order
        if not await _take(uow, hold, now):
            await uow.exec_driver_sql("ROLLBACK TO SAVEPOINT inventory_holds")
            await uow.exec_driver_sql("RELEASE SAVEPOINT inventory_holds")
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
    uow: UnitOfWork,
    owner: str,
    lines: Sequence[tuple[str, int]],
    country: str | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    *,
    warehouse: str | None = None,
    now: datetime | None = None,
    check_catalog: bool = True,
    new_owner: bool = False,
    named: Mapping[str, Sequence[tuple[str, int]]] | None = None,
) -> list[ReservationInfo]:
    """Hold stock for ``owner`` (a checkout, a cart): every line or nothing.

    ``named`` adds lines held only in the warehouse each is keyed by (warehouse id): a
    marketplace seller's units, which no pooled plan touches. All lines, pooled and named, are
    held together or not at all.

    ``lines`` are (variant_id, quantity); lines of the same variant are summed first. Units come
    from warehouses shipping to ``country`` (any active warehouse when ``None``), or only from
    ``warehouse`` when given. The holds expire after ``ttl_seconds``.

    Idempotent per owner: while the owner has active reservations, calling again with the same
    totals returns them; different totals are a 409 ``reservation_conflict``.

    Errors (nothing is held): 422 for bad input (``unknown_variant``, ``unknown_warehouse``,
    quantities outside 1..MAX_QUANTITY), 409 ``variant_unavailable`` for an archived or inactive
    variant, 409 ``out_of_stock`` with ``lines: [{variant_id, requested, available}]`` (409
    ``not_deliverable``, the same lines, when the units are there but cannot reach
    ``country``), and
    409 ``stock_contention`` (retry) in the rare case that every re-plan lost its race again.
    ``check_catalog=False`` skips the catalog lookup for callers that validated the variants in
    the same transaction. ``new_owner=True`` says the owner came into being in this very
    transaction (a row the caller just inserted under a fresh id), so nobody can hold anything
    for it yet: the owner's lock and the read of its existing holds are skipped.
    """
    _check_owner(owner)
    groups: dict[str | None, dict[str, int]] = {}
    if lines or not named:
        groups[None] = _check_lines(lines)
    for warehouse_id, named_lines in sorted((named or {}).items()):
        groups[warehouse_id] = _check_lines(named_lines)
    wanted = sum_lines((v, q) for g in groups.values() for v, q in g.items())
    country = normalize_country(country)
    if ttl_seconds <= 0:
        raise validation_problem("ttl_seconds", "must be positive")
    now = now or utcnow()
    only = await get_warehouse(uow, warehouse) if warehouse is not None else None

    existing = []
    if not new_owner:
        await _lock_owner(uow, owner)
        existing = await _active_for_owner(uow, owner)
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
        await check_reservable(uow, wanted.keys())

    only_id = only.id if only is not None else None
    expires_at = now + timedelta(seconds=ttl_seconds)
    for _ in range(RESERVE_ATTEMPTS):
        candidates = await _candidates(uow, wanted.keys())
        holds = []
        for group_warehouse, units in groups.items():
            where = only_id if group_warehouse is None else group_warehouse
            planned, short = plan_holds(units, candidates, country, where)
            if short:
                refusal = _refusal(short, candidates, country, where)
                RESERVATION_FAILURES.labels(refusal.code).inc()
                raise refusal
            holds += planned
        holds.sort(key=lambda h: (h.variant_id, h.warehouse_id))
        held = await _hold_attempt(uow, owner, holds, candidates, now, expires_at)
        if held is not None:
            return held
    # Lost the race for a row on every fresh plan: the stock is there but contended.
    RESERVATION_FAILURES.labels("stock_contention").inc()
    raise Problem(
        409,
        "stock_contention",
        "Stock for these items is changing quickly; please try again",
        headers={"Retry-After": "1"},
    )


# --------------------------------------------------------------------------------------------
# Commit, release, expire


async def _settle(
    uow: UnitOfWork,
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
        movement(r.variant_id, r.warehouse_id, kind, r.quantity, now, reason=reason, reference=r.id)
        for r in flipped
    ]
    if kind == "commit":
        await write_movements(uow, movements)
        await uow.execute(_SELL, stock_rows)
        return
    await uow.execute(_UNRESERVE, stock_rows)
    await write_movements(uow, movements)
    await publish_after_change(uow, {r.variant_id for r in flipped})


async def _finish_owner(
    uow: UnitOfWork, owner: str, state: str, kind: str, reason: str | None
) -> list[ReservationInfo]:
    now = utcnow()
    # Only rows still active change: a second call (or a racing expiry) finds nothing to do.
    params = {"b_owner": owner, "b_state": state, "b_now": now}
    flipped = (await uow.execute(_FINISH_OWNER, params)).all()
    if not flipped:
        return []
    await _settle(uow, flipped, kind, now, reason)
    infos = [_reservation_info(r, r.code or "", state) for r in flipped]
    return sorted(infos, key=lambda r: (r.variant_id, r.warehouse_id))


async def commit(uow: UnitOfWork, owner: str) -> list[ReservationInfo]:
    """The owner bought what it holds: each active reservation becomes ``committed`` and its
    units leave on_hand and reserved together. Returns what this call committed (nothing when
    called again). A hold past its ``expires_at`` that the worker has not released yet still
    holds its units and is committed; one that was expired or released meanwhile is not, so the
    caller compares the answer with what it expected."""
    _check_owner(owner)
    return await _finish_owner(uow, owner, "committed", "commit", None)


async def release(uow: UnitOfWork, owner: str, reason: str = "released") -> list[ReservationInfo]:
    """Give the owner's active holds back (checkout abandoned, payment failed). Idempotent."""
    _check_owner(owner)
    return await _finish_owner(uow, owner, "released", "release", reason[:200] or None)


async def expire_due(uow: UnitOfWork, now: datetime | None = None, limit: int = 500) -> int:
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
        await uow.execute(
            update(RESERVATIONS)
            .where(RESERVATIONS.c.id.in_(due), RESERVATIONS.c.state == "active")
            .values(state="expired", updated_at=now)
            .returning(*_FLIPPED)
        )
    ).all()
    if flipped:
        await _settle(uow, flipped, "expire", now, "expired")
    return len(flipped)
