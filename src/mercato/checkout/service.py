"""The checkout module's public face: what other modules, the API and the pages call.

The rules live in one file per family, read on their own:

* :mod:`~mercato.checkout.shipping` — zones and shipping methods;
* :mod:`~mercato.checkout.tax` — tax rates and whether prices include tax;
* :mod:`~mercato.checkout.promos` — promo codes, their validation and their uses;
* :mod:`~mercato.checkout.quote` — a cart priced for a destination (and its shipping options);
* :mod:`~mercato.checkout.pricing` — the arithmetic, pure;
* :mod:`~mercato.checkout.arrival` — the delivery-date rule, pure, and
  :mod:`~mercato.checkout.delivery` — delivery estimates for a product or a cart;
* :mod:`~mercato.checkout.workflow` — the checkout itself, from a cart to a paid order.

Other modules import this one only.
"""

from __future__ import annotations

from mercato.checkout.arrival import (
    Arrival,
    DeliveryClock,
    add_business_days,
    arrival_after,
    counts_from,
    dispatch_day,
    estimate_arrival,
    is_business_day,
)
from mercato.checkout.common import percent_text
from mercato.checkout.delivery import (
    DeliveryOption,
    ProductDelivery,
    delivery_clock,
    dispatch_day_for,
    product_delivery,
    variant_arrivals,
)
from mercato.checkout.promos import (
    PromoAmounts,
    PromoGuard,
    PromoInfo,
    PromoRow,
    check_promo,
    check_promo_usable,
    commit_promo_use,
    create_promo,
    create_promo_code,
    get_promo,
    get_promo_by_code,
    invalid_promo,
    list_promo_codes,
    list_promos_with_uses,
    normalize_promo_code,
    promo_redemption_counts,
    promo_used_up,
    release_promo_use,
    set_promo_active,
    take_promo_use,
)
from mercato.checkout.quote import (
    CartItem,
    PricingContext,
    Quote,
    ShippingOption,
    cart_empty,
    cart_items,
    check_purchasable,
    estimate_cart,
    load_pricing_context,
    option_to_json,
    price_changes,
    price_items,
    priced_from_minor,
    priced_to_json,
    priced_to_minor,
    quote_cart,
    shipping_options,
    variant_unavailable,
)
from mercato.checkout.setup_cache import (
    PRICING_SETUP_TTL_SECONDS,
    PricingSetupCache,
    pricing_setup_cache,
    pricing_setup_changed,
)
from mercato.checkout.shipping import (
    ShippingMethodInfo,
    ZoneInfo,
    add_shipping_method,
    choose_country,
    create_shipping_method,
    create_zone,
    list_shipping_methods,
    list_zones,
    method_to_json,
    ship_to_countries,
    shipping_methods_for,
    unknown_shipping_method,
)
from mercato.checkout.tax import (
    DEFAULT_PRICES_INCLUDE_TAX,
    TaxRateInfo,
    list_tax_rates,
    prices_include_tax,
    save_tax_rate,
    set_prices_include_tax,
    set_tax_rate,
    tax_table_for,
)
from mercato.checkout.workflow import (
    KEY_PATTERN as IDEMPOTENCY_KEY_PATTERN,
)
from mercato.checkout.workflow import (
    MAX_KEY_LENGTH as MAX_IDEMPOTENCY_KEY_LENGTH,
)
from mercato.checkout.workflow import (
    CheckoutRequest,
    CheckoutStatus,
    checkout,
    checkout_as,
    checkout_status,
    count_by_status,
)

__all__ = [
    "DEFAULT_PRICES_INCLUDE_TAX",
    "IDEMPOTENCY_KEY_PATTERN",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "PRICING_SETUP_TTL_SECONDS",
    "Arrival",
    "CartItem",
    "CheckoutRequest",
    "CheckoutStatus",
    "DeliveryClock",
    "DeliveryOption",
    "PricingContext",
    "PricingSetupCache",
    "ProductDelivery",
    "PromoAmounts",
    "PromoGuard",
    "PromoInfo",
    "PromoRow",
    "Quote",
    "ShippingMethodInfo",
    "ShippingOption",
    "TaxRateInfo",
    "ZoneInfo",
    "add_business_days",
    "add_shipping_method",
    "arrival_after",
    "cart_empty",
    "cart_items",
    "check_promo",
    "check_promo_usable",
    "check_purchasable",
    "checkout",
    "checkout_as",
    "checkout_status",
    "choose_country",
    "commit_promo_use",
    "count_by_status",
    "counts_from",
    "create_promo",
    "create_promo_code",
    "create_shipping_method",
    "create_zone",
    "delivery_clock",
    "dispatch_day",
    "dispatch_day_for",
    "estimate_arrival",
    "estimate_cart",
    "get_promo",
    "get_promo_by_code",
    "invalid_promo",
    "is_business_day",
    "list_promo_codes",
    "list_promos_with_uses",
    "list_shipping_methods",
    "list_tax_rates",
    "list_zones",
    "load_pricing_context",
    "method_to_json",
    "normalize_promo_code",
    "option_to_json",
    "percent_text",
    "price_changes",
    "price_items",
    "priced_from_minor",
    "priced_to_json",
    "priced_to_minor",
    "prices_include_tax",
    "pricing_setup_cache",
    "pricing_setup_changed",
    "product_delivery",
    "promo_redemption_counts",
    "promo_used_up",
    "quote_cart",
    "release_promo_use",
    "save_tax_rate",
    "set_prices_include_tax",
    "set_promo_active",
    "set_tax_rate",
    "ship_to_countries",
    "shipping_methods_for",
    "shipping_options",
    "take_promo_use",
    "tax_table_for",
    "unknown_shipping_method",
    "variant_arrivals",
    "variant_unavailable",
]
