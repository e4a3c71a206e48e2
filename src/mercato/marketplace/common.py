"""What the marketplace's rules share: the tables, what callers see of sellers and offers, who
is asking (a seller's account sees its own seller only), and the event search follows."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, select

from mercato import events
from mercato.db import Base, UnitOfWork
from mercato.identity import service as identity
from mercato.marketplace.models import (
    HOUSE_SELLER_ID,
    CommissionLine,
    CommissionRule,
    JournalEntry,
    Offer,
    Payout,
    Posting,
    Seller,
    SellerUser,
)
from mercato.problems import Problem, not_found


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


SELLERS = _table(Seller)
SELLER_USERS = _table(SellerUser)
OFFERS = _table(Offer)
COMMISSION_RULES = _table(CommissionRule)
COMMISSION_LINES = _table(CommissionLine)
JOURNAL_ENTRIES = _table(JournalEntry)
POSTINGS = _table(Posting)
PAYOUTS = _table(Payout)

OFFERS_CHANGED = "ProductOffersChanged"
"""Published with ``product_id`` whenever what a product's buy box may pick changes (an offer,
a seller's standing): the search re-projects the product's featured price."""

HOUSE_OFFER_PREFIX = "house_"
"""The house sells every variant at the catalog's price: its offer for variant ``v`` is
``house_<v>``, with no row of its own."""


@dataclass(frozen=True, slots=True)
class Performance:
    """A seller's last computed figures over the window (rates in basis points)."""

    orders_counted: int = 0
    defect_rate_bp: int = 0
    late_shipment_rate_bp: int = 0
    cancel_rate_bp: int = 0
    rating_x100: int | None = None
    rating_count: int = 0
    computed_at: datetime | None = None
    eligible: bool = True


@dataclass(frozen=True, slots=True)
class SellerInfo:
    id: str
    name: str
    legal_name: str
    email: str
    country: str
    description: str
    payout_reference: str | None
    status: str
    status_reason: str | None
    is_house: bool
    warehouse_id: str | None
    warehouse_code: str | None
    applicant_user_id: str | None
    created_at: datetime
    approved_at: datetime | None
    suspended_at: datetime | None
    performance: Performance

    @property
    def selling(self) -> bool:
        """Approved: its offers are shown and may be bought."""
        return self.status == "approved"


@dataclass(frozen=True, slots=True)
class OfferInfo:
    """An offer as its seller and staff see it: ``available`` is the units free in the
    seller's warehouse."""

    id: str
    seller_id: str
    variant_id: str
    product_id: str
    sku: str
    price: int
    currency: str
    shipping_price: int
    handling_days: int
    active: bool
    available: int
    created_at: datetime
    updated_at: datetime


def seller_info(row: Row[Any]) -> SellerInfo:
    return SellerInfo(
        id=row.id,
        name=row.name,
        legal_name=row.legal_name,
        email=row.email,
        country=row.country,
        description=row.description or "",
        payout_reference=row.payout_reference,
        status=row.status,
        status_reason=row.status_reason,
        is_house=bool(row.is_house),
        warehouse_id=row.warehouse_id,
        warehouse_code=row.warehouse_code,
        applicant_user_id=row.applicant_user_id,
        created_at=row.created_at,
        approved_at=row.approved_at,
        suspended_at=row.suspended_at,
        performance=Performance(
            orders_counted=int(row.orders_counted),
            defect_rate_bp=int(row.defect_rate_bp),
            late_shipment_rate_bp=int(row.late_shipment_rate_bp),
            cancel_rate_bp=int(row.cancel_rate_bp),
            rating_x100=row.rating_x100,
            rating_count=int(row.rating_count),
            computed_at=row.performance_at,
            eligible=bool(row.eligible),
        ),
    )


async def get_seller(uow: UnitOfWork, seller_id: str) -> SellerInfo | None:
    row = (await uow.execute(select(SELLERS).where(SELLERS.c.id == seller_id))).first()
    return None if row is None else seller_info(row)


async def sellers_by_id(uow: UnitOfWork, ids: Collection[str]) -> dict[str, SellerInfo]:
    if not ids:
        return {}
    rows = await uow.execute(select(SELLERS).where(SELLERS.c.id.in_(sorted(set(ids)))))
    return {r.id: seller_info(r) for r in rows}


async def seller_names(uow: UnitOfWork, ids: Collection[str]) -> dict[str, str]:
    """Each known seller's shop name, by id (what an order's page says each part is sold by)."""
    return {k: v.name for k, v in (await sellers_by_id(uow, ids)).items()}


async def house_seller(uow: UnitOfWork) -> SellerInfo:
    """The shop itself (written by the migration)."""
    found = await get_seller(uow, HOUSE_SELLER_ID)
    assert found is not None, "the migration writes the house seller"
    return found


# --------------------------------------------------------------------------------------------
# Who is asking


async def seller_of_user(uow: UnitOfWork, user_id: str) -> str | None:
    """The seller this account acts for, if any."""
    return await uow.scalar(
        select(SELLER_USERS.c.seller_id).where(SELLER_USERS.c.user_id == user_id)
    )


async def seller_scope(uow: UnitOfWork, user: identity.UserInfo) -> str | None:
    """Whose offers the caller may see and change: ``None`` for staff (everyone's), else the
    one seller the ``seller`` account belongs to (403 ``no_seller`` when it belongs to none)."""
    if user.role == "staff":
        return None
    seller_id = await seller_of_user(uow, user.id) if user.role == "seller" else None
    if seller_id is None:
        raise Problem(
            403, "no_seller", "This account does not act for any seller", title="Forbidden"
        )
    return seller_id


def check_in_scope(scope: str | None, seller_id: str, what: str, ident: str) -> None:
    """Another seller's thing is a 404, as if it did not exist: its id tells nothing."""
    if scope is not None and scope != seller_id:
        raise not_found(what, ident)


async def publish_offers_changed(uow: UnitOfWork, product_ids: Collection[str]) -> None:
    await events.publish_many(
        uow, [(OFFERS_CHANGED, p, {"product_id": p}) for p in sorted(set(product_ids))]
    )


async def seller_product_ids(uow: UnitOfWork, seller_id: str) -> list[str]:
    rows = await uow.execute(
        select(OFFERS.c.product_id).where(OFFERS.c.seller_id == seller_id).distinct()
    )
    return [r.product_id for r in rows]
