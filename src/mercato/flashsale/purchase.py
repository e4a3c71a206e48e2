"""What the checkout calls for a buyer admitted to a flash sale.

1. :func:`take_admitted_unit` — the admission token is checked (signature, expiry, and the
   buyer's place admitted with exactly that expiry) and the place moves to ``checking_out``:
   its units can no longer run out under the buyer while the purchase runs (a purchase stuck
   past the checkout's grace does lose them, and :func:`mark_purchased` then refuses).
2. :func:`mark_purchased` — the units bought are sold out of the sale's inventory hold, in the
   checkout's transaction; units held but not bought go back to the gate.
3. :func:`return_unit` — the purchase failed or was abandoned: the units go back to the gate for
   the next buyer in line.

Each locks the sale's row first, then the buyer's place (the module's locking order), but for
:func:`take_admitted_unit`, which locks the buyer's place only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, update

from mercato.db import UnitOfWork, utcnow
from mercato.flashsale.common import (
    ENTRIES,
    SALE_VARIANTS,
    SALES,
    EntryInfo,
    find_entry,
    get_sale,
    hold_owner,
    not_in_queue,
    sale_ended,
)
from mercato.flashsale.gate import Gate, left_state
from mercato.flashsale.queue import _give_back_quietly, left_of_row, settle_after_commit
from mercato.flashsale.tokens import invalid_admission, read_token
from mercato.inventory import service as inventory
from mercato.problems import Problem, validation_problem

_SELL_VARIANT = (
    update(SALE_VARIANTS)
    .where(
        SALE_VARIANTS.c.sale_id == bindparam("b_sale"),
        SALE_VARIANTS.c.variant_id == bindparam("b_variant"),
        SALE_VARIANTS.c.sold + bindparam("b_q") <= SALE_VARIANTS.c.allocation,
    )
    .values(sold=SALE_VARIANTS.c.sold + bindparam("b_q"))
)


@dataclass(frozen=True, slots=True)
class AdmittedUnits:
    """What an admitted buyer may buy: up to ``units`` of the sale's variants at its price."""

    sale_id: str
    customer_id: str
    units: int
    price: int
    currency: str
    variant_ids: tuple[str, ...]
    hold_expires_at: datetime


@dataclass(frozen=True, slots=True)
class Purchase:
    sale_id: str
    customer_id: str
    lines: tuple[tuple[str, int], ...]  # (variant_id, units) sold
    returned: int  # units held but not bought, back to the gate


def not_admitted(sale_id: str) -> Problem:
    return Problem(
        409,
        "not_admitted",
        f"You hold no units of flash sale {sale_id!r} (never admitted, or the hold ran out)",
        sale_id=sale_id,
    )


async def take_admitted_unit(
    uow: UnitOfWork,
    secret_key: str,
    token: str,
    customer_id: str,
    now: datetime | None = None,
    *,
    gate: Gate | None = None,
) -> AdmittedUnits:
    """Start a purchase with an admission token (``gate``, if given, hears of it after the
    commit). 403 ``invalid_admission`` (not this shop's,
    altered, or another customer's) or ``admission_expired``; 409 ``not_admitted`` when the
    place no longer holds units under this token; 409 ``sale_ended``. Idempotent: a purchase
    already started with this token is answered again."""
    now = now or utcnow()
    admission = read_token(secret_key, token, now)
    if admission.customer_id != customer_id:
        raise invalid_admission()
    # Only the buyer's place is locked, not the sale's row: purchases start side by side, and
    # never wait for a batch of orders or an admission pass, which hold the sale's row until
    # they commit. The move to ``checking_out`` is guarded instead: a pass that expires the
    # hold, or an end, that commits first leaves nothing to move (409), and one that comes
    # after finds the place ``checking_out`` (an end still takes it back; the order then fails
    # on the ended sale and the purchase is undone).
    sale = await get_sale(uow, admission.sale_id, variants=True)
    if sale.status_at(now) == "ended":
        raise sale_ended(sale.id)
    entry = await _admitted_entry(uow, sale.id, customer_id, admission.expires_at)
    if entry.state == "admitted":
        moved = await uow.changed(
            update(ENTRIES)
            .where(
                ENTRIES.c.id == entry.id,
                ENTRIES.c.state == "admitted",
                ENTRIES.c.hold_expires_at == admission.expires_at,
            )
            .values(state="checking_out")
        )
        if moved != 1:  # changed meanwhile: another tab's purchase started it, or it ran out
            entry = await _admitted_entry(uow, sale.id, customer_id, admission.expires_at)
            if entry.state != "checking_out":
                raise not_admitted(sale.id)
        elif gate is not None:
            raw = left_of_row(
                "checking_out", entry.position, entry.units, entry.purchased, entry.hold_expires_at
            )
            settle_after_commit(uow, gate, sale.id, {customer_id: raw})
    return AdmittedUnits(
        sale_id=sale.id,
        customer_id=customer_id,
        units=entry.units,
        price=sale.price,
        currency=sale.currency,
        variant_ids=tuple(v.variant_id for v in sale.variants),
        hold_expires_at=admission.expires_at,
    )


