"""The waiting room: one place per customer per sale, the pre-queue shuffled at the start,
first come first served after it, places that lapse when their buyer stops polling, and the
admission pass that lets buyers in, in queue order, at the sale's rate, while units remain.

The line itself lives in the gate (:class:`~mercato.flashsale.gate.Place`; Redis in
production, memory embedded): joining and polling are one gate call each and no database
transaction, whatever the crowd. The database records each admission (in the admission pass,
one transaction per pass for the whole batch) and everything after it: holds, purchases,
returns. The gate's copy of those states is written after each commit and repaired from the
database by the reconciliation.

Who "left": a waiting buyer whose last poll (or join) is older than the grace period. Their
place lapses (``expired``); joining again puts them at the back of the line.

Locking order, to keep PostgreSQL free of deadlocks: the sale's row first, then its entries.
Every pass that takes units from the gate holds the sale's row, so the gate, synchronised with
the database under that lock, is exact whenever units are taken, and passes take turns.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

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
from mercato.flashsale.gate import WAITING, Called, Gate, GateUnavailable, Place, left_state
from mercato.flashsale.keeper import MAX_BATCH, Keeper, pace_rate
from mercato.flashsale.tokens import make_token
from mercato.ids import new_id

log = logging.getLogger("mercato.flashsale")
_shuffle = random.SystemRandom().shuffle


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


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _moment(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def open_line(keeper: Keeper, sale: SaleInfo, now: datetime) -> None:
    """Open the sale's line in the gate if it is not (the start, or a Redis that lost it):
    lapsed pre-queue places go, and the rest are numbered after the last place admitted in a
    random order (a uniform shuffle from the system's randomness), so arriving early gains
    nothing over arriving at the start. Raises :class:`GateUnavailable`."""
    gate = keeper.gate
    if await gate.started(sale.id):
        return
    await gate.lapse(sale.id, _ts(now), keeper.grace.total_seconds())
    order = await gate.pre_queue(sale.id)
    _shuffle(order)
    opened = await gate.open_line(sale.id, order, sale.served_through)
    log.info("flash sale %s: line opened with %d in the pre-queue", sale.id, opened)


async def start_if_due(uow: UnitOfWork, keeper: Keeper, sale: SaleInfo, now: datetime) -> SaleInfo:
    """Open a scheduled sale whose start has come (see :func:`open_line`), and the line of a
    live one whose gate lost it. The caller holds the sale's row. The gate unreachable: the
    sale starts all the same, its line opens at a later pass."""
    if sale.status == "scheduled" and now >= sale.starts_at:
        await uow.execute(
            update(SALES)
            .where(SALES.c.id == sale.id, SALES.c.status == "scheduled")
            .values(status="live")
        )
        sale = await get_sale(uow, sale.id)
        log.info("flash sale %s started", sale.id)
    if sale.status == "live" and now < sale.ends_at:
        try:
            await open_line(keeper, sale, now)
        except (GateUnavailable, RedisError) as exc:
            log.warning("flash sale %s: line not opened, the gate is unreachable: %s", sale.id, exc)
    return sale


# --------------------------------------------------------------------------------------------
# Joining


def unrecorded(customer_id: str, now: datetime) -> Place:
    """What a buyer is told while the gate cannot be reached: waiting, with no place yet."""
    ts = _ts(now)
    return Place(customer_id, WAITING, None, ts, ts, 0)


async def join_queue(
    uow: UnitOfWork, keeper: Keeper, sale_id: str, customer_id: str, now: datetime | None = None
) -> Place:
    """The customer's place in the sale's waiting room, taken once, in the gate: joining
    again (another tab, another device, a refresh) answers the same place and counts as a
    poll. Before the start the place is in the pre-queue (numbered at the start); after it, at
    the back of the line. A place that lapsed or whose hold ran out is taken again at the back;
    a purchase is final. The first join after the start opens the sale. 409 ``sale_ended`` once
    the sale is over; 404 for an unknown sale. The gate unreachable: an unrecorded place
    (admissions are paused; the buyer joins again)."""
    now = now or utcnow()
    sale = await get_sale(uow, sale_id)
    if sale.status == "scheduled" and now >= sale.starts_at:
        sale = await start_if_due(uow, keeper, await get_sale(uow, sale_id, lock=True), now)
    place, _ = await enter(keeper, sale, customer_id, now)
    return place


async def enter(
    keeper: Keeper, sale: SaleInfo, customer_id: str, now: datetime
) -> tuple[Place, bool]:
    """:func:`join_queue` once the sale is read: the gate only. The place, and whether the
    gate was unreachable (the place is then unrecorded)."""
    if sale.status_at(now) == "ended":
        raise sale_ended(sale.id)
    try:
        grace = keeper.grace.total_seconds()
        return await keeper.gate.enter(sale.id, customer_id, _ts(now), grace), False
    except (GateUnavailable, RedisError) as exc:
        log.warning("flash sale %s: a join not recorded, the gate is unreachable: %s", sale.id, exc)
        return unrecorded(customer_id, now), True


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
            .returning(ENTRIES.c.units, ENTRIES.c.customer_id, ENTRIES.c.position)
        )
    ).all()
    units = int(sum(r.units for r in rows))
    if units:
        await uow.execute(
            update(SALES).where(SALES.c.id == sale.id).values(held=SALES.c.held - units)
        )
    settle_after_commit(
        uow,
        keeper.gate,
        sale.id,
        {r.customer_id: left_state("expired", r.position, reason="hold_expired") for r in rows},
    )
    return units


def settle_after_commit(uow: UnitOfWork, gate: Gate, sale_id: str, states: dict[str, str]) -> None:
    """Tell the gate what became of these buyers once the database has (quietly: the
    reconciliation repairs a gate that missed it)."""
    if not states:
        return

    async def settle() -> None:
        try:
            await gate.settle(sale_id, states)
        except (GateUnavailable, RedisError) as exc:
            log.warning("flash sale %s: %d place(s) not updated: %s", sale_id, len(states), exc)

    uow.after_commit(settle)


async def _take_pace(keeper: Keeper, sale: SaleInfo, wanted: int) -> int:
    """How many of ``wanted`` buyers the sale's pace lets in now (one token each), in at most
    two calls: all of them, else as many as the bucket holds."""
    rate = pace_rate(sale.admission_rate)
    key = f"flashsale:pace:{sale.id}"
    wanted = min(wanted, rate.capacity)
    if wanted <= 0:
        return 0
    allowed, wait = await keeper.pace.take(key, rate.capacity, rate.refill_per_second, wanted)
    if allowed:
        return wanted
    # Refused: ``wait`` says how far short the bucket is.
    there = math.floor(wanted - wait * rate.refill_per_second + 1e-9)
    there = min(wanted - 1, there)
    if there <= 0:
        return 0
    allowed, _ = await keeper.pace.take(key, rate.capacity, rate.refill_per_second, there)
    return there if allowed else 0


async def admit_due(
    uow: UnitOfWork, keeper: Keeper, sale_id: str, now: datetime | None = None
) -> PassResult:
    """One admission pass over the sale, in one transaction: start it if due, return the units
    of holds that ran out, let lapsed places go, then admit the next buyers in queue order, as
    many as the pace allows and the gate has units for (each up to the per-customer limit).
    Holds the sale's row throughout (so passes of every process take turns); takes units from
    the gate and buyers from the line before the database records the admissions (in a few
    statements for the whole batch), and gives both back if it cannot: a crash in between
    leaves the gate low and the buyers ``admitting`` (the reconciliation puts them back), never
    an oversell. Gate unreachable: nobody is admitted (``paused``), nothing fails."""
    now = now or utcnow()
    gate = keeper.gate
    sale = await start_if_due(uow, keeper, await get_sale(uow, sale_id, lock=True), now)
    if sale.status != "live" or now >= sale.ends_at:
        return PassResult()
    returned = await expire_holds(uow, keeper, sale, now)
    if returned:
        sale = await get_sale(uow, sale.id)
    try:
        lapsed = await gate.lapse(sale.id, _ts(now), keeper.grace.total_seconds())
        if sale.remaining <= 0:
            return PassResult(lapsed=lapsed, returned=returned)
        wanted = min(MAX_BATCH, sale.remaining, await gate.waiting(sale.id))
        if wanted <= 0:
            return PassResult(lapsed=lapsed, returned=returned)
        await sync_gate(gate, sale)
        let_in = await _take_pace(keeper, sale, wanted)
        taken = await gate.take(sale.id, let_in * sale.per_customer_limit) if let_in else 0
    except (GateUnavailable, RedisError) as exc:
        log.warning("flash sale %s: admissions paused, the gate is unreachable: %s", sale.id, exc)
        return PassResult(returned=returned, paused=True)
    # Never more than the database has: a return given back by another process between the
    # synchronisation and the take would make the gate say too much for a moment. What is
    # taken beyond is not given back: the gate stays low until the next synchronisation.
    left = min(taken or 0, sale.remaining)
    limit = sale.per_customer_limit
    try:
        called = await gate.call(sale.id, min(let_in, -(-left // limit)))
    except (GateUnavailable, RedisError) as exc:
        await _give_back_quietly(gate, sale.id, taken or 0)
        log.warning("flash sale %s: admissions paused, the gate is unreachable: %s", sale.id, exc)
        return PassResult(lapsed=lapsed, returned=returned, paused=True)
    admitted: list[tuple[Called, int]] = []
    for found in called:
        units = min(limit, left)
        admitted.append((found, units))
        left -= units
    if not admitted:
        return PassResult(lapsed=lapsed, returned=returned)
    try:
        recorded = await _record_admissions(uow, keeper, sale, admitted, now)
    except BaseException:
        await _give_back_quietly(gate, sale.id, sum(u for _, u in admitted))
        try:
            await gate.requeue(sale.id, called)
        except (GateUnavailable, RedisError):
            log.warning("flash sale %s: %d buyer(s) not put back in line", sale.id, len(called))
        raise
    return PassResult(admitted=recorded, lapsed=lapsed, returned=returned)


def hold_until(keeper: Keeper, now: datetime) -> datetime:
    # Whole seconds: the admission token carries the expiry in Unix seconds.
    return (now + keeper.hold).replace(microsecond=0)


async def _record_admissions(
    uow: UnitOfWork,
    keeper: Keeper,
    sale: SaleInfo,
    admitted: list[tuple[Called, int]],
    now: datetime,
) -> int:
    """The admissions in the database, for the whole batch: one read of the buyers' earlier
    places, one insert of the new ones, one update of those taken again (a place that
    lapsed, or a hold that ran out), one of the sale's counters. A buyer the database knows
    as admitted or as having bought (a gate that lost its record of them) is not admitted
    again: the database is the record. How many were admitted."""
    until = hold_until(keeper, now)
    ids = [c.customer_id for c, _ in admitted]
    earlier = {
        r.customer_id: (r.id, r.state, r.position, r.units, r.purchased, r.hold_expires_at)
        for r in await uow.execute(
            select(
                ENTRIES.c.id,
                ENTRIES.c.customer_id,
                ENTRIES.c.state,
                ENTRIES.c.position,
                ENTRIES.c.units,
                ENTRIES.c.purchased,
                ENTRIES.c.hold_expires_at,
            ).where(ENTRIES.c.sale_id == sale.id, ENTRIES.c.customer_id.in_(ids))
        )
    }
    fresh: list[dict[str, object]] = []
    again: list[dict[str, object]] = []
    states: dict[str, str] = {}
    for called, units in admitted:
        c = called.customer_id
        values = {
            "b_position": called.position,
            "b_units": units,
            "b_joined": _moment(called.joined_at) if called.joined_at else now,
            "b_now": now,
            "b_until": until,
        }
        found = earlier.get(c)
        if found is None:
            fresh.append({**values, "b_id": new_id("fsq"), "b_sale": sale.id, "b_customer": c})
        elif found[1] == "expired":
            again.append({**values, "b_id": found[0]})
        else:  # the database knows better than the gate
            _, state, position, held, bought, expiry = found
            states[c] = left_of_row(state, position, held, bought, expiry)
            continue
        states[c] = left_state(
            "admitted", called.position, units=units, until=int(until.timestamp())
        )
    if fresh:
        await uow.execute(_INSERT_ADMITTED, fresh)
    if again:
        await uow.execute(_ADMIT_AGAIN, again)
    rows = fresh + again
    if rows:
        total = sum(int(str(r["b_units"])) for r in rows)
        served = max(int(str(r["b_position"])) for r in rows)
        # The database's own guard: never more held and sold than set aside.
        changed = await uow.changed(
            update(SALES)
            .where(SALES.c.id == sale.id, SALES.c.sold + SALES.c.held + total <= SALES.c.allocation)
            .values(
                held=SALES.c.held + total,
                admissions=SALES.c.admissions + len(rows),
                served_through=max(sale.served_through, served),
            )
        )
        if changed != 1:  # pragma: no cover - the gate was synchronised under the sale's lock
            raise RuntimeError(f"flash sale {sale.id}: the gate admitted more than remains")
    settle_after_commit(uow, keeper.gate, sale.id, states)
    return len(rows)


def left_of_row(
    state: str, position: int | None, units: int, purchased: int, expiry: datetime | None
) -> str:
    until = int(expiry.timestamp()) if expiry is not None else None
    return left_state(state, position, units=units, until=until, purchased=purchased)


_INSERT_ADMITTED = insert(ENTRIES).values(
    id=bindparam("b_id"),
    sale_id=bindparam("b_sale"),
    customer_id=bindparam("b_customer"),
    state="admitted",
    position=bindparam("b_position"),
    units=bindparam("b_units"),
    purchased=0,
    joined_at=bindparam("b_joined"),
    last_seen_at=bindparam("b_now"),
    admitted_at=bindparam("b_now"),
    hold_expires_at=bindparam("b_until"),
)
_ADMIT_AGAIN = (
    update(ENTRIES)
    .where(ENTRIES.c.id == bindparam("b_id"), ENTRIES.c.state == "expired")
    .values(
        state="admitted",
        position=bindparam("b_position"),
        units=bindparam("b_units"),
        joined_at=bindparam("b_joined"),
        last_seen_at=bindparam("b_now"),
        admitted_at=bindparam("b_now"),
        hold_expires_at=bindparam("b_until"),
        finished_at=None,
        expired_reason=None,
    )
)


async def _give_back_quietly(gate: Gate, sale_id: str, units: int) -> None:
    if units <= 0:
        return
    try:
        await gate.give_back(sale_id, units)
    except (GateUnavailable, RedisError):
        log.warning("flash sale %s: %d unit(s) not given back to the gate", sale_id, units)


# --------------------------------------------------------------------------------------------
# What a polling buyer is told


async def find_place(
    uow: UnitOfWork | None, keeper: Keeper, sale_id: str, customer_id: str, now: datetime
) -> tuple[Place | None, bool]:
    """The buyer's place as the gate knows it, marked seen (a few times per grace period at
    most, not on every poll); and whether the gate was unreachable, in which case the
    database's record answers (given ``uow``) for a buyer admitted, else an unrecorded place."""
    grace = keeper.grace.total_seconds()
    try:
        return await keeper.gate.place(sale_id, customer_id, _ts(now), grace, grace / 4), False
    except (GateUnavailable, RedisError):
        pass
    entry = await find_entry(uow, sale_id, customer_id) if uow is not None else None
    if entry is None:
        return unrecorded(customer_id, now), True
    return place_of(entry), True


