"""Returns in a marketplace: whose goods come back, whose part each refund belongs to, and what
a seller sees of its returns.

A return names order lines; each line is one seller's (``orders.line_parts``: its seller and its
order part), so one request may send back the goods of several sellers. It stays one request
for the customer and staff (one parcel, one decision, one refund from the order's single
payment), and its money is split **per part** when it is refunded (:func:`refund_by_part`):
each part gets its own lines' amounts (fixed at receipt) and, when the shipping is refunded
(the order is then fully returned), its own parcel's shipping. The parts' shares add up to the
refund exactly. ``RefundIssued`` carries them, and the marketplace records each seller part's
share as a refund of that part's sale in its ledger.

Sellers read their returns (:func:`seller_returns`): only the returns with lines of theirs, and
of those only their lines and their share of the refund. The shop's staff decide, receive and
refund every return (the goods come back to the shop's address); the seller's page is
read-only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from mercato.db import UnitOfWork
from mercato.orders import service as orders
from mercato.problems import validation_problem
from mercato.returns.models import RETURN_STATUSES
from mercato.returns.requests import (
    LINES,
    MAX_PAGE,
    REQUESTS,
    ReturnInfo,
    infos,
)


@dataclass(frozen=True, slots=True)
class PartRefund:
    """One order part's share of a return's refund."""

    part_id: str
    seller_id: str
    amount: int


def split_refund(found: ReturnInfo, parts: Sequence[orders.OrderPartInfo]) -> list[PartRefund]:
    """The refund of ``found`` by order part (``parts``: the order's): each part's returned
    lines' amounts, plus its parcel's shipping when the shipping was refunded. By part id;
    parts with nothing refunded left out."""
    amounts: dict[str, int] = defaultdict(int)
    sellers: dict[str, str] = {p.id: p.seller_id for p in parts}
    for line in found.lines:
        if line.part_id is not None:
            amounts[line.part_id] += line.amount
            sellers.setdefault(line.part_id, line.seller_id)
    if found.refund_shipping:
        for part in parts:
            amounts[part.id] += part.shipping
    return [PartRefund(p, sellers[p], a) for p, a in sorted(amounts.items()) if a > 0]


async def refund_by_part(uow: UnitOfWork, found: ReturnInfo) -> list[PartRefund]:
    """:func:`split_refund` with the order's parts (read only when the shipping was refunded:
    the lines name their parts)."""
    parts: list[orders.OrderPartInfo] = []
    if found.refund_shipping:
        order = await orders.get_order(uow, found.order_id)
        parts = list(order.parts) if order is not None else []
    return split_refund(found, parts)


@dataclass(frozen=True, slots=True)
class SellerReturnLine:
    order_line_id: str
    sku: str
    title: str
    quantity: int
    disposition: str | None
    amount: int


@dataclass(frozen=True, slots=True)
class SellerReturn:
    """A return as its seller sees it: its own lines and its share of the refund only."""

    id: str
    order_id: str
    part_id: str | None
    status: str
    reason: str
    currency: str
    refund_amount: int
    """The seller's part's share (0 until the goods are received)."""
    created_at: datetime
    refunded_at: datetime | None
    lines: tuple[SellerReturnLine, ...]
    other_sellers: bool
    """The same return also sends back another seller's (or the shop's) goods."""


async def _for_seller(uow: UnitOfWork, found: ReturnInfo, seller_id: str) -> SellerReturn:
    order = await orders.get_order(uow, found.order_id)
    ordered = {line.id: line for line in order.lines} if order is not None else {}
    own = [line for line in found.lines if line.seller_id == seller_id]
    part_id = next((line.part_id for line in own if line.part_id), None)
    shares = split_refund(found, order.parts if order is not None else ())
    share = sum(r.amount for r in shares if r.part_id == part_id)
    return SellerReturn(
        id=found.id,
        order_id=found.order_id,
        part_id=part_id,
        status=found.status,
        reason=found.reason,
        currency=found.currency,
        refund_amount=share,
        created_at=found.created_at,
        refunded_at=found.refunded_at,
        lines=tuple(
            SellerReturnLine(
                order_line_id=line.order_line_id,
                sku=ordered[line.order_line_id].sku if line.order_line_id in ordered else "",
                title=ordered[line.order_line_id].title if line.order_line_id in ordered else "",
                quantity=line.quantity,
                disposition=line.disposition,
                amount=line.amount,
            )
            for line in own
        ),
        other_sellers=len(own) < len(found.lines),
    )


async def seller_returns(
    uow: UnitOfWork,
    seller_id: str,
    *,
    status: str | None = None,
    limit: int = 50,
    before: datetime | None = None,
) -> list[SellerReturn]:
    """The returns sending back goods of ``seller_id``, newest first (``limit`` of them created
    before ``before`` when given); another seller's return is never among them."""
    if not 1 <= limit <= MAX_PAGE:
        raise validation_problem("limit", f"must be between 1 and {MAX_PAGE}")
    theirs = select(LINES.c.request_id).where(
        LINES.c.order_line_id.in_(orders.seller_lines_query(seller_id))
    )
    query = select(REQUESTS).where(REQUESTS.c.id.in_(theirs))
    if status is not None:
        if status not in RETURN_STATUSES:
            raise validation_problem("status", f"must be one of {', '.join(RETURN_STATUSES)}")
        query = query.where(REQUESTS.c.status == status)
    if before is not None:
        query = query.where(REQUESTS.c.created_at < before)
    rows = (
        await uow.execute(
            query.order_by(REQUESTS.c.created_at.desc(), REQUESTS.c.id.desc()).limit(limit)
        )
    ).all()
    return [await _for_seller(uow, found, seller_id) for found in await infos(uow, rows)]


async def seller_return(uow: UnitOfWork, seller_id: str, return_id: str) -> SellerReturn | None:
    """One return as ``seller_id`` sees it; ``None`` when unknown or none of its lines are the
    seller's (callers answer 404 either way)."""
    rows = (await uow.execute(select(REQUESTS).where(REQUESTS.c.id == return_id))).all()
    found = await infos(uow, rows)
    if not found or seller_id not in found[0].seller_ids:
        return None
    return await _for_seller(uow, found[0], seller_id)