async def _admitted_entry(
    uow: UnitOfWork, sale_id: str, customer_id: str, expires_at: datetime
) -> EntryInfo:
    """The buyer's place, admitted (or its purchase started) under the admission that expires
    at ``expires_at``; 409 ``not_admitted`` otherwise."""
    entry = await find_entry(uow, sale_id, customer_id)
    if (
        entry is None
        or entry.state not in ("admitted", "checking_out")
        or entry.hold_expires_at != expires_at
    ):
        raise not_admitted(sale_id)
    return entry


def _check_lines(lines: Sequence[tuple[str, int]], units: int) -> dict[str, int]:
    wanted: dict[str, int] = defaultdict(int)
    for i, (variant_id, quantity) in enumerate(lines):
        if quantity < 1:
            raise validation_problem(f"lines[{i}].quantity", "must be at least 1")
        wanted[variant_id] += quantity
    total = sum(wanted.values())
    if not 1 <= total <= units:
        raise validation_problem("lines", f"1 to {units} unit(s) in all, {total} given")
    return dict(wanted)


async def _not_purchasable(uow: UnitOfWork, sale_id: str, *, has_place: bool) -> Problem:
    """Why the buyer cannot buy: the sale is unknown (404) or ended (409 ``sale_ended``), else
    the buyer has no place (404 ``not_in_queue``) or holds nothing (409 ``not_admitted``)."""
    sale = await get_sale(uow, sale_id)
    if sale.status == "ended":
        return sale_ended(sale_id)
    return not_admitted(sale_id) if has_place else not_in_queue(sale_id)


async def _unsold(uow: UnitOfWork, sale_id: str, wanted: list[str], failed: str) -> Problem:
    """Why a variant's units could not be sold: 422 for a variant outside the sale (the first
    such line), else 409 ``variant_sold_out``."""
    sale = await get_sale(uow, sale_id, variants=True)
    known = {v.variant_id for v in sale.variants}
    for i, variant_id in enumerate(wanted):
        if variant_id not in known:
            return validation_problem(
                f"lines[{i}].variant_id", "is not in this sale", code="unknown_variant"
            )
    return Problem(
        409,
        "variant_sold_out",
        f"{failed} is sold out in this flash sale; another variant may remain",
        variant_id=failed,
    )


