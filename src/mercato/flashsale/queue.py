"""The waiting room: one place per customer per sale, the pre-queue shuffled at the start,
first come first served after it, places that lapse when their buyer stops polling, and the
admission pass that lets buyers in, in queue order, at the sale's rate, while units remain.

Who "left": a waiting buyer whose last poll (or join) is older than the grace period. Their
place lapses (``expired``); joining again puts them at the back of the line.

Locking order, to keep PostgreSQL free of deadlocks: the sale's row first, then its entries.
Every pass that takes units from the gate holds the sale's row, so the gate, synchronised with
the database under that lock, is exact whenever units are taken.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import and_, bindparam, insert, or_, select, update

from mercato.db import UnitOfWork, utcnow
from mercato.flashsale.common import (
    ENTRIES,
    SALES,
    EntryInfo,
    SaleInfo,
    find_entry,
    get_sale,
    not_in_queue,
    sale_ended,
)
from mercato.flashsale.gate import Gate, GateUnavailable
from mercato.flashsale.keeper import MAX_BATCH, Keeper, pace_rate
from mercato.flashsale.tokens import make_token
from mercato.ids import new_id

log = logging.getLogger("mercato.flashsale")
_shuffle = random.SystemRandom().shuffle

_SET_POSITION = (
    update(ENTRIES)
    .where(ENTRIES.c.id == bindparam("b_id"))
    .values(position=bindparam("b_position"))
)
_ADMIT = (
    update(ENTRIES)
    .where(ENTRIES.c.id == bindparam("b_id"), ENTRIES.c.state == "waiting")
    .values(
        state="admitted",
        units=bindparam("b_units"),
        admitted_at=bindparam("b_now"),
        hold_expires_at=bindparam("b_until"),
    )
)


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one admission pass did: buyers admitted, places lapsed, units whose hold ran out,
    and whether admissions are paused (the gate cannot be reached)."""

    admitted: int = 0
    lapsed: int = 0
    returned: int = 0
    paused: bool = False


@dataclass(frozen=True, slots=True)
class QueueState:
    """What a buyer polling the waiting room is told."""

    sale_id: str
    state: str  # waiting, admitted, sold_out, expired, purchased
    sale_status: str
    starts_at: datetime
    ends_at: datetime
    position: int | None = None
    ahead: int | None = None
    estimated_wait_seconds: int | None = None
    admission_token: str | None = None
    admitted_until: datetime | None = None
    units: int = 0
    purchased: int = 0
    paused: bool = False
    poll_after_seconds: int = 5


# --------------------------------------------------------------------------------------------
# The start: the pre-queue in random order


async def _expire_lapsed(
    uow: UnitOfWork, sale_id: str, now: datetime, grace: timedelta, *, pre_queue: bool = False
) -> int:
    """Waiting places whose buyer stopped polling lapse."""
    stmt = (
        update(ENTRIES)
        .where(
            ENTRIES.c.sale_id == sale_id,
            ENTRIES.c.state == "waiting",
            ENTRIES.c.last_seen_at < now - grace,
        )
        .values(state="expired", expired_reason="lapsed", finished_at=now)
    )
    if pre_queue:
        stmt = stmt.where(ENTRIES.c.position.is_(None))
    return await uow.changed(stmt)


async def start_if_due(
    uow: UnitOfWork, sale: SaleInfo, now: datetime, grace: timedelta
) -> SaleInfo:
    """Open a scheduled sale whose start has come: lapsed pre-queue places expire, and the rest
    are numbered 1..n in a random order (a uniform shuffle from the system's randomness), so
    arriving early gains nothing over arriving at the start. Joins queue on the sale's row, so
    none slips in between. The caller holds the sale's row."""
    if sale.status != "scheduled" or now < sale.starts_at:
        return sale
    await _expire_lapsed(uow, sale.id, now, grace, pre_queue=True)
    ids = list(
        (
            await uow.execute(
                select(ENTRIES.c.id)
                .where(
                    ENTRIES.c.sale_id == sale.id,
                    ENTRIES.c.state == "waiting",
                    ENTRIES.c.position.is_(None),
                )
                .order_by(ENTRIES.c.id)
            )
        ).scalars()
    )
    _shuffle(ids)
    if ids:
        await uow.execute(
            _SET_POSITION, [{"b_id": i, "b_position": n} for n, i in enumerate(ids, 1)]
        )
    await uow.execute(
        update(SALES)
        .where(SALES.c.id == sale.id, SALES.c.status == "scheduled")
        .values(status="live", next_position=len(ids))
    )
    log.info("flash sale %s started with %d in the pre-queue", sale.id, len(ids))
    return await get_sale(uow, sale.id)