def place_of(entry: EntryInfo) -> Place:
    """The gate's view of a place the database records."""
    until = int(entry.hold_expires_at.timestamp()) if entry.hold_expires_at else None
    return Place(
        customer_id=entry.customer_id,
        state=entry.state,
        position=entry.position,
        joined_at=_ts(entry.joined_at),
        last_seen=_ts(entry.last_seen_at),
        served_through=0,
        units=entry.units,
        until=until,
        purchased=entry.purchased,
        reason=entry.expired_reason,
    )


async def queue_state(
    uow: UnitOfWork,
    keeper: Keeper,
    sale_id: str,
    customer_id: str,
    now: datetime | None = None,
    *,
    paused: bool = False,
) -> QueueState:
    """The buyer's state in the sale's waiting room, and a poll (see :func:`find_place`).
    404 ``not_in_queue`` without a place, 404 for an unknown sale."""
    now = now or utcnow()
    sale = await get_sale(uow, sale_id)
    place, unreachable = await find_place(uow, keeper, sale_id, customer_id, now)
    if place is None:
        raise not_in_queue(sale_id)
    return describe(keeper, sale, place, now, paused=paused or unreachable)


def _lapsed(place: Place, now: datetime, grace: timedelta) -> bool:
    return place.state == WAITING and place.last_seen < _ts(now - grace)


