"""Search test helpers: a seeded demo catalog with its index built, the worker's sync, and the
brute-force truth every index answer is checked against."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mercato import worker
from mercato.catalog import service as catalog
from mercato.catalog.demo import seed_catalog
from mercato.db import UnitOfWork
from mercato.events import dispatcher
from mercato.inventory import service as inventory
from mercato.inventory.demo import seed_inventory
from mercato.modules import wire
from mercato.runtime import Runtime
from mercato.search import service
from mercato.search.engine import demo_signals
from mercato.settings import Settings

PRODUCTS = 240


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Demo mode gives every product a (synthetic, deterministic) rating and sales figure.
    return settings.model_copy(update={"demo_mode": True})


def runtime_of(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def sync(app: FastAPI) -> dict[str, int]:
    """What the worker does in one pass: deliver the outbox, then apply and commit."""
    return await worker.run_once(runtime_of(app))


async def sync_search(app: FastAPI) -> int:
    """The search share of a worker pass only (delivery to the search consumer, then sync)."""
    wire()
    runtime = runtime_of(app)
    await dispatcher.dispatch_once(runtime)
    return await service.sync_index(runtime, bootstrap=False)


async def reindex(app: FastAPI) -> service.ReindexStats:
    return await service.reindex(runtime_of(app))


@dataclass(frozen=True)
class Truth:
    """A listed product as the database has it, for brute-force answers."""

    id: str
    title: str
    brand: str | None
    category_path: str
    attributes: dict[str, str]
    options: set[tuple[str, str]]
    min_price: int
    in_stock: bool
    rating: float
    sales: int
    created_at: Any

    @property
    def category_slugs(self) -> set[str]:
        return set(self.category_path.split("/"))

    @property
    def pairs(self) -> set[tuple[str, str]]:
        return set(self.attributes.items()) | self.options


async def units_to(session: UnitOfWork, variant_ids: list[str], country: str) -> dict[str, int]:
    """Brute force: each variant's units available to ``country``, summed over its stock rows
    in the active warehouses shipping there."""
    reaching = {
        w.id
        for w in await inventory.list_warehouses(session)
        if w.active and country in w.countries
    }
    levels = await inventory.stock_for_variants(session, variant_ids)
    return {
        v: sum(level.available for level in rows if level.warehouse_id in reaching)
        for v, rows in levels.items()
    }


async def truth(app: FastAPI, country: str | None = None) -> dict[str, Truth]:
    """The listed products as the database has them, stock for ``country`` (by default the
    shop's default country: the destination of a request that names none)."""
    runtime = runtime_of(app)
    country = country or runtime.settings.default_country
    async with runtime.db.transaction() as session:
        ids = await catalog.listed_product_ids(session, limit=100_000)
        views = await catalog.get_products(session, ids, include_inactive=False)
        variant_ids = [v.id for view in views.values() for v in view.variants]
        stock = await units_to(session, variant_ids, country)
    found = {}
    for view in views.values():
        rating, _, sales = demo_signals(view.id)
        found[view.id] = Truth(
            id=view.id,
            title=view.title,
            brand=view.brand.slug if view.brand else None,
            category_path=view.category.path,
            attributes={k: str(v) for k, v in view.attributes.items()},
            options={(k, v) for variant in view.variants for k, v in variant.options.items()},
            min_price=int(view.min_price or 0),
            in_stock=any(stock.get(v.id, 0) > 0 for v in view.variants),
            rating=rating,
            sales=sales,
            created_at=view.created_at,
        )
    return found


@pytest.fixture
async def shop(app: FastAPI) -> dict[str, Truth]:
    """The demo catalog (a few hundred products with stock), indexed."""
    runtime = runtime_of(app)
    variant_ids = await seed_catalog(
        runtime.db, PRODUCTS, seed=11, currency=runtime.settings.currency
    )
    await seed_inventory(runtime.db, variant_ids, seed=11)
    await reindex(app)
    return await truth(app)


async def all_pages(
    client: httpx.AsyncClient, path: str, params: Iterable[tuple[str, str]], limit: int = 100
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every hit over every page (and each page's body), following ``next_cursor``."""
    hits: list[dict[str, Any]] = []
    bodies: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        query = [*params, ("limit", str(limit))] + ([("cursor", cursor)] if cursor else [])
        r = await client.get(path, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        bodies.append(body)
        hits.extend(body["hits"] if "hits" in body else body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return hits, bodies
    raise AssertionError("pagination did not end")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body
