"""The marketplace's public face: sellers, their offers, the buy box, the CSV import and the
performance figures. Other modules import this file only; the rules live by family in

* :mod:`~mercato.marketplace.sellers`: applying, approval and suspension, seller accounts;
* :mod:`~mercato.marketplace.offers`: a seller's offers and the stock behind them;
* :mod:`~mercato.marketplace.buybox`: the featured offer, "Other sellers", what checkout
  needs of an offer (:func:`offer_for_checkout`, :func:`offer_for_line`);
* :mod:`~mercato.marketplace.imports`: offers uploaded as CSV;
* :mod:`~mercato.marketplace.performance`: the figures and the buy box's thresholds;
* :mod:`~mercato.marketplace.commissions`: commission rules and what a sale pays;
* :mod:`~mercato.marketplace.ledger`: the double-entry ledger of sales, refunds, cancellations
  and payouts, and the sellers' statements;
* :mod:`~mercato.marketplace.common`: tables, what callers see, who is asking;
* :mod:`~mercato.marketplace.portal`: what the seller portal and the staff's money pages read.
"""

from __future__ import annotations

from mercato.marketplace.buybox import (
    BuyBoxOffer,
    CheckoutOffer,
    ShippingReader,
    Sort,
    VariantOffers,
    eligible_offers,
    featured_offer,
    featured_prices,
    offer_for_checkout,
    offer_for_line,
    performance_factor,
    product_offers,
    shipping_readers,
)
from mercato.marketplace.commissions import (
    CommissionQuote,
    RuleDraft,
    RuleInfo,
    Terms,
    commission_amount,
    commission_for,
    create_rule,
    deactivate_rule,
    get_rule,
    list_rules,
)
from mercato.marketplace.common import (
    HOUSE_OFFER_PREFIX,
    OFFERS_CHANGED,
    OfferInfo,
    Performance,
    SellerInfo,
    get_seller,
    house_seller,
    seller_names,
    seller_of_user,
    seller_scope,
)
from mercato.marketplace.imports import (
    MAX_IMPORT_BYTES,
    MAX_IMPORT_ROWS,
    ImportMode,
    ImportReport,
    RowError,
    import_offers,
)
from mercato.marketplace.ledger import (
    MONTH_PATTERN,
    LedgerDifference,
    PayoutInfo,
    Period,
    ReversalEntry,
    SaleEntry,
    Statement,
    account_balances,
    check_ledger,
    get_sale,
    list_payouts,
    parse_amount,
    payable_balance,
    period_of,
    record_cancellation,
    record_payout,
    record_refund,
    record_sale,
    seller_statements,
    sellers_with_entries,
    statement,
)
from mercato.marketplace.models import HOUSE_SELLER_ID
from mercato.marketplace.offers import (
    OfferDraft,
    OfferPatch,
    create_offer,
    get_offer,
    list_offers,
    update_offer,
)
from mercato.marketplace.performance import (
    PerformanceCounts,
    PerformanceReader,
    Thresholds,
    performance_readers,
    record_performance,
    refresh_performance,
)
from mercato.marketplace.portal import (
    Balance,
    LedgerOverview,
    OfferPage,
    OfferStock,
    PayoutsPage,
    RulesPage,
    SellerDashboard,
    StockSummary,
    commission_rules_page,
    ledger_overview,
    monthly_statements,
    payouts_page,
    seller_dashboard,
    seller_offer_page,
)
from mercato.marketplace.sellers import (
    Application,
    add_seller_user,
    apply,
    approve,
    list_sellers,
    public_seller,
    suspend,
)
from mercato.marketplace.split import (
    cart_line_offer,
    cart_line_offers,
    record_order_cancellation,
    record_order_sales,
    record_return_refunds,
    return_refund_reference,
)