def describe(
    keeper: Keeper, sale: SaleInfo, place: Place, now: datetime, *, paused: bool = False
) -> QueueState:
    status = sale.status_at(now)
    base = QueueState(
        sale_id=sale.id,
        state="expired",
        sale_status=status,
        starts_at=sale.starts_at,
        ends_at=sale.ends_at,
        position=place.position,
        purchased=place.purchased,
    )
    if place.state == "purchased":
        return replace(base, state="purchased")
    over = status == "ended" or sale.sold >= sale.allocation
    lapsed = _lapsed(place, now, keeper.grace) or place.reason == "lapsed"
    if over and lapsed:
        # Nothing left to wait for: a place that lapsed meanwhile would join a sold-out sale.
        return replace(base, state="sold_out")
    if place.state == "expired" or lapsed:
        return base
    if place.state in ("admitted", "checking_out"):
        until = _moment(place.until) if place.until is not None else None
        if (
            status != "ended"
            and until is not None
            and (place.state == "checking_out" or now < until)
        ):
            token = make_token(keeper.secret_key, sale.id, place.customer_id, until)
            return replace(
                base,
                state="admitted",
                admission_token=token,
                admitted_until=until,
                units=place.units,
            )
        return base
    if over:
        return replace(base, state="sold_out")
    # Waiting (or being admitted by a pass right now).
    waiting = replace(base, state="waiting", paused=paused, poll_after_seconds=slow_poll(keeper))
    if place.position is None:  # the pre-queue: numbered at the start, asked again then
        to_start = math.ceil((sale.starts_at - now).total_seconds())
        return replace(
            waiting, poll_after_seconds=max(1, min(waiting.poll_after_seconds, to_start))
        )
    ahead = max(0, place.position - place.served_through - 1)
    wait = math.ceil(ahead * 60 / sale.admission_rate)
    return replace(
        waiting,
        ahead=ahead,
        estimated_wait_seconds=wait,
        poll_after_seconds=poll_after(keeper, sale, ahead, wait),
    )