async def mark_purchased(
    uow: UnitOfWork,
    gate: Gate,
    sale_id: str,
    customer_id: str,
    lines: Sequence[tuple[str, int]],
    *,
    reference: str | None = None,
) -> Purchase:
    """The buyer bought ``lines`` (variant, units) of what they hold: the units are sold out of
    the sale's inventory hold (in the caller's transaction, with the order), the place becomes
    ``purchased``, and units held but not bought go back to the gate once this commits. 409
    ``not_admitted`` (the hold ran out or was returned), ``sale_ended``, ``variant_sold_out``
    (that variant's share is gone: the buyer may choose another), 422 for lines outside the
    sale or beyond the units held. A refusal may come after some of the writes: the caller's
    transaction (or savepoint), which the refusal leaves, undoes them."""
    now = utcnow()
    # The place as it was, unlocked: what to write. It is checked again, under the sale's row,
    # by the guarded update below. No read of the sale itself: in a batch of purchases every
    # read is a round trip while the batch holds the sale's row.
    entry = await find_entry(uow, sale_id, customer_id)
    if entry is None or entry.state not in ("admitted", "checking_out"):
        raise await _not_purchasable(uow, sale_id, has_place=entry is not None)
    wanted = _check_lines(lines, entry.units)
    bought = sum(wanted.values())
    # The sale's row first, as every writer of a sale takes it (the end, the admission pass).
    sold = await uow.changed(
        update(SALES)
        .where(SALES.c.id == sale_id, SALES.c.status != "ended")
        .values(sold=SALES.c.sold + bought, held=SALES.c.held - entry.units),
        {},
    )
    if sold != 1:
        raise sale_ended(sale_id)
    if (
        await uow.changed(
            update(ENTRIES)
            .where(ENTRIES.c.id == entry.id, ENTRIES.c.state.in_(("admitted", "checking_out")))
            .values(state="purchased", purchased=bought, finished_at=now),
            {},
        )
        != 1
    ):
        # The place was given up (its hold ran out) since it was read; the caller's
        # transaction (or savepoint) undoes the sale's update with the refusal.
        raise not_admitted(sale_id)
    for variant_id, quantity in sorted(wanted.items()):
        params = {"b_sale": sale_id, "b_variant": variant_id, "b_q": quantity}
        if await uow.changed(_SELL_VARIANT, params) != 1:
            raise await _unsold(uow, sale_id, list(wanted), variant_id)
        await inventory.sell_from_hold(
            uow, hold_owner(sale_id), variant_id, quantity, reason=reference
        )
    _give_back_after_commit(uow, gate, sale_id, entry.units - bought)
    raw = left_state("purchased", entry.position, purchased=bought)
    settle_after_commit(uow, gate, sale_id, {customer_id: raw})
    return Purchase(sale_id, customer_id, tuple(sorted(wanted.items())), entry.units - bought)


async def return_unit(
    uow: UnitOfWork, gate: Gate, sale_id: str, customer_id: str, *, reason: str = "returned"
) -> int:
    """The purchase failed or was abandoned: the buyer's held units go back to the gate (once
    this commits) for the next in line, and the place is ``expired`` (joining again queues at
    the back). Returns the units given back; 0 when nothing was held any more (idempotent)."""
    sale = await get_sale(uow, sale_id, lock=True)
    entry = await find_entry(uow, sale_id, customer_id)
    if entry is None or entry.state not in ("admitted", "checking_out"):
        return 0
    await uow.execute(
        update(ENTRIES)
        .where(ENTRIES.c.id == entry.id)
        .values(state="expired", expired_reason=reason[:16], finished_at=utcnow())
    )
    raw = left_state("expired", entry.position, reason=reason[:16])
    settle_after_commit(uow, gate, sale_id, {customer_id: raw})
    if sale.status == "ended":
        return 0  # the end gave every held unit back to regular stock already
    await uow.execute(
        update(SALES).where(SALES.c.id == sale_id).values(held=SALES.c.held - entry.units)
    )
    _give_back_after_commit(uow, gate, sale_id, entry.units)
    return entry.units


def _give_back_after_commit(uow: UnitOfWork, gate: Gate, sale_id: str, units: int) -> None:
    # After the commit, never before: a rollback must not leave the gate higher than the
    # database (a crash after the commit leaves it lower, which the next pass repairs).
    if units > 0:

        async def give_back() -> None:
            await _give_back_quietly(gate, sale_id, units)

        uow.after_commit(give_back)