# --------------------------------------------------------------------------------------------
# Joining


async def _next_position(uow: UnitOfWork, sale_id: str) -> int:
    row = (
        await uow.execute(
            update(SALES)
            .where(SALES.c.id == sale_id)
            .values(next_position=SALES.c.next_position + 1)
            .returning(SALES.c.next_position)
        )
    ).one()
    return int(row.next_position)


async def join_queue(
    uow: UnitOfWork, keeper: Keeper, sale_id: str, customer_id: str, now: datetime | None = None
) -> EntryInfo:
    """The customer's place in the sale's waiting room, taken once: joining again (another
    tab, another device, a refresh) answers the same place and counts as a poll. Before the
    start the place is in the pre-queue (numbered at the start); after it, at the back of the
    line. A place that lapsed or whose hold ran out is taken again at the back; a purchase is
    final. 409 ``sale_ended`` once the sale is over; 404 for an unknown sale."""
    now = now or utcnow()
    sale = await start_if_due(uow, await get_sale(uow, sale_id, lock=True), now, keeper.grace)
    if sale.status_at(now) == "ended":
        raise sale_ended(sale_id)
    entry = await find_entry(uow, sale_id, customer_id)
    if entry is not None:
        if entry.state in ("admitted", "checking_out", "purchased"):
            return entry
        if entry.state == "waiting" and entry.last_seen_at >= now - keeper.grace:
            await _touch(uow, entry.id, now)
            return await _entry(uow, sale_id, customer_id)
    position = None if sale.status == "scheduled" else await _next_position(uow, sale_id)
    values = {
        "state": "waiting",
        "position": position,
        "units": 0,
        "joined_at": now,
        "last_seen_at": now,
        "admitted_at": None,
        "hold_expires_at": None,
        "finished_at": None,
        "expired_reason": None,
    }
    if entry is None:
        await uow.execute(
            insert(ENTRIES).values(
                id=new_id("fsq"), sale_id=sale_id, customer_id=customer_id, purchased=0, **values
            )
        )
    else:
        await uow.execute(update(ENTRIES).where(ENTRIES.c.id == entry.id).values(**values))
    return await _entry(uow, sale_id, customer_id)


async def _entry(uow: UnitOfWork, sale_id: str, customer_id: str) -> EntryInfo:
    entry = await find_entry(uow, sale_id, customer_id)
    if entry is None:
        raise not_in_queue(sale_id)
    return entry


async def _touch(uow: UnitOfWork, entry_id: str, now: datetime) -> None:
    await uow.execute(
        update(ENTRIES)
        .where(ENTRIES.c.id == entry_id, ENTRIES.c.state == "waiting")
        .values(last_seen_at=now)
    )


# --------------------------------------------------------------------------------------------
# The gate and the database


async def sync_gate(gate: Gate, sale: SaleInfo) -> tuple[int | None, int]:
    """Make the gate say what the database says (``allocation - sold - held``): load it when
    unknown (Redis restarted or was flushed), correct it when it differs. The caller holds the
    sale's row, so no admission is halfway: a difference is a leak (a crash between a take and
    its commit), a flush, or a return not yet given back, and the database is right in every
    case. Returns (the gate before, the database's figure); raises :class:`GateUnavailable`."""
    truth = max(0, sale.remaining)
    before = await gate.remaining(sale.id)
    # Loaded by someone else meanwhile: compare with what they loaded.
    if before is None and not await gate.load(sale.id, truth):
        before = await gate.remaining(sale.id)
    if before is not None and before != truth:
        await gate.adjust(sale.id, truth - before)
    return before, truth


