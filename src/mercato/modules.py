"""The list of domain modules, in dependency order, and the one place they are wired together.

Adding a module means adding its name here. Its ``models`` (tables), ``api`` (router) and
``events`` are picked up by convention; ``events`` declares, as data, the module's outbox
``CONSUMERS``, worker ``JOBS`` and ``WORKFLOWS``. :func:`wire` registers all of them and the
hooks between modules, explicitly: importing a module never registers anything by itself.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from fastapi import APIRouter

from mercato import events, worker, workflows

MODULES: tuple[str, ...] = (
    "identity",
    "catalog",
    "inventory",
    "reviews",
    "cart",
    "payments",
    "orders",
    "marketplace",
    "checkout",
    "flashsale",
    "search",
    "recommendations",
    "fulfilment",
    "returns",
    "notifications",
    "web",
)


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name):
            raise
        return None


def load_models() -> None:
    import mercato.events
    import mercato.workflows  # noqa: F401  (the workflow runs)

    for module in MODULES:
        _import(f"mercato.{module}.models")


ROUTED_FIRST: tuple[str, ...] = ("flashsale",)
"""Modules whose routes are matched before the others'. Routes are matched one by one in
order, and a flash sale's crowd polls its waiting room hundreds of times a second: matching it
behind the 200 routes of the modules above cost a quarter of each poll's CPU. Their paths
overlap no other module's, so the order changes what is matched nowhere."""


def routers() -> list[APIRouter]:
    found = []
    for module in (*ROUTED_FIRST, *(m for m in MODULES if m not in ROUTED_FIRST)):
        api = _import(f"mercato.{module}.api")
        if api is not None:
            found.append(api.router)
    return found


def workflows_declared() -> dict[str, workflows.Workflow[Any]]:
    """Every workflow the modules declare (``WORKFLOWS`` in their ``events.py``), by name."""
    found: dict[str, workflows.Workflow[Any]] = {}
    for module in MODULES:
        declared = _import(f"mercato.{module}.events")
        for workflow in getattr(declared, "WORKFLOWS", ()) if declared is not None else ():
            found[workflow.name] = workflow
    return found


_wired = False


def wire() -> None:
    """Register every module's consumers, jobs and workflows, and the hooks between modules.
    Idempotent; called by the app factory, the CLI and the test fixtures."""
    global _wired
    if _wired:
        return
    for module in MODULES:
        declared = _import(f"mercato.{module}.events")
        if declared is None:
            continue
        for consumer in getattr(declared, "CONSUMERS", ()):
            events.dispatcher.register(consumer)
        for job in getattr(declared, "JOBS", ()):
            worker.register(job)
    for workflow in workflows_declared().values():
        workflows.register(workflow)
    _hooks()
    _wired = True


def _hooks() -> None:
    """Hooks by which a lower module lets a higher one take part in its work."""
    from mercato.cart import api as cart_api
    from mercato.catalog import service as catalog
    from mercato.checkout import service as checkout
    from mercato.fulfilment import service as fulfilment
    from mercato.identity import service as identity
    from mercato.inventory import service as inventory
    from mercato.marketplace import service as marketplace
    from mercato.orders import service as orders
    from mercato.recommendations import affinity
    from mercato.reviews import service as reviews
    from mercato.search import service as search

    # Logging in: the guest cart the request carries joins the customer's cart.
    identity.after_login_hooks.append(cart_api.merge_guest_cart_on_login)
    # The shop delivers where some warehouse ships to and some shipping zone covers.
    identity.served_country_readers.append(inventory.shipping_countries)
    identity.served_country_readers.append(checkout.ship_to_countries)
    # A verified address: the orders placed with it as a guest join the account.
    identity.verified_email_hooks.append(orders.join_guest_orders)
    # A signed-in customer who chose no country is delivered to their default address.
    identity.default_country_readers.append(identity.default_address_country)
    # Product answers say whether each variant is in stock, which the inventory module knows.
    catalog.stock_readers.append(inventory.stock_notes)
    # A search maps the shopper's country to warehouses it keeps a few seconds: a change to
    # the warehouses makes it read them again.
    inventory.warehouse_listeners.append(search.forget_warehouses)
    # An order's page shows its shipments, which live in the fulfilment module.
    orders.shipment_readers.append(fulfilment.order_shipments)
    # A review is a verified purchase when the product was delivered, which fulfilment knows.
    reviews.purchase_checks.append(fulfilment.received_product)
    # The index ranks products by their sales, which the orders module computes.
    search.sales_readers.append(orders.sales_ranks)
    # A signed-in customer's search re-ranks its top results by the brands and categories
    # they buy and look at, which the recommendations module tells from their orders and views.
    search.affinity_readers.append(affinity.shopper_affinity)

    from mercato.recommendations import service as recommendations

    # Logging in: the guest's recently viewed products join the customer's list.
    identity.after_login_hooks.append(recommendations.merge_viewed_on_login)
    # A marketplace offer that wins a product's buy box sets the price listings show.
    search.featured_price_readers.append(marketplace.featured_prices)
    # The house's landed price counts the checkout's cheapest shipping to the destination.
    marketplace.shipping_readers.append(checkout.cheapest_shipping)

    from mercato.cart import service as cart

    # A cart line may buy a marketplace seller's offer, which the marketplace checks and
    # prices (the cart sits below it).
    cart.offer_readers.append(marketplace.cart_line_offer)
    cart.offer_price_readers.append(marketplace.cart_line_offers)
    # An order's page says who sells each of its parts, which the marketplace knows.
    orders.seller_name_readers.append(marketplace.seller_names)

    from mercato.returns import service as returns

    # A seller's performance (and so its buy-box standing) is counted from its order parts,
    # their shipments, returns and reviews; the returns module reads them all (it sits above).
    marketplace.performance_readers.append(returns.seller_performance)

    from mercato import observability
    from mercato.flashsale import service as flashsale

    # A process is ready to serve when it can open the search index.
    observability.readiness_checks["search_index"] = search.index_readiness
    # The metrics show each open flash sale's waiting room.
    observability.gauge_readers.append(
        observability.gauge(
            "mercato_flashsale_queue_length",
            "Buyers in a flash sale's waiting room, by sale and state (waiting, admitted)",
            ["sale", "state"],
            flashsale.queue_lengths,
        )
    )
