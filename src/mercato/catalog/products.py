"""Products and their variants: creating and changing them (each change publishes its event in
the caller's transaction), and reading them as shoppers and staff see them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from mercato import events
from mercato.catalog.brands import BrandInfo, brand_info
from mercato.catalog.categories import CategoryInfo, category_info
from mercato.catalog.common import (
    UNSET,
    ProductStatus,
    _Unset,
    chunks,
    flush_or_conflict,
    slugify,
    unknown_brand,
    unknown_category,
)
from mercato.catalog.models import PRODUCT_STATUSES, Brand, Category, Product, Variant
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.problems import Problem, not_found, validation_problem


@dataclass(frozen=True, slots=True)
class VariantView:
    id: str
    product_id: str
    sku: str
    title: str
    options: dict[str, str]
    price: int
    compare_at: int | None
    currency: str
    weight_grams: int
    active: bool
    position: int


@dataclass(frozen=True, slots=True)
class ProductView:
    id: str
    title: str
    slug: str
    description: str
    status: str
    brand: BrandInfo | None
    category: CategoryInfo
    attributes: dict[str, Any]
    media: list[str]
    tax_class: str
    currency: str
    min_price: int | None
    max_price: int | None
    created_at: datetime
    updated_at: datetime
    variants: tuple[VariantView, ...]


@dataclass(frozen=True, slots=True)
class NewVariant:
    sku: str
    price: int
    currency: str | None = None  # defaults to the product's currency
    title: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    compare_at: int | None = None
    weight_grams: int = 0
    active: bool = True
    position: int | None = None


@dataclass(frozen=True, slots=True)
class NewProduct:
    title: str
    category_id: str
    currency: str  # the shop's, unless staff name another
    description: str = ""
    slug: str | None = None
    brand_id: str | None = None
    status: ProductStatus = "draft"
    attributes: Mapping[str, Any] = field(default_factory=dict)
    media: Sequence[str] = ()
    tax_class: str = "standard"
    variants: Sequence[NewVariant] = ()


@dataclass(frozen=True, slots=True)
class ProductChanges:
    title: str | _Unset = UNSET
    slug: str | _Unset = UNSET
    description: str | _Unset = UNSET
    brand_id: str | _Unset | None = UNSET
    category_id: str | _Unset = UNSET
    status: ProductStatus | _Unset = UNSET
    attributes: Mapping[str, Any] | _Unset = UNSET
    media: Sequence[str] | _Unset = UNSET
    tax_class: str | _Unset = UNSET
    currency: str | _Unset = UNSET


@dataclass(frozen=True, slots=True)
class VariantChanges:
    sku: str | _Unset = UNSET
    title: str | _Unset = UNSET
    options: Mapping[str, str] | _Unset = UNSET
    price: int | _Unset = UNSET
    compare_at: int | _Unset | None = UNSET
    weight_grams: int | _Unset = UNSET
    active: bool | _Unset = UNSET
    position: int | _Unset = UNSET


# --------------------------------------------------------------------------------------------
# Changes


def _sku_taken(field_name: str, sku: str) -> Problem:
    return Problem(
        409, "sku_taken", f"The SKU {sku!r} is already in use", field=field_name, sku=sku
    )


async def _check_skus_free(uow: UnitOfWork, skus: Sequence[tuple[str, str]]) -> None:
    """``skus`` is (field name, sku) pairs; a duplicate in the request or the table is a 409."""
    seen: set[str] = set()
    for field_name, sku in skus:
        if sku in seen:
            raise _sku_taken(field_name, sku)
        seen.add(sku)
    if not skus:
        return
    taken = set((await uow.scalars(select(Variant.sku).where(Variant.sku.in_(list(seen))))).all())
    for field_name, sku in skus:
        if sku in taken:
            raise _sku_taken(field_name, sku)


async def _require_category(uow: UnitOfWork, category_id: str) -> Category:
    category = await uow.get(Category, category_id)
    if category is None:
        raise unknown_category("category_id", category_id)
    return category


async def _require_brand(uow: UnitOfWork, brand_id: str) -> Brand:
    brand = await uow.get(Brand, brand_id)
    if brand is None:
        raise unknown_brand("brand_id", brand_id)
    return brand


def _check_status(status: str) -> None:
    if status not in PRODUCT_STATUSES:
        raise validation_problem("status", f"must be one of {', '.join(PRODUCT_STATUSES)}")


async def _refresh_price_range(uow: UnitOfWork, product: Product) -> None:
    await uow.flush()
    low, high = (
        await uow.execute(
            select(func.min(Variant.price), func.max(Variant.price)).where(
                Variant.product_id == product.id, Variant.active.is_(True)
            )
        )
    ).one()
    product.min_price, product.max_price = low, high


def _variant_row(product: Product, spec: NewVariant, position: int, now: datetime) -> Variant:
    return Variant(
        id=new_id("var"),
        product_id=product.id,
        sku=spec.sku,
        title=spec.title,
        options=dict(spec.options),
        price=spec.price,
        compare_at=spec.compare_at,
        currency=product.currency,
        weight_grams=spec.weight_grams,
        active=spec.active,
        position=position,
        created_at=now,
        updated_at=now,
    )


def _check_variant_currency(product_currency: str, spec: NewVariant, field_name: str) -> None:
    if spec.currency is not None and spec.currency != product_currency:
        raise validation_problem(
            field_name,
            f"all variants of a product share its currency ({product_currency})",
            code="currency_mismatch",
        )


async def create_product(uow: UnitOfWork, spec: NewProduct) -> ProductView:
    _check_status(spec.status)
    await _require_category(uow, spec.category_id)
    if spec.brand_id is not None:
        await _require_brand(uow, spec.brand_id)
    for i, v in enumerate(spec.variants):
        _check_variant_currency(spec.currency, v, f"variants.{i}.currency")
    await _check_skus_free(uow, [(f"variants.{i}.sku", v.sku) for i, v in enumerate(spec.variants)])
    now = utcnow()
    product = Product(
        id=new_id("prd"),
        title=spec.title,
        slug=spec.slug or slugify(spec.title, 220),
        description=spec.description,
        brand_id=spec.brand_id,
        category_id=spec.category_id,
        status=spec.status,
        attributes=dict(spec.attributes),
        media=list(spec.media),
        tax_class=spec.tax_class,
        currency=spec.currency,
        created_at=now,
        updated_at=now,
    )
    uow.add(product)
    variants = [
        _variant_row(product, v, v.position if v.position is not None else i, now)
        for i, v in enumerate(spec.variants)
    ]
    uow.add_all(variants)
    await flush_or_conflict(uow, _sku_taken("variants", ",".join(v.sku for v in variants)))
    await _refresh_price_range(uow, product)
    await events.publish(
        uow,
        "ProductCreated",
        product.id,
        {
            "product_id": product.id,
            "title": product.title,
            "status": product.status,
            "category_id": product.category_id,
            "brand_id": product.brand_id,
            "variant_ids": [v.id for v in variants],
        },
    )
    await events.publish_many(uow, [_variant_created(v) for v in variants])
    view = await get_product(uow, product.id, include_inactive=True)
    assert view is not None
    return view


def _variant_created(v: Variant) -> tuple[str, str, dict[str, Any]]:
    return (
        "VariantCreated",
        v.id,
        {
            "variant_id": v.id,
            "product_id": v.product_id,
            "sku": v.sku,
            "price": v.price,
            "currency": v.currency,
            "active": v.active,
        },
    )


async def update_product(uow: UnitOfWork, product_id: str, changes: ProductChanges) -> ProductView:
    product = await uow.get(Product, product_id)
    if product is None:
        raise not_found("Product", product_id)
    changed: list[str] = []
    if not isinstance(changes.status, _Unset):
        _check_status(changes.status)
    if not isinstance(changes.category_id, _Unset) and changes.category_id != product.category_id:
        await _require_category(uow, changes.category_id)
    if (
        not isinstance(changes.brand_id, _Unset)
        and changes.brand_id is not None
        and changes.brand_id != product.brand_id
    ):
        await _require_brand(uow, changes.brand_id)
    if not isinstance(changes.currency, _Unset) and changes.currency != product.currency:
        has_variants = await uow.scalar(
            select(func.count()).select_from(Variant).where(Variant.product_id == product.id)
        )
        if has_variants:
            raise validation_problem(
                "currency",
                "the currency of a product with variants cannot change",
                code="currency_mismatch",
            )
    was_archived = product.status == "archived"
    for name in (
        "title",
        "slug",
        "description",
        "brand_id",
        "category_id",
        "status",
        "tax_class",
        "currency",
    ):
        value = getattr(changes, name)
        if not isinstance(value, _Unset) and value != getattr(product, name):
            setattr(product, name, value)
            changed.append(name)
    if (
        not isinstance(changes.attributes, _Unset)
        and dict(changes.attributes) != product.attributes
    ):
        product.attributes = dict(changes.attributes)
        changed.append("attributes")
    if not isinstance(changes.media, _Unset) and list(changes.media) != product.media:
        product.media = list(changes.media)
        changed.append("media")
    if changed:
        product.updated_at = utcnow()
        await uow.flush()
        await events.publish(
            uow,
            "ProductUpdated",
            product.id,
            {"product_id": product.id, "fields": changed, "status": product.status},
        )
        if product.status == "archived" and not was_archived:
            await events.publish(uow, "ProductArchived", product.id, {"product_id": product.id})
    view = await get_product(uow, product.id, include_inactive=True)
    assert view is not None
    return view


async def archive_product(uow: UnitOfWork, product_id: str) -> ProductView:
    return await update_product(uow, product_id, ProductChanges(status="archived"))


async def add_variant(uow: UnitOfWork, product_id: str, spec: NewVariant) -> VariantView:
    product = await uow.get(Product, product_id)
    if product is None:
        raise not_found("Product", product_id)
    _check_variant_currency(product.currency, spec, "currency")
    await _check_skus_free(uow, [("sku", spec.sku)])
    position = spec.position
    if position is None:
        last = await uow.scalar(
            select(func.max(Variant.position)).where(Variant.product_id == product.id)
        )
        position = 0 if last is None else last + 1
    now = utcnow()
    variant = _variant_row(product, spec, position, now)
    uow.add(variant)
    await flush_or_conflict(uow, _sku_taken("sku", spec.sku))
    await _refresh_price_range(uow, product)
    product.updated_at = now
    await events.publish_many(uow, [_variant_created(variant)])
    return _variant_view(variant)


async def update_variant(uow: UnitOfWork, variant_id: str, changes: VariantChanges) -> VariantView:
    variant = await uow.get(Variant, variant_id)
    if variant is None:
        raise not_found("Variant", variant_id)
    if not isinstance(changes.sku, _Unset) and changes.sku != variant.sku:
        await _check_skus_free(uow, [("sku", changes.sku)])
    old_price = variant.price
    changed: list[str] = []
    for name in ("sku", "title", "price", "compare_at", "weight_grams", "active", "position"):
        value = getattr(changes, name)
        if not isinstance(value, _Unset) and value != getattr(variant, name):
            setattr(variant, name, value)
            changed.append(name)
    if not isinstance(changes.options, _Unset) and dict(changes.options) != variant.options:
        variant.options = dict(changes.options)
        changed.append("options")
    if changed:
        now = utcnow()
        variant.updated_at = now
        await flush_or_conflict(uow, _sku_taken("sku", variant.sku))
        product = await uow.get(Product, variant.product_id)
        assert product is not None
        await _refresh_price_range(uow, product)
        product.updated_at = now
        payload: dict[str, Any] = {
            "variant_id": variant.id,
            "product_id": variant.product_id,
            "sku": variant.sku,
            "fields": changed,
            "price": variant.price,
            "currency": variant.currency,
            "active": variant.active,
        }
        if "price" in changed:
            payload["old_price"] = old_price
        await events.publish(uow, "VariantUpdated", variant.id, payload)
    return _variant_view(variant)


# --------------------------------------------------------------------------------------------
# Products: reading


def _variant_view(v: Variant) -> VariantView:
    return VariantView(
        id=v.id,
        product_id=v.product_id,
        sku=v.sku,
        title=v.title,
        options=dict(v.options or {}),
        price=v.price,
        compare_at=v.compare_at,
        currency=v.currency,
        weight_grams=v.weight_grams,
        active=bool(v.active),
        position=v.position,
    )


async def product_views(
    uow: UnitOfWork, products: Sequence[Product], *, only_active_variants: bool
) -> list[ProductView]:
    if not products:
        return []
    product_ids = [p.id for p in products]
    category_ids = sorted({p.category_id for p in products})
    brand_ids = sorted({p.brand_id for p in products if p.brand_id})
    categories = {
        c.id: category_info(c)
        for c in (await uow.scalars(select(Category).where(Category.id.in_(category_ids))))
    }
    brands = (
        {
            b.id: brand_info(b)
            for b in (await uow.scalars(select(Brand).where(Brand.id.in_(brand_ids))))
        }
        if brand_ids
        else {}
    )
    variant_query = select(Variant).where(Variant.product_id.in_(product_ids))
    if only_active_variants:
        variant_query = variant_query.where(Variant.active.is_(True))
    by_product: dict[str, list[VariantView]] = {pid: [] for pid in product_ids}
    for v in await uow.scalars(variant_query.order_by(Variant.position, Variant.id)):
        by_product[v.product_id].append(_variant_view(v))
    return [
        ProductView(
            id=p.id,
            title=p.title,
            slug=p.slug,
            description=p.description,
            status=p.status,
            brand=brands.get(p.brand_id) if p.brand_id else None,
            category=categories[p.category_id],
            attributes=dict(p.attributes or {}),
            media=list(p.media or []),
            tax_class=p.tax_class,
            currency=p.currency,
            min_price=p.min_price,
            max_price=p.max_price,
            created_at=p.created_at,
            updated_at=p.updated_at,
            variants=tuple(by_product[p.id]),
        )
        for p in products
    ]


async def get_product(
    uow: UnitOfWork, product_id: str, *, include_inactive: bool = False
) -> ProductView | None:
    """A product with its variants. Shoppers (the default) see only active products and their
    active variants; staff see everything."""
    product = await uow.get(Product, product_id)
    if product is None or (not include_inactive and product.status != "active"):
        return None
    views = await product_views(uow, [product], only_active_variants=not include_inactive)
    return views[0]


async def get_products(
    uow: UnitOfWork, ids: Collection[str], *, include_inactive: bool = True
) -> dict[str, ProductView]:
    """Products by id (for projections such as the search index); unknown ids are absent."""
    found: dict[str, ProductView] = {}
    for chunk in chunks(sorted(set(ids))):
        query = select(Product).where(Product.id.in_(chunk))
        if not include_inactive:
            query = query.where(Product.status == "active")
        products = (await uow.scalars(query)).all()
        for view in await product_views(uow, products, only_active_variants=not include_inactive):
            found[view.id] = view
    return found


@dataclass(frozen=True, slots=True)
class ProductCard:
    """An active product as a row of suggestions shows it, with its active variants' ids."""

    id: str
    title: str
    slug: str
    brand: str | None
    currency: str
    min_price: int | None
    image: str | None
    variant_ids: tuple[str, ...]