async def expire_holds(uow: UnitOfWork, keeper: Keeper, sale: SaleInfo, now: datetime) -> int:
    """Admitted buyers who did not buy within their hold (or whose purchase is stuck past the
    checkout's grace) lose it: the units go back to the sale (the database here; the gate at
    its next synchronisation). Returns the units given back. The caller holds the sale's row."""
    rows = (
        await uow.execute(
            update(ENTRIES)
            .where(
                ENTRIES.c.sale_id == sale.id,
                or_(
                    and_(ENTRIES.c.state == "admitted", ENTRIES.c.hold_expires_at <= now),
                    and_(
                        ENTRIES.c.state == "checking_out",
                        ENTRIES.c.hold_expires_at <= now - keeper.checkout_grace,
                    ),
                ),
            )
            .values(state="expired", expired_reason="hold_expired", finished_at=now)
            .returning(ENTRIES.c.units)
        )
    ).all()
    units = int(sum(r.units for r in rows))
    if units:
        await uow.execute(
            update(SALES).where(SALES.c.id == sale.id).values(held=SALES.c.held - units)
        )
    return units


async def _take_pace(keeper: Keeper, sale: SaleInfo, wanted: int) -> int:
    """How many of ``wanted`` buyers the sale's pace lets in now (one token each)."""
    rate = pace_rate(sale.admission_rate)
    granted = 0
    for _ in range(wanted):
        allowed, _wait = await keeper.pace.take(
            f"flashsale:pace:{sale.id}", rate.capacity, rate.refill_per_second
        )
        if not allowed:
            break
        granted += 1
    return granted


async def admit_due(
    uow: UnitOfWork, keeper: Keeper, sale_id: str, now: datetime | None = None
) -> PassResult:
    """One admission pass over the sale: start it if due, return the units of holds that ran
    out, let lapsed places go, then admit the next buyers in queue order, as many as the pace
    allows and the gate has units for (each up to the per-customer limit). Holds the sale's
    row throughout; takes from the gate before the database records the admission, so a crash
    in between leaves the gate low (repaired at the next pass), never high. Gate unreachable:
    nobody is admitted (``paused``), nothing fails."""
    now = now or utcnow()
    sale = await start_if_due(uow, await get_sale(uow, sale_id, lock=True), now, keeper.grace)
    if sale.status != "live" or now >= sale.ends_at:
        return PassResult()
    returned = await expire_holds(uow, keeper, sale, now)
    lapsed = await _expire_lapsed(uow, sale.id, now, keeper.grace)
    if returned:
        sale = await get_sale(uow, sale.id)
    if sale.remaining <= 0:
        return PassResult(lapsed=lapsed, returned=returned)
    candidates = (
        await uow.execute(
            select(ENTRIES.c.id, ENTRIES.c.position)
            .where(
                ENTRIES.c.sale_id == sale.id,
                ENTRIES.c.state == "waiting",
                ENTRIES.c.position.is_not(None),
            )
            .order_by(ENTRIES.c.position)
            .limit(min(MAX_BATCH, sale.remaining))
        )
    ).all()
    if not candidates:
        return PassResult(lapsed=lapsed, returned=returned)
    try:
        await sync_gate(keeper.gate, sale)
        let_in = await _take_pace(keeper, sale, len(candidates))
        taken = await keeper.gate.take(sale.id, let_in * sale.per_customer_limit) if let_in else 0
    except (GateUnavailable, RedisError) as exc:
        log.warning("flash sale %s: admissions paused, the gate is unreachable: %s", sale.id, exc)
        return PassResult(lapsed=lapsed, returned=returned, paused=True)
    taken = taken or 0
    admitted: list[tuple[str, int, int]] = []  # (entry id, position, units)
    # Never more than the database has: a return given back by another process between the
    # synchronisation and the take would make the gate say too much for a moment. What is
    # taken beyond is not given back: the gate stays low until the next synchronisation.
    left = min(taken, sale.remaining)
    for entry_id, position in candidates[:let_in]:
        if left <= 0:
            break
        units = min(sale.per_customer_limit, left)
        admitted.append((entry_id, position, units))
        left -= units
    if not admitted:
        return PassResult(lapsed=lapsed, returned=returned)
    try:
        await _record_admissions(uow, keeper, sale, admitted, now)
    except BaseException:
        await _give_back_quietly(keeper.gate, sale.id, sum(u for _, _, u in admitted))
        raise
    return PassResult(admitted=len(admitted), lapsed=lapsed, returned=returned)


