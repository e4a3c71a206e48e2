"""What the seller portal (``/seller``) and the staff's money pages read: one call per page,
nothing written. The changes those pages make go through the same functions as the API
(:func:`~.offers.create_offer`, :func:`~.offers.update_offer`, :func:`~.imports.import_offers`,
:func:`~.commissions.create_rule`, :func:`~.ledger.record_payout`...).

A seller's pages always name the caller's own seller (``scope``, from
:func:`~.common.seller_scope`): nothing here takes another seller's id from a seller."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.inventory import service as inventory
from mercato.marketplace.commissions import RuleInfo, list_rules
from mercato.marketplace.common import (
    OFFERS,
    SELLERS,
    OfferInfo,
    SellerInfo,
    get_seller,
    seller_info,
    sellers_by_id,
)
from mercato.marketplace.ledger import (
    PAYABLE_PREFIX,
    LedgerDifference,
    PayoutInfo,
    Period,
    Statement,
    account_balances,
    check_ledger,
    list_payouts,
    month,
    payable_balance,
    statement,
)
from mercato.marketplace.offers import offer_infos
from mercato.marketplace.performance import Thresholds
from mercato.problems import not_found

OFFERS_PAGE = 50
STATEMENT_MONTHS = 12


async def _own_seller(uow: UnitOfWork, scope: str) -> SellerInfo:
    seller = await get_seller(uow, scope)
    if seller is None:
        raise not_found("Seller", scope)
    return seller


# --------------------------------------------------------------------------------------------
# The seller's offers and their stock


@dataclass(frozen=True, slots=True)
class OfferStock:
    """One offer with its product's title and its units in the seller's warehouse."""

    offer: OfferInfo
    title: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.offer.available


@dataclass(frozen=True, slots=True)
class OfferPage:
    seller: SellerInfo
    offers: list[OfferStock]
    next_after: str | None


async def _with_stock(
    uow: UnitOfWork, seller: SellerInfo, offers: Collection[OfferInfo]
) -> list[OfferStock]:
    levels = await inventory.stock_for_variants(uow, {o.variant_id for o in offers})
    products = await catalog.get_products(uow, {o.product_id for o in offers})
    rows: list[OfferStock] = []
    for o in offers:
        level = next(
            (s for s in levels.get(o.variant_id, []) if s.warehouse_id == seller.warehouse_id),
            None,
        )
        rows.append(
            OfferStock(
                offer=o,
                title=products[o.product_id].title if o.product_id in products else o.sku,
                on_hand=level.on_hand if level else 0,
                reserved=level.reserved if level else 0,
            )
        )
    return rows


async def seller_offer_page(
    uow: UnitOfWork, scope: str, *, after: str | None = None, limit: int = OFFERS_PAGE
) -> OfferPage:
    """The seller's offers, oldest first, ``limit`` after the offer id ``after``, each with its
    stock: on hand, reserved for shoppers, and available (on hand less reserved)."""
    seller = await _own_seller(uow, scope)
    query = select(OFFERS).where(OFFERS.c.seller_id == scope)
    if after:
        query = query.where(OFFERS.c.id > after)
    rows = (await uow.execute(query.order_by(OFFERS.c.id).limit(limit + 1))).all()
    page = rows[:limit]
    offers = await _with_stock(uow, seller, await offer_infos(uow, page))
    return OfferPage(seller, offers, page[-1].id if len(rows) > limit and page else None)


# --------------------------------------------------------------------------------------------
# The seller's dashboard


@dataclass(frozen=True, slots=True)
class StockSummary:
    on_hand: int = 0
    reserved: int = 0
    available: int = 0
    sold_out: int = 0
    """Active offers with no unit available."""


@dataclass(frozen=True, slots=True)
class SellerDashboard:
    seller: SellerInfo
    offers: int
    active_offers: int
    stock: StockSummary
    thresholds: Thresholds
    currency: str
    payable: int
    """What the shop owes the seller now (negative: what the seller owes the shop)."""
    latest: Statement


async def seller_dashboard(
    uow: UnitOfWork, scope: str, thresholds: Thresholds, currency: str
) -> SellerDashboard:
    """The seller's standing and figures against the buy box's thresholds, its offers and
    their stock in total, what it is owed and this month's statement so far."""
    seller = await _own_seller(uow, scope)
    rows = (await uow.execute(select(OFFERS).where(OFFERS.c.seller_id == scope))).all()
    levels = await inventory.stock_for_variants(uow, {r.variant_id for r in rows})
    on_hand = reserved = sold_out = 0
    for r in rows:
        level = next(
            (s for s in levels.get(r.variant_id, []) if s.warehouse_id == seller.warehouse_id),
            None,
        )
        on_hand += level.on_hand if level else 0
        reserved += level.reserved if level else 0
        if r.active and (level is None or level.available <= 0):
            sold_out += 1
    return SellerDashboard(
        seller=seller,
        offers=len(rows),
        active_offers=sum(1 for r in rows if r.active),
        stock=StockSummary(on_hand, reserved, on_hand - reserved, sold_out),
        thresholds=thresholds,
        currency=currency,
        payable=await payable_balance(uow, scope, currency),
        latest=await statement(uow, scope, month(utcnow().strftime("%Y-%m")), currency),
    )


