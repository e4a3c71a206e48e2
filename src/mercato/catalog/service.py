"""The catalog's public face: the category tree, brands, products and variants, listing with
keyset pages, and the reads the search index is projected from. Other modules import this file
only; the rules live by family in

* :mod:`~mercato.catalog.products`: products and their variants, changed and read;
* :mod:`~mercato.catalog.variants`: variants as cart, checkout and inventory read them;
* :mod:`~mercato.catalog.categories` and :mod:`~mercato.catalog.brands`;
* :mod:`~mercato.catalog.listing`: the database listing and the projection reads;
* :mod:`~mercato.catalog.shopify`: products read from and written to Shopify's product CSV;
* :mod:`~mercato.catalog.common`: slugs, problems and the attribute-filter reading;
* :mod:`~mercato.catalog.demo`: the seeded generator of the demo catalog (search builds large
  test indexes straight from it).

Amounts are integer minor units here; the API turns decimal strings into them and back. Every
function takes the caller's :class:`~mercato.db.UnitOfWork` first, and every change publishes
a domain event into the outbox in it.
"""

from __future__ import annotations

from mercato.catalog.brands import BrandInfo, create_brand, get_brand_by_slug, list_brands
from mercato.catalog.categories import (
    CategoryChanges,
    CategoryInfo,
    CategoryNode,
    category_names_by_path,
    create_category,
    get_category_by_slug,
    get_category_subtree,
    get_category_tree,
    product_ids_in_category_tree,
    update_category,
)
from mercato.catalog.common import (
    ATTR_PREFIX,
    MAX_ATTRIBUTE_FILTERS,
    MAX_PATH_LENGTH,
    SKU_PATTERN,
    SORTS,
    UNSET,
    ProductStatus,
    Sort,
    attribute_filters,
    slugify,
)
from mercato.catalog.demo import ShopGenerator
from mercato.catalog.listing import (
    ListedProduct,
    ListedVariant,
    ProductPage,
    ProductQuery,
    count_listed_products,
    decode_cursor,
    encode_cursor,
    list_products,
    listed_product_ids,
    listed_products,
)
from mercato.catalog.products import (
    NO_STOCK,
    NewProduct,
    NewVariant,
    ProductCard,
    ProductChanges,
    ProductGroups,
    ProductView,
    StaffProductPage,
    StockNote,
    StockReader,
    VariantChanges,
    VariantView,
    add_variant,
    archive_product,
    create_product,
    get_product,
    get_product_by_slug,
    get_products,
    product_cards,
    product_groups,
    staff_products,
    stock_notes,
    stock_readers,
    update_product,
    update_variant,
)
from mercato.catalog.shopify import COLUMNS as SHOPIFY_COLUMNS
from mercato.catalog.shopify import (
    ProductImported,
    RowError,
    ShopifyFileError,
    ShopifyProduct,
    ShopStock,
    html_to_text,
    text_to_html,
)
from mercato.catalog.shopify import count_rows as count_csv_rows
from mercato.catalog.shopify import export_rows as shopify_export_rows
from mercato.catalog.shopify import import_product as import_shopify_product
from mercato.catalog.shopify import read_products as read_shopify_products
from mercato.catalog.variants import (
    VariantInfo,
    get_variant_by_sku,
    get_variants,
    variants_by_sku,
)

__all__ = [
    "ATTR_PREFIX",
    "MAX_ATTRIBUTE_FILTERS",
    "MAX_PATH_LENGTH",
    "NO_STOCK",
    "SHOPIFY_COLUMNS",
    "SKU_PATTERN",
    "SORTS",
    "UNSET",
    "BrandInfo",
    "CategoryChanges",
    "CategoryInfo",
    "CategoryNode",
    "ListedProduct",
    "ListedVariant",
    "NewProduct",
    "NewVariant",
    "ProductCard",
    "ProductChanges",
    "ProductGroups",
    "ProductImported",
    "ProductPage",
    "ProductQuery",
    "ProductStatus",
    "ProductView",
    "RowError",
    "ShopGenerator",
    "ShopStock",
    "ShopifyFileError",
    "ShopifyProduct",
    "Sort",
    "StaffProductPage",
    "StockNote",
    "StockReader",
    "VariantChanges",
    "VariantInfo",
    "VariantView",
    "add_variant",
    "archive_product",
    "attribute_filters",
    "category_names_by_path",
    "count_csv_rows",
    "count_listed_products",
    "create_brand",
    "create_category",
    "create_product",
    "decode_cursor",
    "encode_cursor",
    "get_brand_by_slug",
    "get_category_by_slug",
    "get_category_subtree",
    "get_category_tree",
    "get_product",
    "get_product_by_slug",
    "get_products",
    "get_variant_by_sku",
    "get_variants",
    "html_to_text",
    "import_shopify_product",
    "list_brands",
    "list_products",
    "listed_product_ids",
    "listed_products",
    "product_cards",
    "product_groups",
    "product_ids_in_category_tree",
    "read_shopify_products",
    "shopify_export_rows",
    "slugify",
    "staff_products",
    "stock_notes",
    "stock_readers",
    "text_to_html",
    "update_category",
    "update_product",
    "update_variant",
    "variants_by_sku",
]
