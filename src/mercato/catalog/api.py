"""The catalog's HTTP face: the category tree and brands under ``/api``, staff changes under
``/api/admin``. The storefront's product reads (the listing, a product with its availability)
compose the search index and stock with the catalog, so they live in ``search.api``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from mercato.catalog import service
from mercato.catalog.schemas import (
    BrandIn,
    CategoryIn,
    CategoryPatch,
    ProductIn,
    ProductPatch,
    VariantIn,
    VariantPatch,
    brand_json,
    category_json,
    minor,
    new_product,
    new_variant,
    product_changes,
    product_json,
    tree_json,
    variant_json,
)
from mercato.catalog.service import ProductView
from mercato.db import UnitOfWork
from mercato.identity.deps import require_role
from mercato.openapi import problems
from mercato.problems import not_found
from mercato.runtime import RuntimeDep, UowDep

public = APIRouter(prefix="/api", tags=["catalog"])
admin = APIRouter(
    prefix="/api/admin",
    tags=["catalog admin"],
    dependencies=[Depends(require_role("staff"))],
)


async def _answer(uow: UnitOfWork, view: ProductView) -> dict[str, Any]:
    """A product as the staff API answers it: in full, with its variants' stock."""
    stock = await service.stock_notes(uow, [v.id for v in view.variants])
    return product_json(view, detail=True, stock=stock)


# --------------------------------------------------------------------------------------------
# Public browsing


@public.get("/categories")
async def category_tree(uow: UowDep) -> dict[str, Any]:
    """The whole category tree, roots first, children nested."""
    return {"items": [tree_json(n) for n in await service.get_category_tree(uow)]}


@public.get("/categories/{slug}")
async def category_detail(slug: str, uow: UowDep) -> dict[str, Any]:
    found = await service.get_category_subtree(uow, slug)
    if found is None:
        raise not_found("Category", slug)
    node, ancestors = found
    return {**tree_json(node), "ancestors": [category_json(a) for a in ancestors]}


@public.get("/brands")
async def brands(uow: UowDep) -> dict[str, Any]:
    return {"items": [brand_json(b) for b in await service.list_brands(uow)]}


# --------------------------------------------------------------------------------------------
# Staff changes


@admin.post("/categories", status_code=201, responses=problems(409))
async def create_category(body: CategoryIn, uow: UowDep) -> dict[str, Any]:
    category = await service.create_category(
        uow, name=body.name, slug=body.slug, parent_id=body.parent_id, position=body.position
    )
    return category_json(category)


@admin.patch("/categories/{category_id}", responses=problems(409))
async def update_category(category_id: str, body: CategoryPatch, uow: UowDep) -> dict[str, Any]:
    changes = service.CategoryChanges(**body.model_dump(exclude_unset=True))
    return category_json(await service.update_category(uow, category_id, changes))


@admin.post("/brands", status_code=201, responses=problems(409))
async def create_brand(body: BrandIn, uow: UowDep) -> dict[str, Any]:
    return brand_json(await service.create_brand(uow, name=body.name, slug=body.slug))


@admin.post("/products", status_code=201, responses=problems(409))
async def create_product(body: ProductIn, uow: UowDep, runtime: RuntimeDep) -> dict[str, Any]:
    view = await service.create_product(uow, new_product(body, runtime.settings.currency))
    return await _answer(uow, view)


@admin.get("/products/{product_id}")
async def admin_product_detail(product_id: str, uow: UowDep) -> dict[str, Any]:
    view = await service.get_product(uow, product_id, include_inactive=True)
    if view is None:
        raise not_found("Product", product_id)
    return await _answer(uow, view)


@admin.patch("/products/{product_id}", responses=problems(409))
async def update_product(product_id: str, body: ProductPatch, uow: UowDep) -> dict[str, Any]:
    view = await service.update_product(uow, product_id, product_changes(body))
    return await _answer(uow, view)


@admin.post("/products/{product_id}/archive")
async def archive_product(product_id: str, uow: UowDep) -> dict[str, Any]:
    return await _answer(uow, await service.archive_product(uow, product_id))


@admin.post("/products/{product_id}/variants", status_code=201, responses=problems(409))
async def add_variant(product_id: str, body: VariantIn, uow: UowDep) -> dict[str, Any]:
    product = await service.get_product(uow, product_id, include_inactive=True)
    if product is None:
        raise not_found("Product", product_id)
    variant = await service.add_variant(uow, product_id, new_variant(body, product.currency))
    return variant_json(variant)


@admin.patch("/variants/{variant_id}", responses=problems(409))
async def update_variant(variant_id: str, body: VariantPatch, uow: UowDep) -> dict[str, Any]:
    current = (await service.get_variants(uow, [variant_id])).get(variant_id)
    if current is None:
        raise not_found("Variant", variant_id)
    values = body.model_dump(exclude_unset=True)
    if "price" in values:
        values["price"] = minor(values["price"], current.currency, "price")
    if "compare_at_price" in values:
        amount = values.pop("compare_at_price")
        values["compare_at"] = (
            None if amount is None else minor(amount, current.currency, "compare_at_price")
        )
    variant = await service.update_variant(uow, variant_id, service.VariantChanges(**values))
    return variant_json(variant)


router = APIRouter()
router.include_router(public)
router.include_router(admin)