async def product_cards(uow: UnitOfWork, ids: Collection[str]) -> dict[str, ProductCard]:
    """The active ones of these products as cards (unknown, draft and archived ids absent):
    two plain reads, no ORM objects, since suggestion rows sit on every product page."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    p, b, v = Product.__table__.c, Brand.__table__.c, Variant.__table__.c
    variants: dict[str, list[str]] = {}
    for product_id, variant_id in await uow.execute(
        select(v.product_id, v.id)
        .where(v.product_id.in_(wanted), v.active.is_(True))
        .order_by(v.product_id, v.position, v.id)
    ):
        variants.setdefault(product_id, []).append(variant_id)
    # The status is checked here, not in the WHERE: by the ids alone every planner takes the
    # primary key, while "AND status = ?" let SQLite without statistics pick the status index
    # and scan every active product (177 ms at a million products).
    rows = [
        row[:-1]
        for row in await uow.execute(
            select(p.id, p.title, p.slug, b.name, p.currency, p.min_price, p.media, p.status)
            .outerjoin(Brand.__table__, b.id == p.brand_id)
            .where(p.id.in_(wanted))
        )
        if row[-1] == "active"
    ]
    return {
        pid: ProductCard(
            pid,
            title,
            slug,
            brand,
            currency,
            min_price,
            (media or [None])[0],
            tuple(variants.get(pid, ())),
        )
        for pid, title, slug, brand, currency, min_price, media in rows
    }


@dataclass(frozen=True, slots=True)
class ProductGroups:
    """The brand and category a product belongs to, by slug (the category's path: its slugs
    from the root, "/"-separated)."""

    brand: str | None
    category_path: str


async def product_groups(uow: UnitOfWork, ids: Collection[str]) -> dict[str, ProductGroups]:
    """The brand and category of these products, whatever their status (unknown ids absent):
    one plain read per chunk, no ORM objects."""
    p, b, c = Product.__table__.c, Brand.__table__.c, Category.__table__.c
    found: dict[str, ProductGroups] = {}
    for chunk in chunks(sorted(set(ids))):
        rows = await uow.execute(
            select(p.id, b.slug, c.path)
            .join(Category.__table__, c.id == p.category_id)
            .outerjoin(Brand.__table__, b.id == p.brand_id)
            .where(p.id.in_(chunk))
        )
        for product_id, brand, path in rows:
            found[product_id] = ProductGroups(brand, path)
    return found


# --------------------------------------------------------------------------------------------
# For the back office


@dataclass(frozen=True, slots=True)
class StaffProductPage:
    items: list[ProductView]
    next_before: str | None  # pass as ``before`` for the next (older) page


async def staff_products(
    uow: UnitOfWork,
    *,
    text: str | None = None,
    status: str | None = None,
    before: str | None = None,
    limit: int = 25,
) -> StaffProductPage:
    """Products of any status for the back office, newest first (ids sort by creation), with
    all their variants: those whose title or one of whose SKUs contains ``text`` (any case),
    of one ``status`` when given, after the id ``before`` (keyset paging)."""
    if not 1 <= limit <= 100:
        raise validation_problem("limit", "must be between 1 and 100")
    query = select(Product)
    if status is not None:
        _check_status(status)
        query = query.where(Product.status == status)
    needle = (text or "").strip()
    if needle:
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        by_sku = select(Variant.product_id).where(Variant.sku.ilike(pattern, escape="\\"))
        query = query.where(or_(Product.title.ilike(pattern, escape="\\"), Product.id.in_(by_sku)))
    if before is not None:
        query = query.where(Product.id < before)
    rows = list((await uow.scalars(query.order_by(Product.id.desc()).limit(limit + 1))).all())
    next_before = rows[limit - 1].id if len(rows) > limit else None
    views = await product_views(uow, rows[:limit], only_active_variants=False)
    return StaffProductPage(views, next_before)


# --------------------------------------------------------------------------------------------
# For the storefront


async def get_product_by_slug(uow: UnitOfWork, slug: str) -> ProductView | None:
    """The active product with this slug (slugs are not unique: the oldest such product), with
    its active variants; None when there is none."""
    product = await uow.scalar(
        select(Product)
        .where(Product.slug == slug, Product.status == "active")
        .order_by(Product.id)
        .limit(1)
    )
    if product is None:
        return None
    return (await product_views(uow, [product], only_active_variants=True))[0]


# --------------------------------------------------------------------------------------------
# Stock on product answers (the inventory module knows it; it is wired in by modules.wire)


@dataclass(frozen=True, slots=True)
class StockNote:
    """What anyone may know of a variant's stock: whether any is left, and a hint when few
    are (never the count itself)."""

    in_stock: bool
    hint: str | None = None
    available_elsewhere: bool = False
    """None can reach the destination asked for, but some could go elsewhere: "not available
    for delivery to Germany" rather than "out of stock"."""


NO_STOCK = StockNote(False)

StockReader = Callable[
    [UnitOfWork, Collection[str], str | None], Awaitable[Mapping[str, StockNote]]
]

stock_readers: list[StockReader] = []
"""How the catalog's own answers learn stock: the inventory module, which sits above the
catalog, registers its reader here (``modules.wire``) instead of the catalog importing it."""


async def stock_notes(
    uow: UnitOfWork, variant_ids: Collection[str], country: str | None = None
) -> dict[str, StockNote]:
    """Each variant's stock note for delivery to ``country`` (anywhere when ``None``) from the
    registered readers (no stock when none knows)."""
    found: dict[str, StockNote] = {}
    for reader in stock_readers:
        found.update(await reader(uow, variant_ids, country))
    return found