def slow_poll(keeper: Keeper) -> int:
    """How often a buyer with no admission in sight asks again: often enough to keep the place
    (several polls within the grace period), at most every 10 s."""
    return max(1, min(10, math.ceil(keeper.grace.total_seconds() / 6)))


def far_poll(keeper: Keeper) -> int:
    """How often a buyer whom not even every held unit coming back would reach asks again:
    three times within the grace period (a missed poll or two still keeps the place), at most
    every 20 s, and never more often than :func:`slow_poll`."""
    return max(slow_poll(keeper), min(20, math.floor(keeper.grace.total_seconds() / 3)))


def poll_after(keeper: Keeper, sale: SaleInfo, ahead: int, wait: int) -> int:
    """When a waiting buyer should ask again: soon (when the pace would reach them) if the
    units left would reach them too, else slowly. In a rush the crowd behind the allocation
    waits only for units coming back (holds running out), and polling every second would cost
    the shop thousands of requests a second for nothing, while the buyers at the front, who
    will be admitted at the next pass, hear of it within a second. Those whom even every held
    unit coming back would not reach (most of a rush's crowd, once the allocation is held) ask
    more slowly still: in a 5,000-buyer rush for 500 units they made most of the requests."""
    wanted = ahead * sale.per_customer_limit
    if wanted >= max(0, sale.remaining) + sale.held:
        return far_poll(keeper)
    slow = slow_poll(keeper)
    if sale.remaining <= 0 or wanted >= sale.remaining:
        return slow
    return max(1, min(slow, wait))
