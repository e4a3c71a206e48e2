"""Inventory's public face: receive, adjust, reserve, commit, release, expire, restock, and the
ledger. Other modules import this file only; the rules live by family in

* :mod:`~mercato.inventory.reserve`: holds for an owner, selling and giving them back;
* :mod:`~mercato.inventory.holds`: selling a long-lived hold a few units at a time;
* :mod:`~mercato.inventory.stock`: reading stock rows, and the staff's changes to them;
* :mod:`~mercato.inventory.counts`: stock counts (setting what is free), the default warehouse;
* :mod:`~mercato.inventory.warehouses`: warehouses, and the catalog variants stock is kept for;
* :mod:`~mercato.inventory.serving`: which warehouse would serve a destination (delivery dates);
* :mod:`~mercato.inventory.ledger`: the movement rows, ``StockChanged`` events and the check;
* :mod:`~mercato.inventory.common`: tables, limits and what callers see.

Every function takes the caller's :class:`~mercato.db.UnitOfWork` first and writes its ledger
rows and events in it; anything that locks stock rows belongs in a unit of work opened with
:meth:`~mercato.db.Database.run`, which retries it on a PostgreSQL deadlock.
"""

from __future__ import annotations

from mercato.inventory.common import (
    DEFAULT_LOW_STOCK_THRESHOLD,
    DEFAULT_TTL_SECONDS,
    MAX_QUANTITY,
    MOVEMENTS,
    RESERVATIONS,
    STOCK,
    STOCK_CHANGED,
    WAREHOUSES,
    ReservationInfo,
    StockLevel,
    StockSpread,
    WarehouseInfo,
    availability,
    check_quantity,
    low_stock_hint,
    normalize_country,
    stock_spreads,
)
from mercato.inventory.counts import (
    WarehouseStock,
    default_warehouse,
    set_available,
    warehouse_stock,
)
from mercato.inventory.holds import SoldFromHold, sell_from_hold
from mercato.inventory.ledger import (
    LEDGER_RULE,
    LedgerDifference,
    check_ledger,
    count_stock_rows,
)
from mercato.inventory.reserve import (
    RESERVE_ATTEMPTS,
    active_reservations,
    commit,
    expire_due,
    list_reservations,
    plan_holds,
    release,
    reserve,
    sum_lines,
)
from mercato.inventory.serving import ServingWarehouse, serving_warehouses
from mercato.inventory.stock import (
    LowStock,
    LowStockVariant,
    adjust,
    available_by_warehouse,
    low_stock,
    low_stock_variants,
    receive,
    restock,
    stock_for_variant,
    stock_for_variants,
    stock_notes,
)
from mercato.inventory.warehouses import (
    DEFAULT_HANDLING_DAYS,
    MAX_HANDLING_DAYS,
    VariantRef,
    create_warehouse,
    get_warehouse,
    list_warehouses,
    resolve_variant,
    set_handling_days,
    shipping_countries,
    warehouse_listeners,
)

__all__ = [
    "DEFAULT_HANDLING_DAYS",
    "DEFAULT_LOW_STOCK_THRESHOLD",
    "DEFAULT_TTL_SECONDS",
    "LEDGER_RULE",
    "MAX_HANDLING_DAYS",
    "MAX_QUANTITY",
    "MOVEMENTS",
    "RESERVATIONS",
    "RESERVE_ATTEMPTS",
    "STOCK",
    "STOCK_CHANGED",
    "WAREHOUSES",
    "LedgerDifference",
    "LowStock",
    "LowStockVariant",
    "ReservationInfo",
    "ServingWarehouse",
    "SoldFromHold",
    "StockLevel",
    "StockSpread",
    "VariantRef",
    "WarehouseInfo",
    "WarehouseStock",
    "active_reservations",
    "adjust",
    "availability",
    "available_by_warehouse",
    "check_ledger",
    "check_quantity",
    "commit",
    "count_stock_rows",
    "create_warehouse",
    "default_warehouse",
    "expire_due",
    "get_warehouse",
    "list_reservations",
    "list_warehouses",
    "low_stock",
    "low_stock_hint",
    "low_stock_variants",
    "normalize_country",
    "plan_holds",
    "receive",
    "release",
    "reserve",
    "resolve_variant",
    "restock",
    "sell_from_hold",
    "serving_warehouses",
    "set_available",
    "set_handling_days",
    "shipping_countries",
    "stock_for_variant",
    "stock_for_variants",
    "stock_notes",
    "stock_spreads",
    "sum_lines",
    "warehouse_listeners",
    "warehouse_stock",
]