def hold_until(keeper: Keeper, now: datetime) -> datetime:
    # Whole seconds: the admission token carries the expiry in Unix seconds.
    return (now + keeper.hold).replace(microsecond=0)


async def _record_admissions(
    uow: UnitOfWork,
    keeper: Keeper,
    sale: SaleInfo,
    admitted: list[tuple[str, int, int]],
    now: datetime,
) -> None:
    until = hold_until(keeper, now)
    total = sum(units for _, _, units in admitted)
    await uow.execute(
        _ADMIT,
        [{"b_id": i, "b_units": u, "b_now": now, "b_until": until} for i, _, u in admitted],
    )
    # The database's own guard: never more held and sold than set aside.
    changed = await uow.changed(
        update(SALES)
        .where(SALES.c.id == sale.id, SALES.c.sold + SALES.c.held + total <= SALES.c.allocation)
        .values(
            held=SALES.c.held + total,
            admissions=SALES.c.admissions + len(admitted),
            served_through=max(sale.served_through, max(p for _, p, _ in admitted)),
        )
    )
    if changed != 1:  # pragma: no cover - the gate was synchronised under the sale's lock
        raise RuntimeError(f"flash sale {sale.id}: the gate admitted more than remains")


async def _give_back_quietly(gate: Gate, sale_id: str, units: int) -> None:
    if units <= 0:
        return
    try:
        await gate.give_back(sale_id, units)
    except (GateUnavailable, RedisError):
        log.warning("flash sale %s: %d unit(s) not given back to the gate", sale_id, units)


# --------------------------------------------------------------------------------------------
# What a polling buyer is told


def _lapsed(entry: EntryInfo, now: datetime, grace: timedelta) -> bool:
    return entry.state == "waiting" and entry.last_seen_at < now - grace


async def queue_state(
    uow: UnitOfWork,
    keeper: Keeper,
    sale_id: str,
    customer_id: str,
    now: datetime | None = None,
    *,
    paused: bool = False,
) -> QueueState:
    """The buyer's state in the sale's waiting room, and a poll: a waiting buyer's presence is
    recorded (a few times per grace period at most, not on every poll). 404 ``not_in_queue``
    without a place, 404 for an unknown sale."""
    now = now or utcnow()
    sale = await get_sale(uow, sale_id)
    entry = await find_entry(uow, sale_id, customer_id)
    if entry is None:
        raise not_in_queue(sale_id)
    if (
        entry.state == "waiting"
        and not _lapsed(entry, now, keeper.grace)
        and now - entry.last_seen_at >= keeper.grace / 4
    ):
        await _touch(uow, entry.id, now)
    return describe(keeper, sale, entry, now, paused=paused)


def describe(
    keeper: Keeper, sale: SaleInfo, entry: EntryInfo, now: datetime, *, paused: bool = False
) -> QueueState:
    status = sale.status_at(now)
    base = QueueState(
        sale_id=sale.id,
        state="expired",
        sale_status=status,
        starts_at=sale.starts_at,
        ends_at=sale.ends_at,
        position=entry.position,
        purchased=entry.purchased,
    )
    if entry.state == "purchased":
        return replace(base, state="purchased")
    if entry.state == "expired" or _lapsed(entry, now, keeper.grace):
        return base
    if entry.state in ("admitted", "checking_out"):
        until = entry.hold_expires_at
        if (
            status != "ended"
            and until is not None
            and (entry.state == "checking_out" or now < until)
        ):
            token = make_token(keeper.secret_key, sale.id, entry.customer_id, until)
            return replace(
                base,
                state="admitted",
                admission_token=token,
                admitted_until=until,
                units=entry.units,
            )
        return base
    if status == "ended" or sale.sold >= sale.allocation:
        return replace(base, state="sold_out")
    waiting = replace(
        base,
        state="waiting",
        paused=paused,
        poll_after_seconds=max(1, min(10, math.ceil(keeper.grace.total_seconds() / 6))),
    )
    if entry.position is None:  # the pre-queue: numbered at the start
        return waiting
    ahead = max(0, entry.position - sale.served_through - 1)
    return replace(
        waiting,
        ahead=ahead,
        estimated_wait_seconds=math.ceil(ahead * 60 / sale.admission_rate),
    )
