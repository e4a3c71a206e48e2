"""The marketplace's public face: sellers, their offers, the buy box, the CSV import and the
performance figures. Other modules import this file only; the rules live by family in

* :mod:`~mercato.marketplace.sellers`: applying, approval and suspension, seller accounts;
* :mod:`~mercato.marketplace.offers`: a seller's offers and the stock behind them;
* :mod:`~mercato.marketplace.buybox`: the featured offer, "Other sellers", what checkout
  needs of an offer (:func:`offer_for_checkout`, :func:`offer_for_line`);
* :mod:`~mercato.marketplace.imports`: offers uploaded as CSV;
* :mod:`~mercato.marketplace.performance`: the figures and the buy box's thresholds;
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
    "ImportMode",
    "ImportReport",
    "OfferDraft",
    "OfferInfo",
    "OfferPatch",
    "Performance",
    "PerformanceCounts",
    "PerformanceReader",
    "RowError",
    "SellerInfo",
    "ShippingReader",
    "Sort",
    "Thresholds",
    "VariantOffers",
    "add_seller_user",
    "apply",
    "approve",
    "create_offer",
    "eligible_offers",
    "featured_offer",
    "featured_prices",
    "get_offer",
    "get_seller",
    "house_seller",
    "import_offers",
    "list_offers",
    "list_sellers",
    "offer_for_checkout",
    "offer_for_line",
    "performance_factor",
    "performance_readers",
    "product_offers",
    "public_seller",
    "record_performance",
    "refresh_performance",
    "seller_of_user",
    "seller_scope",
    "shipping_readers",
    "suspend",
    "update_offer",
]
