"""The catalog's HTTP face: public browsing under ``/api``, staff changes under ``/api/admin``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from mercato.catalog import service
from mercato.catalog.schemas import (
    BrandIn,
    CategoryIn,
    CategoryPatch,
    ProductIn,
    ProductPatch,
    VariantIn,
    VariantPatch,
    normalise_attributes,
)
from mercato.catalog.service import (
    BrandInfo,
    CategoryInfo,
    CategoryNode,
    ProductView,
    VariantView,
)
from mercato.identity.deps import OptionalUser, require_role
from mercato.inventory import service as inventory
from mercato.money import CurrencyCode, DecimalStr, MoneyError, format_minor, to_minor
from mercato.problems import not_found, validation_problem
from mercato.runtime import RuntimeDep, SessionDep
from mercato.search import service as search

public = APIRouter(prefix="/api", tags=["catalog"])
admin = APIRouter(
    prefix="/api/admin",
    tags=["catalog admin"],
    dependencies=[Depends(require_role("staff"))],
)

MAX_ATTRIBUTE_FILTERS = 20
ATTR_PREFIX = "attr."
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


# --------------------------------------------------------------------------------------------
# Shaping answers (the one place a product becomes JSON, so other modules' data can join it)


def _money(amount: int | None, currency: str) -> str | None:
    return None if amount is None else format_minor(amount, currency)


def category_json(c: CategoryInfo) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "slug": c.slug,
        "path": c.path,
        "depth": c.depth,
        "position": c.position,
        "parent_id": c.parent_id,
    }


def tree_json(node: CategoryNode) -> dict[str, Any]:
    return {**category_json(node.category), "children": [tree_json(n) for n in node.children]}


def brand_json(b: BrandInfo) -> dict[str, Any]:
    return {"id": b.id, "name": b.name, "slug": b.slug}


def variant_json(v: VariantView) -> dict[str, Any]:
    return {
        "id": v.id,
        "product_id": v.product_id,
        "sku": v.sku,
        "title": v.title,
        "options": v.options,
        "price": format_minor(v.price, v.currency),
        "compare_at_price": _money(v.compare_at, v.currency),
        "currency": v.currency,
        "weight_grams": v.weight_grams,
        "active": v.active,
        "position": v.position,
    }


def product_json(p: ProductView, *, detail: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": p.id,
        "title": p.title,
        "slug": p.slug,
        "status": p.status,
        "brand": brand_json(p.brand) if p.brand else None,
        "category": {
            "id": p.category.id,
            "name": p.category.name,
            "slug": p.category.slug,
            "path": p.category.path,
        },
        "attributes": p.attributes,
        "media": p.media,
        "min_price": _money(p.min_price, p.currency),
        "max_price": _money(p.max_price, p.currency),
        "currency": p.currency,
        "created_at": p.created_at.isoformat(),
        "variants": [variant_json(v) for v in p.variants],
    }
    if detail:
        body["description"] = p.description
        body["tax_class"] = p.tax_class
        body["updated_at"] = p.updated_at.isoformat()
    return body


async def present_products(
    session: AsyncSession, products: list[ProductView], *, detail: bool = False
) -> list[dict[str, Any]]:
    """Products as the API answers them. Data owned by other modules (stock hints, ratings)
    joins the dicts here, looked up in one batch per page."""
    answers = [product_json(p, detail=detail) for p in products]
    variants = [v for answer in answers for v in answer["variants"]]
    available = await inventory.availability(session, [v["id"] for v in variants])
    for variant in variants:
        units = available.get(variant["id"], 0)
        variant["in_stock"] = variant["active"] and units > 0
        variant["stock_hint"] = inventory.low_stock_hint(units) if variant["active"] else None
    for answer in answers:
        answer["in_stock"] = any(v["in_stock"] for v in answer["variants"])
    return answers


def _minor(amount: str, currency: str, field: str) -> int:
    try:
        return to_minor(amount, currency)
    except MoneyError as exc:
        raise validation_problem(field, str(exc)) from exc


# --------------------------------------------------------------------------------------------
# Public browsing


@public.get("/categories")
async def category_tree(session: SessionDep) -> dict[str, Any]:
    """The whole category tree, roots first, children nested."""
    return {"items": [tree_json(n) for n in await service.get_category_tree(session)]}


@public.get("/categories/{slug}")
async def category_detail(slug: str, session: SessionDep) -> dict[str, Any]:
    found = await service.get_category_subtree(session, slug)
    if found is None:
        raise not_found("Category", slug)
    node, ancestors = found
    return {**tree_json(node), "ancestors": [category_json(a) for a in ancestors]}


@public.get("/brands")
async def brands(session: SessionDep) -> dict[str, Any]:
    return {"items": [brand_json(b) for b in await service.list_brands(session)]}


def _attribute_filters(request: Request) -> dict[str, list[str]]:
    """``attr.colour=red&attr.colour=blue&attr.size=M`` → {colour: [red, blue], size: [M]}:
    values of one attribute are alternatives, different attributes must all match."""
    filters: dict[str, list[str]] = {}
    count = 0
    for key, value in request.query_params.multi_items():
        if not key.startswith(ATTR_PREFIX):
            continue
        name = key[len(ATTR_PREFIX) :]
        count += 1
        if count > MAX_ATTRIBUTE_FILTERS:
            raise validation_problem(key, f"at most {MAX_ATTRIBUTE_FILTERS} attribute filters")
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise validation_problem(key, "not an attribute name")
        if len(value) > 200:
            raise validation_problem(key, "at most 200 characters")
        filters.setdefault(name, []).append(value)
    return filters


@public.get("/products")
async def list_products(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    category: Annotated[str | None, Query(max_length=80)] = None,
    brand: Annotated[str | None, Query(max_length=80)] = None,
    min_price: Annotated[DecimalStr | None, Query()] = None,
    max_price: Annotated[DecimalStr | None, Query()] = None,
    currency: Annotated[CurrencyCode | None, Query()] = None,
    sort: service.Sort = "newest",
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 24,
) -> dict[str, Any]:
    """Active products, newest first or by price, filtered by category (with its descendants),
    brand, price range and attributes (``attr.<name>=<value>``), in keyset pages.

    Read from the search index (then hydrated by id); the catalog query answers while no index
    has been built, and continues pages whose cursor it issued."""
    price_currency = currency or "EUR"
    low = _minor(min_price, price_currency, "min_price") if min_price is not None else None
    high = _minor(max_price, price_currency, "max_price") if max_price is not None else None
    if low is not None and high is not None and low > high:
        raise validation_problem("max_price", "must not be below min_price")
    query = service.ProductQuery(
        category_slug=category,
        brand_slug=brand,
        min_price=low,
        max_price=high,
        currency=price_currency if (currency or low is not None or high is not None) else None,
        attributes=_attribute_filters(request),
        sort=sort,
        limit=limit,
    )
    page = await search.list_products(runtime, session, query, cursor)
    if page is None:
        page = await service.list_products(
            session, query, secret_key=runtime.settings.secret_key, cursor=cursor
        )
    return {
        "items": await present_products(session, page.items),
        "next_cursor": page.next_cursor,
    }


@public.get("/products/{product_id}")
async def product_detail(
    product_id: str, session: SessionDep, user: OptionalUser
) -> dict[str, Any]:
    """A product with its variants; drafts and archived products are visible to staff only."""
    staff = user is not None and user.role == "staff"
    view = await service.get_product(session, product_id, include_inactive=staff)
    if view is None:
        raise not_found("Product", product_id)
    return (await present_products(session, [view], detail=True))[0]


# --------------------------------------------------------------------------------------------
# Staff changes


@admin.post("/categories", status_code=201)
async def create_category(body: CategoryIn, session: SessionDep) -> dict[str, Any]:
    category = await service.create_category(
        session, name=body.name, slug=body.slug, parent_id=body.parent_id, position=body.position
    )
    return category_json(category)


@admin.patch("/categories/{category_id}")
async def update_category(
    category_id: str, body: CategoryPatch, session: SessionDep
) -> dict[str, Any]:
    changes = service.CategoryChanges(**body.model_dump(exclude_unset=True))
    return category_json(await service.update_category(session, category_id, changes))


@admin.post("/brands", status_code=201)
async def create_brand(body: BrandIn, session: SessionDep) -> dict[str, Any]:
    return brand_json(await service.create_brand(session, name=body.name, slug=body.slug))


def _new_variant(body: VariantIn, currency: str, field_prefix: str) -> service.NewVariant:
    # Amounts are read in the variant's own currency when it names one, so that a mismatch is
    # reported as such rather than as a decimal-places error.
    own = body.currency or currency
    return service.NewVariant(
        sku=body.sku,
        price=_minor(body.price, own, f"{field_prefix}price"),
        currency=body.currency,
        title=body.title,
        options=body.options,
        compare_at=(
            _minor(body.compare_at_price, own, f"{field_prefix}compare_at_price")
            if body.compare_at_price is not None
            else None
        ),
        weight_grams=body.weight_grams,
        active=body.active,
        position=body.position,
    )


@admin.post("/products", status_code=201)
async def create_product(body: ProductIn, session: SessionDep) -> dict[str, Any]:
    currency = body.currency or next((v.currency for v in body.variants if v.currency), "EUR")
    spec = service.NewProduct(
        title=body.title,
        slug=body.slug,
        description=body.description,
        category_id=body.category_id,
        brand_id=body.brand_id,
        status=body.status,
        attributes=normalise_attributes(body.attributes),
        media=body.media,
        tax_class=body.tax_class,
        currency=currency,
        variants=[_new_variant(v, currency, f"variants.{i}.") for i, v in enumerate(body.variants)],
    )
    view = await service.create_product(session, spec)
    return (await present_products(session, [view], detail=True))[0]


@admin.get("/products/{product_id}")
async def admin_product_detail(product_id: str, session: SessionDep) -> dict[str, Any]:
    view = await service.get_product(session, product_id, include_inactive=True)
    if view is None:
        raise not_found("Product", product_id)
    return (await present_products(session, [view], detail=True))[0]


@admin.patch("/products/{product_id}")
async def update_product(
    product_id: str, body: ProductPatch, session: SessionDep
) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    if "attributes" in values:
        values["attributes"] = normalise_attributes(values["attributes"])
    view = await service.update_product(session, product_id, service.ProductChanges(**values))
    return (await present_products(session, [view], detail=True))[0]


@admin.post("/products/{product_id}/archive")
async def archive_product(product_id: str, session: SessionDep) -> dict[str, Any]:
    view = await service.archive_product(session, product_id)
    return (await present_products(session, [view], detail=True))[0]


@admin.post("/products/{product_id}/variants", status_code=201)
async def add_variant(product_id: str, body: VariantIn, session: SessionDep) -> dict[str, Any]:
    product = await service.get_product(session, product_id, include_inactive=True)
    if product is None:
        raise not_found("Product", product_id)
    variant = await service.add_variant(
        session, product_id, _new_variant(body, product.currency, "")
    )
    return variant_json(variant)


@admin.patch("/variants/{variant_id}")
async def update_variant(
    variant_id: str, body: VariantPatch, session: SessionDep
) -> dict[str, Any]:
    current = (await service.get_variants(session, [variant_id])).get(variant_id)
    if current is None:
        raise not_found("Variant", variant_id)
    values = body.model_dump(exclude_unset=True)
    if "price" in values:
        values["price"] = _minor(values["price"], current.currency, "price")
    if "compare_at_price" in values:
        amount = values.pop("compare_at_price")
        values["compare_at"] = (
            None if amount is None else _minor(amount, current.currency, "compare_at_price")
        )
    variant = await service.update_variant(session, variant_id, service.VariantChanges(**values))
    return variant_json(variant)


router = APIRouter()
router.include_router(public)
router.include_router(admin)
