"""Search's public face: the storefront's reads (search, suggestions, the product listing,
products with their stock, the product page) and keeping the index a faithful projection of
the catalog. Other modules import this file only; the rules live in

* :mod:`~mercato.search.storefront`: answering shoppers from the index, the catalog and stock;
* :mod:`~mercato.search.indexing`: rebuilding the index and following the outbox;
* :mod:`~mercato.search.synonyms`: the staff's synonym list;
* :mod:`~mercato.search.reach`: the warehouses that reach a shopper's country;
* :mod:`~mercato.search.replica`: this process's copy of the index;
* :mod:`~mercato.search.pagecache`: the page cache of what the storefront reads most;
* :mod:`~mercato.search.personal`: a signed-in customer's re-rank of the top results;

and the engine itself in :mod:`~mercato.search.engine` and :mod:`~mercato.search.query`.

Functions that read the database take the caller's unit of work first; those that only read
the index take the process's runtime (its index), and the index's drivers (``reindex``,
``sync_index``) take the runtime because they read the database in a short unit of work per
batch while they write the index.
"""

from __future__ import annotations

from mercato.search.indexing import (
    BATCH,
    EVENT_TYPES,
    PENDING,
    SALES_RANKS_CHANGED,
    FeaturedPriceReader,
    PendingChanges,
    Progress,
    ReindexStats,
    Sales,
    SalesReader,
    featured_price_readers,
    feeds_index,
    load_sources,
    reindex,
    replay,
    sales_readers,
    sync_index,
)
from mercato.search.pagecache import (
    ProductData,
    category_subtree,
    category_tree,
    forget_changed,
)
from mercato.search.personal import (
    AFFINITY_TTL,
    Affinity,
    AffinityReader,
    affinity_readers,
    customer_affinity,
    forget_affinities,
)
from mercato.search.query import MAX_QUERY_CHARS, Filters, Reach, SearchRequest, SearchResult
from mercato.search.reach import WAREHOUSE_TTL, current_warehouses, forget_warehouses, reach
from mercato.search.replica import (
    EXTRAS_KEY,
    SearchSettings,
    consumer_name,
    engine_for,
    index_readiness,
    search_settings,
    unavailable,
)
from mercato.search.storefront import (
    ProductDetail,
    StockedProducts,
    VariantChoice,
    find_product,
    list_products,
    product,
    product_detail,
    product_ratings,
    search,
    status,
    stock_text,
    suggest,
)
from mercato.search.synonyms import (
    SYNONYM_TTL,
    SynonymInfo,
    add_synonyms,
    current_synonyms,
    delete_synonyms,
    forget_synonyms,
    list_synonyms,
    normalise_term,
)

__all__ = [
    "AFFINITY_TTL",
    "BATCH",
    "EVENT_TYPES",
    "EXTRAS_KEY",
    "MAX_QUERY_CHARS",
    "PENDING",
    "SALES_RANKS_CHANGED",
    "SYNONYM_TTL",
    "WAREHOUSE_TTL",
    "Affinity",
    "AffinityReader",
    "FeaturedPriceReader",
    "Filters",
    "PendingChanges",
    "ProductData",
    "ProductDetail",
    "Progress",
    "Reach",
    "ReindexStats",
    "Sales",
    "SalesReader",
    "SearchRequest",
    "SearchResult",
    "SearchSettings",
    "StockedProducts",
    "SynonymInfo",
    "VariantChoice",
    "add_synonyms",
    "affinity_readers",
    "category_subtree",
    "category_tree",
    "consumer_name",
    "current_synonyms",
    "current_warehouses",
    "customer_affinity",
    "delete_synonyms",
    "engine_for",
    "featured_price_readers",
    "feeds_index",
    "find_product",
    "forget_affinities",
    "forget_changed",
    "forget_synonyms",
    "forget_warehouses",
    "index_readiness",
    "list_products",
    "list_synonyms",
    "load_sources",
    "normalise_term",
    "product",
    "product_detail",
    "product_ratings",
    "reach",
    "reindex",
    "replay",
    "sales_readers",
    "search",
    "search_settings",
    "status",
    "stock_text",
    "suggest",
    "sync_index",
    "unavailable",
]
