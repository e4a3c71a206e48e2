"""Sellers: applying, staff approving or suspending, who may act for a seller.

A seller applies from a signed-in account with its profile, legal name, the countries it ships
to and an opaque payout reference (the id of an account held by the payment provider; bank
numbers are refused). Applying creates its own warehouse, outside the shop's pool, where its
offers' stock lies. Staff approval makes the applicant's account a ``seller`` account acting
for it; suspension takes its offers off the shop at once (its account keeps read access).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from mercato.db import UnitOfWork, utcnow
from mercato.identity import service as identity
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.marketplace.common import (
    SELLER_USERS,
    SELLERS,
    SellerInfo,
    get_seller,
    publish_offers_changed,
    seller_info,
    seller_of_user,
    seller_product_ids,
)
from mercato.problems import Problem, not_found, validation_problem

SELLER_HANDLING_DAYS = 2
"""A new seller's warehouse dispatches in two business days until it says otherwise."""
_PAYOUT_REFERENCE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{2,79}$")
_DIGIT_RUN = re.compile(r"[0-9]{6,}")
_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$")


@dataclass(frozen=True, slots=True)
class Application:
    name: str
    legal_name: str
    email: str
    country: str
    ship_to: Sequence[str]
    description: str = ""
    payout_reference: str | None = None


def check_payout_reference(reference: str | None) -> str | None:
    """An opaque reference to the provider's account, never the account number itself: a
    long run of digits or an IBAN's shape is refused (422 naming ``payout_reference``)."""
    if reference is None:
        return None
    text = reference.strip()
    if not _PAYOUT_REFERENCE.match(text):
        raise validation_problem(
            "payout_reference",
            "must be the payment provider's account reference (letters, digits, '_.:-')",
        )
    if _DIGIT_RUN.search(text) or _IBAN.match(text.replace("-", "").upper()):
        raise validation_problem(
            "payout_reference",
            "looks like a bank account number: give the payment provider's reference instead",
            code="bank_number_refused",
        )
    return text


def _warehouse_code(seller_id: str) -> str:
    return f"S-{seller_id[-10:].upper()}"


async def apply(uow: UnitOfWork, user_id: str, application: Application) -> SellerInfo:
    """A pending seller for the signed-in account; 409 ``already_seller`` when the account
    already applied or acts for a seller."""
    payout = check_payout_reference(application.payout_reference)
    bad_email = identity.email_problem(identity.normalize_email(application.email))
    if bad_email is not None:
        raise validation_problem("email", bad_email)
    country = inventory.normalize_country(application.country) or ""
    if not application.ship_to:
        raise validation_problem("ship_to", "at least one country is required")
    taken = await uow.scalar(select(SELLERS.c.id).where(SELLERS.c.applicant_user_id == user_id))
    if taken is not None or await seller_of_user(uow, user_id) is not None:
        raise Problem(409, "already_seller", "This account already applied to sell here")
    seller_id = new_id("sel")
    warehouse = await inventory.create_warehouse(
        uow,
        code=_warehouse_code(seller_id),
        name=application.name[:110] + " (seller)",
        countries=[*application.ship_to],
        handling_days=SELLER_HANDLING_DAYS,
        pooled=False,
    )
    now = utcnow()
    row = {
        "id": seller_id,
        "name": application.name,
        "legal_name": application.legal_name,
        "email": identity.normalize_email(application.email),
        "country": country,
        "description": application.description,
        "payout_reference": payout,
        "status": "pending",
        "status_reason": None,
        "is_house": False,
        "warehouse_id": warehouse.id,
        "warehouse_code": warehouse.code,
        "applicant_user_id": user_id,
        "created_at": now,
        "approved_at": None,
        "suspended_at": None,
        "orders_counted": 0,
        "defect_rate_bp": 0,
        "late_shipment_rate_bp": 0,
        "cancel_rate_bp": 0,
        "rating_x100": None,
        "rating_count": 0,
        "performance_at": None,
        "eligible": True,
    }
    await uow.execute(insert(SELLERS).values(row))
    found = await get_seller(uow, seller_id)
    assert found is not None
    return found


async def _require(uow: UnitOfWork, seller_id: str) -> SellerInfo:
    found = await get_seller(uow, seller_id)
    if found is None:
        raise not_found("Seller", seller_id)
    return found


async def add_seller_user(uow: UnitOfWork, seller_id: str, user_id: str) -> None:
    """Let the account act for the seller (one seller per account; idempotent). Its role
    becomes ``seller`` unless it is staff, who see every seller anyway."""
    await _require(uow, seller_id)
    current = await seller_of_user(uow, user_id)
    if current == seller_id:
        return
    if current is not None:
        raise Problem(409, "already_seller", "This account acts for another seller")
    user = await identity.get_user(uow, user_id)
    if user is None:
        raise not_found("User", user_id)
    await uow.execute(
        insert(SELLER_USERS).values(user_id=user_id, seller_id=seller_id, created_at=utcnow())
    )
    if user.role == "customer":
        await identity.set_role(uow, user_id, "seller")


async def approve(uow: UnitOfWork, seller_id: str) -> SellerInfo:
    """Pending or suspended → approved (again): its offers show, its applicant's account acts
    for it. Approving an approved seller changes nothing."""
    seller = await _require(uow, seller_id)
    if seller.status == "approved":
        return seller
    await uow.execute(
        update(SELLERS)
        .where(SELLERS.c.id == seller_id)
        .values(status="approved", status_reason=None, approved_at=utcnow(), suspended_at=None)
    )
    if seller.applicant_user_id is not None:
        await add_seller_user(uow, seller_id, seller.applicant_user_id)
    await publish_offers_changed(uow, await seller_product_ids(uow, seller_id))
    return await _require(uow, seller_id)


async def suspend(uow: UnitOfWork, seller_id: str, reason: str) -> SellerInfo:
    """Take a seller's offers off the shop (409 ``house_seller`` for the shop itself)."""
    reason = reason.strip()
    if not reason or len(reason) > 200:
        raise validation_problem("reason", "must be 1 to 200 characters")
    seller = await _require(uow, seller_id)
    if seller.is_house:
        raise Problem(409, "house_seller", "The shop itself cannot be suspended")
    await uow.execute(
        update(SELLERS)
        .where(SELLERS.c.id == seller_id)
        .values(status="suspended", status_reason=reason, suspended_at=utcnow())
    )
    await publish_offers_changed(uow, await seller_product_ids(uow, seller_id))
    return await _require(uow, seller_id)


async def public_seller(uow: UnitOfWork, seller_id: str) -> SellerInfo:
    """A seller anyone may look at: approved ones only (404 otherwise)."""
    found = await get_seller(uow, seller_id)
    if found is None or not found.selling:
        raise not_found("Seller", seller_id)
    return found


async def list_sellers(
    uow: UnitOfWork, *, status: str | None = None, limit: int = 200
) -> list[SellerInfo]:
    """Sellers for staff, the house first, then the newest."""
    query = select(SELLERS)
    if status is not None:
        query = query.where(SELLERS.c.status == status)
    rows = await uow.execute(
        query.order_by(SELLERS.c.is_house.desc(), SELLERS.c.created_at.desc(), SELLERS.c.id).limit(
            limit
        )
    )
    return [seller_info(r) for r in rows]