# --------------------------------------------------------------------------------------------
# Statements by month


def recent_months(count: int, now: datetime) -> list[Period]:
    """The ``count`` calendar months up to ``now``'s, newest first."""
    year, number = now.year, now.month
    found: list[Period] = []
    for _ in range(count):
        found.append(month(f"{year:04d}-{number:02d}"))
        year, number = (year, number - 1) if number > 1 else (year - 1, 12)
    return found


async def monthly_statements(
    uow: UnitOfWork,
    scope: str,
    currency: str,
    *,
    months: int = STATEMENT_MONTHS,
    now: datetime | None = None,
) -> list[Statement]:
    """The seller's statements of its last ``months`` calendar months, newest first, from the
    month it applied in (none before it existed)."""
    seller = await _own_seller(uow, scope)
    periods = [p for p in recent_months(months, now or utcnow()) if p.end > seller.created_at]
    return [await statement(uow, scope, p, currency) for p in periods]


# --------------------------------------------------------------------------------------------
# Staff: commission rules, the ledger, payouts


@dataclass(frozen=True, slots=True)
class RulesPage:
    rules: list[RuleInfo]
    sellers: dict[str, SellerInfo]
    """Every seller a rule may name (the house sells at the catalog's price: no commission)."""
    categories: dict[str, str]
    """Category id → its path, as a rule's scope is shown."""


def _category_paths(tree: list[catalog.CategoryNode]) -> dict[str, str]:
    paths: dict[str, str] = {}
    pending = list(tree)
    while pending:
        node = pending.pop()
        paths[node.category.id] = node.category.path or node.category.name
        pending.extend(node.children)
    return dict(sorted(paths.items(), key=lambda item: item[1]))


async def _all_sellers(uow: UnitOfWork) -> dict[str, SellerInfo]:
    rows = await uow.execute(
        select(SELLERS).where(SELLERS.c.is_house.is_(False)).order_by(SELLERS.c.name)
    )
    return {r.id: seller_info(r) for r in rows}


async def commission_rules_page(uow: UnitOfWork) -> RulesPage:
    """Every rule, in force or not, most specific scope first, with the sellers and categories
    a new rule may name."""
    return RulesPage(
        rules=await list_rules(uow, include_inactive=True),
        sellers=await _all_sellers(uow),
        categories=_category_paths(await catalog.get_category_tree(uow)),
    )


@dataclass(frozen=True, slots=True)
class Balance:
    account: str
    currency: str
    balance: int
    """Debit positive, credit negative."""
    seller_id: str | None


@dataclass(frozen=True, slots=True)
class LedgerOverview:
    balances: list[Balance]
    differences: list[LedgerDifference]
    sellers: dict[str, SellerInfo]
    totals: dict[str, int]
    """Per currency, the sum of every balance: zero when the books balance."""

    @property
    def ok(self) -> bool:
        return not self.differences and not any(self.totals.values())


async def ledger_overview(uow: UnitOfWork) -> LedgerOverview:
    """Every account's balance, the check of every entry (:func:`~.ledger.check_ledger`) and
    each currency's total."""
    balances = [
        Balance(
            account,
            currency,
            amount,
            account.removeprefix(PAYABLE_PREFIX) if account.startswith(PAYABLE_PREFIX) else None,
        )
        for (account, currency), amount in (await account_balances(uow)).items()
    ]
    totals: dict[str, int] = {}
    for b in balances:
        totals[b.currency] = totals.get(b.currency, 0) + b.balance
    return LedgerOverview(
        balances=balances,
        differences=await check_ledger(uow),
        sellers=await sellers_by_id(uow, {b.seller_id for b in balances if b.seller_id}),
        totals=totals,
    )


@dataclass(frozen=True, slots=True)
class PayoutsPage:
    payouts: list[PayoutInfo]
    """Newest first."""
    sellers: dict[str, SellerInfo]
    owed: dict[str, int]
    """What each seller is owed now, in the shop's currency."""


async def payouts_page(uow: UnitOfWork, currency: str) -> PayoutsPage:
    """The payouts recorded, newest first, and every seller with what it is owed now."""
    sellers = await _all_sellers(uow)
    return PayoutsPage(
        payouts=list(reversed(await list_payouts(uow))),
        sellers=sellers,
        owed={s: await payable_balance(uow, s, currency) for s in sellers},
    )
