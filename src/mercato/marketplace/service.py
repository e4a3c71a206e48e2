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
* :mod:`~mercato.marketplace.common`: tables, what callers see, who is asking.
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
    payable_balance,
    period_of,
    record_cancellation,
    record_payout,
    record_refund,
    record_sale,
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
from mercato.marketplace.sellers import (
    Application,
    add_seller_user,
    apply,
    approve,
    list_sellers,
    public_seller,
    suspend,
)

__all__ = [
    "HOUSE_OFFER_PREFIX",
    "HOUSE_SELLER_ID",
    "MAX_IMPORT_BYTES",
    "MAX_IMPORT_ROWS",
    "OFFERS_CHANGED",
    "Application",
    "BuyBoxOffer",
    "CheckoutOffer",
    "CommissionQuote",
    "ImportMode",
    "ImportReport",
    "LedgerDifference",
    "OfferDraft",
    "OfferInfo",
    "OfferPatch",
    "PayoutInfo",
    "Performance",
    "PerformanceCounts",
    "PerformanceReader",
    "Period",
    "ReversalEntry",
    "RowError",
    "RuleDraft",
    "RuleInfo",
    "SaleEntry",
    "SellerInfo",
    "ShippingReader",
    "Sort",
    "Statement",
    "Terms",
    "Thresholds",
    "VariantOffers",
    "account_balances",
    "add_seller_user",
    "apply",
    "approve",
    "check_ledger",
    "commission_amount",
    "commission_for",
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
    "list_offers",
    "list_payouts",
    "list_rules",
    "list_sellers",
    "offer_for_checkout",
    "offer_for_line",
    "payable_balance",
    "performance_factor",
    "performance_readers",
    "period_of",
    "product_offers",
    "public_seller",
    "record_cancellation",
    "record_payout",
    "record_performance",
    "record_refund",
    "record_sale",
    "refresh_performance",
    "seller_of_user",
    "seller_scope",
    "sellers_with_entries",
    "shipping_readers",
    "statement",
    "suspend",
    "update_offer",
]