__all__ = [
    "HOUSE_OFFER_PREFIX",
    "HOUSE_SELLER_ID",
    "MAX_IMPORT_BYTES",
    "MAX_IMPORT_ROWS",
    "MONTH_PATTERN",
    "OFFERS_CHANGED",
    "Application",
    "Balance",
    "BuyBoxOffer",
    "CheckoutOffer",
    "CommissionQuote",
    "ImportMode",
    "ImportReport",
    "LedgerDifference",
    "LedgerOverview",
    "OfferDraft",
    "OfferInfo",
    "OfferPage",
    "OfferPatch",
    "OfferStock",
    "PayoutInfo",
    "PayoutsPage",
    "Performance",
    "PerformanceCounts",
    "PerformanceReader",
    "Period",
    "ReversalEntry",
    "RowError",
    "RuleDraft",
    "RuleInfo",
    "RulesPage",
    "SaleEntry",
    "SellerDashboard",
    "SellerInfo",
    "ShippingReader",
    "Sort",
    "Statement",
    "StockSummary",
    "Terms",
    "Thresholds",
    "VariantOffers",
    "account_balances",
    "add_seller_user",
    "apply",
    "approve",
    "cart_line_offer",
    "cart_line_offers",
    "check_ledger",
    "commission_amount",
    "commission_for",
    "commission_rules_page",
    "create_offer",
    "create_rule",
    "deactivate_rule",
    "eligible_offers",
    "featured_offer",
    "featured_prices",
    "get_offer",
    "get_rule",
    "get_sale",
    "get_seller",
    "house_seller",
    "import_offers",
    "ledger_overview",
    "list_offers",
    "list_payouts",
    "list_rules",
    "list_sellers",
    "monthly_statements",
    "offer_for_checkout",
    "offer_for_line",
    "parse_amount",
    "payable_balance",
    "payouts_page",
    "performance_factor",
    "performance_readers",
    "period_of",
    "product_offers",
    "public_seller",
    "record_cancellation",
    "record_order_cancellation",
    "record_order_sales",
    "record_payout",
    "record_performance",
    "record_refund",
    "record_return_refunds",
    "record_sale",
    "refresh_performance",
    "return_refund_reference",
    "seller_dashboard",
    "seller_names",
    "seller_of_user",
    "seller_offer_page",
    "seller_scope",
    "seller_statements",
    "sellers_with_entries",
    "shipping_readers",
    "statement",
    "suspend",
    "update_offer",
]


# --------------------------------------------------------------------------------------------
# What the web pages read: one call per page, nothing written. Imported here, after the public
# names above, so that this block stays apart from them.

from dataclasses import dataclass

from sqlalchemy import func, select

from mercato.catalog import service as _catalog
from mercato.db import UnitOfWork
from mercato.marketplace.common import OFFERS as _OFFERS
from mercato.marketplace.common import sellers_by_id as _sellers_by_id
from mercato.marketplace.offers import offer_infos as _offer_infos
from mercato.problems import not_found as _not_found

SHELF_PAGE = 24


@dataclass(frozen=True, slots=True)
class ProductSellers:
    """A product page's buy box and "Other sellers", with every seller they name."""

    variants: list[VariantOffers]
    sellers: dict[str, SellerInfo]


async def product_sellers(
    uow: UnitOfWork, product_id: str, country: str | None, *, sort: Sort = "score"
) -> ProductSellers:
    """:func:`product_offers` and the profile of each seller an offer names (for its rating
    and figures); 404 for a product not for sale."""
    found = await product_offers(uow, product_id, country, sort=sort)
    ids = {o.seller_id for v in found for o in [*v.others, *([v.featured] if v.featured else [])]}
    return ProductSellers(found, await _sellers_by_id(uow, ids))


@dataclass(frozen=True, slots=True)
class SellerShelf:
    """A seller's public page: its profile and one page of its offers for sale."""

    seller: SellerInfo
    offers: list[OfferInfo]
    product_titles: dict[str, str]
    next_after: str | None


async def seller_shelf(
    uow: UnitOfWork, seller_id: str, *, after: str | None = None, limit: int = SHELF_PAGE
) -> SellerShelf:
    """An approved seller (404 otherwise, as :func:`public_seller`) and its active offers of
    listed products, by offer id, ``limit`` after ``after``."""
    seller = await public_seller(uow, seller_id)
    query = select(_OFFERS).where(_OFFERS.c.seller_id == seller.id, _OFFERS.c.active.is_(True))
    if after is not None:
        query = query.where(_OFFERS.c.id > after)
    rows = (await uow.execute(query.order_by(_OFFERS.c.id).limit(limit + 1))).all()
    page, more = rows[:limit], len(rows) > limit
    products = await _catalog.get_products(
        uow, {r.product_id for r in page}, include_inactive=False
    )
    offers = [o for o in await _offer_infos(uow, page) if o.product_id in products]
    return SellerShelf(
        seller=seller,
        offers=offers,
        product_titles={pid: p.title for pid, p in products.items()},
        next_after=page[-1].id if more and page else None,
    )


@dataclass(frozen=True, slots=True)
class SellerForStaff:
    seller: SellerInfo
    offers: int
    active_offers: int


async def seller_for_staff(uow: UnitOfWork, seller_id: str) -> SellerForStaff:
    """A seller as the back office shows it, with how many offers it has (404 if unknown)."""
    seller = await get_seller(uow, seller_id)
    if seller is None:
        raise _not_found("Seller", seller_id)
    counts = (
        await uow.execute(
            select(_OFFERS.c.active, func.count())
            .where(_OFFERS.c.seller_id == seller_id)
            .group_by(_OFFERS.c.active)
        )
    ).all()
    by_state = {bool(active): int(n) for active, n in counts}
    return SellerForStaff(seller, sum(by_state.values()), by_state.get(True, 0))
