"""Catalog rules: the category tree, brands, products and variants, listing with keyset pages.

Amounts are integer minor units here; the API turns decimal strings into them and back.
Every change publishes a domain event into the outbox in the caller's transaction.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Row, Table, and_, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from mercato import events
from mercato.catalog.models import PRODUCT_STATUSES, Brand, Category, Product, Variant
from mercato.db import utcnow
from mercato.ids import new_id
from mercato.problems import Problem, not_found, validation_problem

ProductStatus = Literal["draft", "active", "archived"]
Sort = Literal["newest", "price_asc", "price_desc"]
SORTS: tuple[str, ...] = ("newest", "price_asc", "price_desc")
MAX_PATH_LENGTH = 500
_CHUNK = 500


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET
"""Marks a field a partial update leaves alone (``None`` is a real value: "clear it")."""


# --------------------------------------------------------------------------------------------
# What other modules and the API see


@dataclass(frozen=True, slots=True)
class VariantInfo:
    """A sellable SKU as other modules (inventory, cart, checkout) need it."""

    id: str
    sku: str
    product_id: str
    product_title: str
    title: str
    options: dict[str, str]
    price: int
    currency: str
    compare_at: int | None
    weight_grams: int
    active: bool  # the variant is active AND its product's status is "active"
    image: str | None
    tax_class: str = "standard"  # the product's, which checkout's tax table is keyed by


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    id: str
    parent_id: str | None
    name: str
    slug: str
    path: str
    depth: int
    position: int


@dataclass(slots=True)
class CategoryNode:
    category: CategoryInfo
    children: list[CategoryNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BrandInfo:
    id: str
    name: str
    slug: str


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
class ProductPage:
    items: list[ProductView]
    next_cursor: str | None


# --------------------------------------------------------------------------------------------
# What callers hand in


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
    currency: str = "EUR"
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


@dataclass(frozen=True, slots=True)
class CategoryChanges:
    name: str | _Unset = UNSET
    slug: str | _Unset = UNSET
    parent_id: str | _Unset | None = UNSET
    position: int | _Unset = UNSET


@dataclass(frozen=True, slots=True)
class ProductQuery:
    category_slug: str | None = None
    brand_slug: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    currency: str | None = None
    attributes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    sort: Sort = "newest"
    limit: int = 24


def slugify(text: str, max_length: int = 80) -> str:
    """``"Nordhaven Kettle 1.7 L"`` → ``"nordhaven-kettle-1-7-l"`` (ASCII, lower case, hyphens)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "item"


# --------------------------------------------------------------------------------------------
# Variants for other modules


# Cart, checkout and inventory read variants on every request: prebuilt Core statements of only
# the columns ``VariantInfo`` needs (never a product's description or attributes, and of its
# media only the first image), so a read binds values and builds no ORM entities.
_VARIANTS: Table = Variant.__table__  # type: ignore[assignment]
_PRODUCTS: Table = Product.__table__  # type: ignore[assignment]
_VARIANT_INFO = select(
    _VARIANTS.c.id,
    _VARIANTS.c.sku,
    _VARIANTS.c.product_id,
    _PRODUCTS.c.title.label("product_title"),
    _VARIANTS.c.title,
    _VARIANTS.c.options,
    _VARIANTS.c.price,
    _VARIANTS.c.currency,
    _VARIANTS.c.compare_at,
    _VARIANTS.c.weight_grams,
    _VARIANTS.c.active,
    _PRODUCTS.c.status,
    _PRODUCTS.c.media[0].label("image"),
    _PRODUCTS.c.tax_class,
).join(_PRODUCTS, _PRODUCTS.c.id == _VARIANTS.c.product_id)
_VARIANTS_BY_ID = _VARIANT_INFO.where(_VARIANTS.c.id.in_(bindparam("ids", expanding=True)))
_VARIANT_BY_SKU = _VARIANT_INFO.where(_VARIANTS.c.sku == bindparam("sku"))


def _variant_info_from_row(row: Row[*tuple[Any, ...]]) -> VariantInfo:
    return VariantInfo(
        id=row.id,
        sku=row.sku,
        product_id=row.product_id,
        product_title=row.product_title,
        title=row.title,
        options=dict(row.options or {}),
        price=row.price,
        currency=row.currency,
        compare_at=row.compare_at,
        weight_grams=row.weight_grams,
        active=bool(row.active) and row.status == "active",
        image=row.image,
        tax_class=row.tax_class,
    )


def _chunks(values: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


async def get_variants(session: AsyncSession, ids: Collection[str]) -> dict[str, VariantInfo]:
    """The variants with these ids (unknown ids are simply absent from the answer)."""
    wanted = sorted(set(ids))
    found: dict[str, VariantInfo] = {}
    for chunk in _chunks(wanted):
        for row in await session.execute(_VARIANTS_BY_ID, {"ids": list(chunk)}):
            found[row.id] = _variant_info_from_row(row)
    return found


async def get_variant_by_sku(session: AsyncSession, sku: str) -> VariantInfo | None:
    row = (await session.execute(_VARIANT_BY_SKU, {"sku": sku})).first()
    return None if row is None else _variant_info_from_row(row)


# --------------------------------------------------------------------------------------------
# Categories


def _category_info(c: Category) -> CategoryInfo:
    return CategoryInfo(c.id, c.parent_id, c.name, c.slug, c.path, c.depth, c.position)


def _slug_taken(field_name: str, slug: str) -> Problem:
    return Problem(
        409, "slug_taken", f"The slug {slug!r} is already in use", field=field_name, slug=slug
    )


def _unknown_category(field_name: str, ident: str) -> Problem:
    return validation_problem(field_name, f"no category {ident!r}", code="unknown_category")


def _unknown_brand(field_name: str, ident: str) -> Problem:
    return validation_problem(field_name, f"no brand {ident!r}", code="unknown_brand")


async def _slug_in_use(
    session: AsyncSession, model: type[Category] | type[Brand], slug: str
) -> bool:
    found = await session.scalar(select(model.id).where(model.slug == slug))
    return found is not None


async def create_category(
    session: AsyncSession,
    *,
    name: str,
    slug: str | None = None,
    parent_id: str | None = None,
    position: int = 0,
) -> CategoryInfo:
    slug = slug or slugify(name)
    parent: Category | None = None
    if parent_id is not None:
        parent = await session.get(Category, parent_id)
        if parent is None:
            raise _unknown_category("parent_id", parent_id)
    if await _slug_in_use(session, Category, slug):
        raise _slug_taken("slug", slug)
    path = f"{parent.path}/{slug}" if parent else slug
    if len(path) > MAX_PATH_LENGTH:
        raise validation_problem("slug", "the category is nested too deeply")
    now = utcnow()
    category = Category(
        id=new_id("cat"),
        parent_id=parent.id if parent else None,
        name=name,
        slug=slug,
        path=path,
        depth=parent.depth + 1 if parent else 0,
        position=position,
        created_at=now,
        updated_at=now,
    )
    session.add(category)
    await _flush_or_conflict(session, _slug_taken("slug", slug))
    await events.publish(
        session,
        "CategoryCreated",
        category.id,
        {"category_id": category.id, "slug": slug, "path": path, "parent_id": category.parent_id},
    )
    return _category_info(category)


async def update_category(
    session: AsyncSession, category_id: str, changes: CategoryChanges
) -> CategoryInfo:
    category = await session.get(Category, category_id)
    if category is None:
        raise not_found("Category", category_id)
    changed: list[str] = []
    if not isinstance(changes.name, _Unset) and changes.name != category.name:
        category.name = changes.name
        changed.append("name")
    if not isinstance(changes.position, _Unset) and changes.position != category.position:
        category.position = changes.position
        changed.append("position")
    new_slug = category.slug if isinstance(changes.slug, _Unset) else changes.slug
    new_parent_id = (
        category.parent_id if isinstance(changes.parent_id, _Unset) else changes.parent_id
    )
    if new_slug != category.slug:
        if await _slug_in_use(session, Category, new_slug):
            raise _slug_taken("slug", new_slug)
        changed.append("slug")
    if new_parent_id != category.parent_id:
        changed.append("parent_id")
    if new_slug != category.slug or new_parent_id != category.parent_id:
        await _move_category(session, category, new_slug, new_parent_id)
    if changed:
        category.updated_at = utcnow()
        await _flush_or_conflict(session, _slug_taken("slug", new_slug))
        await events.publish(
            session,
            "CategoryUpdated",
            category.id,
            {
                "category_id": category.id,
                "slug": category.slug,
                "path": category.path,
                "parent_id": category.parent_id,
                "fields": changed,
            },
        )
    return _category_info(category)


async def _move_category(
    session: AsyncSession, category: Category, slug: str, parent_id: str | None
) -> None:
    """Re-slug and/or re-parent a category, rewriting the paths of its whole subtree."""
    parent: Category | None = None
    if parent_id is not None:
        parent = await session.get(Category, parent_id)
        if parent is None:
            raise _unknown_category("parent_id", parent_id)
        if parent.id == category.id or parent.path.startswith(category.path + "/"):
            raise validation_problem(
                "parent_id", "a category cannot move under itself", code="invalid_parent"
            )
    old_path, old_depth = category.path, category.depth
    new_path = f"{parent.path}/{slug}" if parent else slug
    new_depth = parent.depth + 1 if parent else 0
    subtree = (
        await session.scalars(
            select(Category).where(Category.path.startswith(old_path + "/", autoescape=True))
        )
    ).all()
    longest = max([len(new_path)] + [len(new_path) + len(c.path) - len(old_path) for c in subtree])
    if longest > MAX_PATH_LENGTH:
        raise validation_problem("parent_id", "the category tree would be nested too deeply")
    now = utcnow()
    old_paths = [node.path for node in subtree]
    # Paths are unique: park the subtree on temporary paths first so that the UPDATEs can never
    # collide with each other halfway through a move.
    for node in [category, *subtree]:
        node.path = f"~{node.id}"
    await session.flush()
    category.slug, category.parent_id = slug, parent_id
    category.path, category.depth = new_path, new_depth
    for node, old in zip(subtree, old_paths, strict=True):
        node.path = new_path + old[len(old_path) :]
        node.depth = node.depth - old_depth + new_depth
        node.updated_at = now


async def get_category_tree(session: AsyncSession) -> list[CategoryNode]:
    categories = (
        await session.scalars(
            select(Category).order_by(Category.depth, Category.position, Category.name)
        )
    ).all()
    nodes = {c.id: CategoryNode(_category_info(c)) for c in categories}
    roots: list[CategoryNode] = []
    for c in categories:
        node = nodes[c.id]
        if c.parent_id is not None and c.parent_id in nodes:
            nodes[c.parent_id].children.append(node)
        else:
            roots.append(node)
    return roots


async def get_category_by_slug(session: AsyncSession, slug: str) -> CategoryInfo | None:
    category = await session.scalar(select(Category).where(Category.slug == slug))
    return _category_info(category) if category else None


async def get_category_subtree(
    session: AsyncSession, slug: str
) -> tuple[CategoryNode, list[CategoryInfo]] | None:
    """A category with its descendants, and its ancestors from the root (a breadcrumb)."""
    category = await session.scalar(select(Category).where(Category.slug == slug))
    if category is None:
        return None
    below = (
        await session.scalars(
            select(Category)
            .where(Category.path.startswith(category.path + "/", autoescape=True))
            .order_by(Category.depth, Category.position, Category.name)
        )
    ).all()
    nodes = {category.id: CategoryNode(_category_info(category))}
    for c in below:
        nodes[c.id] = CategoryNode(_category_info(c))
        if c.parent_id in nodes:
            nodes[c.parent_id].children.append(nodes[c.id])
    ancestor_paths = []
    parts = category.path.split("/")
    for i in range(1, len(parts)):
        ancestor_paths.append("/".join(parts[:i]))
    ancestors = (
        (await session.scalars(select(Category).where(Category.path.in_(ancestor_paths)))).all()
        if ancestor_paths
        else []
    )
    breadcrumb = sorted((_category_info(a) for a in ancestors), key=lambda c: c.depth)
    return nodes[category.id], breadcrumb


# --------------------------------------------------------------------------------------------
# Brands


def _brand_info(b: Brand) -> BrandInfo:
    return BrandInfo(b.id, b.name, b.slug)


async def create_brand(session: AsyncSession, *, name: str, slug: str | None = None) -> BrandInfo:
    slug = slug or slugify(name)
    if await _slug_in_use(session, Brand, slug):
        raise _slug_taken("slug", slug)
    brand = Brand(id=new_id("brd"), name=name, slug=slug, created_at=utcnow())
    session.add(brand)
    await _flush_or_conflict(session, _slug_taken("slug", slug))
    await events.publish(
        session, "BrandCreated", brand.id, {"brand_id": brand.id, "slug": slug, "name": name}
    )
    return _brand_info(brand)


async def list_brands(session: AsyncSession) -> list[BrandInfo]:
    brands = (await session.scalars(select(Brand).order_by(Brand.name, Brand.id))).all()
    return [_brand_info(b) for b in brands]


async def get_brand_by_slug(session: AsyncSession, slug: str) -> BrandInfo | None:
    brand = await session.scalar(select(Brand).where(Brand.slug == slug))
    return _brand_info(brand) if brand else None


# --------------------------------------------------------------------------------------------
# Products and variants: changes


async def _flush_or_conflict(session: AsyncSession, problem: Problem) -> None:
    """Flush; a unique-constraint race lost to a concurrent writer becomes ``problem``."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise problem from exc


def _sku_taken(field_name: str, sku: str) -> Problem:
    return Problem(
        409, "sku_taken", f"The SKU {sku!r} is already in use", field=field_name, sku=sku
    )


async def _check_skus_free(session: AsyncSession, skus: Sequence[tuple[str, str]]) -> None:
    """``skus`` is (field name, sku) pairs; a duplicate in the request or the table is a 409."""
    seen: set[str] = set()
    for field_name, sku in skus:
        if sku in seen:
            raise _sku_taken(field_name, sku)
        seen.add(sku)
    if not skus:
        return
    taken = set(
        (await session.scalars(select(Variant.sku).where(Variant.sku.in_(list(seen))))).all()
    )
    for field_name, sku in skus:
        if sku in taken:
            raise _sku_taken(field_name, sku)


async def _require_category(session: AsyncSession, category_id: str) -> Category:
    category = await session.get(Category, category_id)
    if category is None:
        raise _unknown_category("category_id", category_id)
    return category


async def _require_brand(session: AsyncSession, brand_id: str) -> Brand:
    brand = await session.get(Brand, brand_id)
    if brand is None:
        raise _unknown_brand("brand_id", brand_id)
    return brand


def _check_status(status: str) -> None:
    if status not in PRODUCT_STATUSES:
        raise validation_problem("status", f"must be one of {', '.join(PRODUCT_STATUSES)}")


async def _refresh_price_range(session: AsyncSession, product: Product) -> None:
    await session.flush()
    low, high = (
        await session.execute(
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


async def create_product(session: AsyncSession, spec: NewProduct) -> ProductView:
    _check_status(spec.status)
    await _require_category(session, spec.category_id)
    if spec.brand_id is not None:
        await _require_brand(session, spec.brand_id)
    for i, v in enumerate(spec.variants):
        _check_variant_currency(spec.currency, v, f"variants.{i}.currency")
    await _check_skus_free(
        session, [(f"variants.{i}.sku", v.sku) for i, v in enumerate(spec.variants)]
    )
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
    session.add(product)
    variants = [
        _variant_row(product, v, v.position if v.position is not None else i, now)
        for i, v in enumerate(spec.variants)
    ]
    session.add_all(variants)
    await _flush_or_conflict(session, _sku_taken("variants", ",".join(v.sku for v in variants)))
    await _refresh_price_range(session, product)
    await events.publish(
        session,
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
    await events.publish_many(session, [_variant_created(v) for v in variants])
    view = await get_product(session, product.id, include_inactive=True)
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


async def update_product(
    session: AsyncSession, product_id: str, changes: ProductChanges
) -> ProductView:
    product = await session.get(Product, product_id)
    if product is None:
        raise not_found("Product", product_id)
    changed: list[str] = []
    if not isinstance(changes.status, _Unset):
        _check_status(changes.status)
    if not isinstance(changes.category_id, _Unset) and changes.category_id != product.category_id:
        await _require_category(session, changes.category_id)
    if (
        not isinstance(changes.brand_id, _Unset)
        and changes.brand_id is not None
        and changes.brand_id != product.brand_id
    ):
        await _require_brand(session, changes.brand_id)
    if not isinstance(changes.currency, _Unset) and changes.currency != product.currency:
        has_variants = await session.scalar(
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
        await session.flush()
        await events.publish(
            session,
            "ProductUpdated",
            product.id,
            {"product_id": product.id, "fields": changed, "status": product.status},
        )
        if product.status == "archived" and not was_archived:
            await events.publish(session, "ProductArchived", product.id, {"product_id": product.id})
    view = await get_product(session, product.id, include_inactive=True)
    assert view is not None
    return view


async def archive_product(session: AsyncSession, product_id: str) -> ProductView:
    return await update_product(session, product_id, ProductChanges(status="archived"))


async def add_variant(session: AsyncSession, product_id: str, spec: NewVariant) -> VariantView:
    product = await session.get(Product, product_id)
    if product is None:
        raise not_found("Product", product_id)
    _check_variant_currency(product.currency, spec, "currency")
    await _check_skus_free(session, [("sku", spec.sku)])
    position = spec.position
    if position is None:
        last = await session.scalar(
            select(func.max(Variant.position)).where(Variant.product_id == product.id)
        )
        position = 0 if last is None else last + 1
    now = utcnow()
    variant = _variant_row(product, spec, position, now)
    session.add(variant)
    await _flush_or_conflict(session, _sku_taken("sku", spec.sku))
    await _refresh_price_range(session, product)
    product.updated_at = now
    await events.publish_many(session, [_variant_created(variant)])
    return _variant_view(variant)


async def update_variant(
    session: AsyncSession, variant_id: str, changes: VariantChanges
) -> VariantView:
    variant = await session.get(Variant, variant_id)
    if variant is None:
        raise not_found("Variant", variant_id)
    if not isinstance(changes.sku, _Unset) and changes.sku != variant.sku:
        await _check_skus_free(session, [("sku", changes.sku)])
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
        await _flush_or_conflict(session, _sku_taken("sku", variant.sku))
        product = await session.get(Product, variant.product_id)
        assert product is not None
        await _refresh_price_range(session, product)
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
        await events.publish(session, "VariantUpdated", variant.id, payload)
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


async def _views(
    session: AsyncSession, products: Sequence[Product], *, only_active_variants: bool
) -> list[ProductView]:
    if not products:
        return []
    product_ids = [p.id for p in products]
    category_ids = sorted({p.category_id for p in products})
    brand_ids = sorted({p.brand_id for p in products if p.brand_id})
    categories = {
        c.id: _category_info(c)
        for c in (await session.scalars(select(Category).where(Category.id.in_(category_ids))))
    }
    brands = (
        {
            b.id: _brand_info(b)
            for b in (await session.scalars(select(Brand).where(Brand.id.in_(brand_ids))))
        }
        if brand_ids
        else {}
    )
    variant_query = select(Variant).where(Variant.product_id.in_(product_ids))
    if only_active_variants:
        variant_query = variant_query.where(Variant.active.is_(True))
    by_product: dict[str, list[VariantView]] = {pid: [] for pid in product_ids}
    for v in await session.scalars(variant_query.order_by(Variant.position, Variant.id)):
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
    session: AsyncSession, product_id: str, *, include_inactive: bool = False
) -> ProductView | None:
    """A product with its variants. Shoppers (the default) see only active products and their
    active variants; staff see everything."""
    product = await session.get(Product, product_id)
    if product is None or (not include_inactive and product.status != "active"):
        return None
    views = await _views(session, [product], only_active_variants=not include_inactive)
    return views[0]


async def get_products(
    session: AsyncSession, ids: Collection[str], *, include_inactive: bool = True
) -> dict[str, ProductView]:
    """Products by id (for projections such as the search index); unknown ids are absent."""
    found: dict[str, ProductView] = {}
    for chunk in _chunks(sorted(set(ids))):
        query = select(Product).where(Product.id.in_(chunk))
        if not include_inactive:
            query = query.where(Product.status == "active")
        products = (await session.scalars(query)).all()
        for view in await _views(session, products, only_active_variants=not include_inactive):
            found[view.id] = view
    return found


# --------------------------------------------------------------------------------------------
# Listing with keyset pagination


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt="catalog-cursor")


def _invalid_cursor() -> Problem:
    return Problem(400, "invalid_cursor", "The cursor is invalid or was not issued for this list")


def encode_cursor(secret_key: str, sort: str, key: int | str, last_id: str) -> str:
    return str(_serializer(secret_key).dumps({"s": sort, "k": key, "i": last_id}))


def decode_cursor(secret_key: str, token: str, sort: str) -> tuple[int | datetime, str]:
    """The (sort key, id) of the last item of the previous page, or 400 ``invalid_cursor``."""
    try:
        data = _serializer(secret_key).loads(token)
    except BadSignature as exc:
        raise _invalid_cursor() from exc
    if not isinstance(data, dict) or data.get("s") != sort or not isinstance(data.get("i"), str):
        raise _invalid_cursor()
    key = data.get("k")
    if sort == "newest":
        if not isinstance(key, str):
            raise _invalid_cursor()
        try:
            when = datetime.fromisoformat(key)
        except ValueError as exc:
            raise _invalid_cursor() from exc
        if when.tzinfo is None:
            raise _invalid_cursor()
        return when, data["i"]
    if not isinstance(key, int) or isinstance(key, bool):
        raise _invalid_cursor()
    return key, data["i"]


async def list_products(
    session: AsyncSession, query: ProductQuery, *, secret_key: str, cursor: str | None = None
) -> ProductPage:
    """One page of active, priced products, newest first or by price.

    Keyset pagination: the cursor carries the sort key and id of the last item shown, so a
    product inserted while a shopper pages never shifts the pages after it (nothing repeats,
    nothing is skipped).
    """
    if query.sort not in SORTS:
        raise validation_problem("sort", f"must be one of {', '.join(SORTS)}")
    stmt = select(Product).where(Product.status == "active", Product.min_price.is_not(None))
    if query.category_slug is not None:
        category = await session.scalar(
            select(Category).where(Category.slug == query.category_slug)
        )
        if category is None:
            raise _unknown_category("category", query.category_slug)
        subtree = select(Category.id).where(
            or_(
                Category.path == category.path,
                Category.path.startswith(category.path + "/", autoescape=True),
            )
        )
        stmt = stmt.where(Product.category_id.in_(subtree))
    if query.brand_slug is not None:
        brand = await session.scalar(select(Brand).where(Brand.slug == query.brand_slug))
        if brand is None:
            raise _unknown_brand("brand", query.brand_slug)
        stmt = stmt.where(Product.brand_id == brand.id)
    if query.currency is not None:
        stmt = stmt.where(Product.currency == query.currency)
    if query.min_price is not None:
        stmt = stmt.where(Product.min_price >= query.min_price)
    if query.max_price is not None:
        stmt = stmt.where(Product.min_price <= query.max_price)
    for name, values in sorted(query.attributes.items()):
        attr = Product.attributes[name].as_string()
        stmt = stmt.where(attr == values[0] if len(values) == 1 else attr.in_(list(values)))

    if cursor is not None:
        key, last_id = decode_cursor(secret_key, cursor, query.sort)
        stmt = stmt.where(_after(query.sort, key, last_id))
    if query.sort == "newest":
        stmt = stmt.order_by(Product.created_at.desc(), Product.id.desc())
    elif query.sort == "price_asc":
        stmt = stmt.order_by(Product.min_price.asc(), Product.id.asc())
    else:
        stmt = stmt.order_by(Product.min_price.desc(), Product.id.desc())
    rows = list((await session.scalars(stmt.limit(query.limit + 1))).all())
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        last = rows[-1]
        sort_key: int | str = (
            last.created_at.isoformat() if query.sort == "newest" else int(last.min_price or 0)
        )
        next_cursor = encode_cursor(secret_key, query.sort, sort_key, last.id)
    return ProductPage(await _views(session, rows, only_active_variants=True), next_cursor)


def _after(sort: str, key: int | datetime, last_id: str) -> ColumnElement[bool]:
    if sort == "newest":
        return or_(Product.created_at < key, and_(Product.created_at == key, Product.id < last_id))
    if sort == "price_asc":
        return or_(Product.min_price > key, and_(Product.min_price == key, Product.id > last_id))
    return or_(Product.min_price < key, and_(Product.min_price == key, Product.id < last_id))


# --------------------------------------------------------------------------------------------
# Reads for projections (the search index rebuilds and refreshes itself from these)


def _listed() -> ColumnElement[bool]:
    """What shoppers can find: active products with at least one active variant (a price)."""
    return and_(Product.status == "active", Product.min_price.is_not(None))


async def count_listed_products(session: AsyncSession) -> int:
    """How many products a shopper can find (active and priced)."""
    count = await session.scalar(select(func.count()).select_from(Product).where(_listed()))
    return int(count or 0)


async def listed_product_ids(
    session: AsyncSession, *, after: str | None = None, limit: int = 1000
) -> list[str]:
    """Ids of listed products in id order, the next ``limit`` after ``after`` (a keyset walk
    over the whole catalog in short transactions)."""
    query = select(Product.id).where(_listed()).order_by(Product.id).limit(limit)
    if after is not None:
        query = query.where(Product.id > after)
    return list((await session.scalars(query)).all())


async def product_ids_in_category_tree(session: AsyncSession, category_id: str) -> list[str]:
    """Ids of every product (any status) in a category or below it."""
    category = await session.get(Category, category_id)
    if category is None:
        return []
    subtree = select(Category.id).where(
        or_(
            Category.path == category.path,
            Category.path.startswith(category.path + "/", autoescape=True),
        )
    )
    return list(
        (await session.scalars(select(Product.id).where(Product.category_id.in_(subtree)))).all()
    )


async def category_names_by_path(session: AsyncSession) -> dict[str, str]:
    """Every category's name keyed by its path, to name a product's ancestors in one lookup."""
    rows = await session.execute(select(Category.path, Category.name))
    return {path: name for path, name in rows}


@dataclass(frozen=True, slots=True)
class ListedVariant:
    id: str
    sku: str
    options: dict[str, str]


@dataclass(frozen=True, slots=True)
class ListedProduct:
    """A listed product as a projection needs it: a lighter read than :class:`ProductView`
    (plain rows, no ORM objects), with its active variants only."""

    id: str
    title: str
    description: str
    brand: BrandInfo | None
    category_path: str
    category_name: str
    attributes: dict[str, Any]
    image: str | None
    currency: str
    min_price: int
    max_price: int
    created_at: datetime
    variants: tuple[ListedVariant, ...]


async def listed_products(session: AsyncSession, ids: Collection[str]) -> dict[str, ListedProduct]:
    """Listed products by id, two statements per 500 ids; unknown or unlisted ids are absent."""
    found: dict[str, ListedProduct] = {}
    for chunk in _chunks(sorted(set(ids))):
        variants: dict[str, list[ListedVariant]] = {}
        for variant_id, product_id, sku, options in await session.execute(
            select(Variant.id, Variant.product_id, Variant.sku, Variant.options)
            .where(Variant.product_id.in_(chunk), Variant.active.is_(True))
            .order_by(Variant.product_id, Variant.position, Variant.id)
        ):
            variants.setdefault(product_id, []).append(
                ListedVariant(variant_id, sku, dict(options or {}))
            )
        rows = await session.execute(
            select(
                Product.id,
                Product.title,
                Product.description,
                Product.attributes,
                Product.media,
                Product.currency,
                Product.min_price,
                Product.max_price,
                Product.created_at,
                Brand.id,
                Brand.name,
                Brand.slug,
                Category.path,
                Category.name,
            )
            .join(Category, Category.id == Product.category_id)
            .outerjoin(Brand, Brand.id == Product.brand_id)
            .where(Product.id.in_(chunk), _listed())
        )
        for row in rows:
            own = variants.get(row[0])
            if not own:
                continue
            brand = BrandInfo(row[9], row[10], row[11]) if row[9] is not None else None
            found[row[0]] = ListedProduct(
                id=row[0],
                title=row[1],
                description=row[2] or "",
                brand=brand,
                category_path=row[12],
                category_name=row[13],
                attributes=dict(row[3] or {}),
                image=row[4][0] if row[4] else None,
                currency=row[5],
                min_price=int(row[6]),
                max_price=int(row[7] if row[7] is not None else row[6]),
                created_at=row[8],
                variants=tuple(own),
            )
    return found


# --------------------------------------------------------------------------------------------
# For the back office


async def variants_by_sku(
    session: AsyncSession,
    *,
    contains: str | None = None,
    after_sku: str | None = None,
    limit: int = 50,
) -> list[VariantInfo]:
    """Variants ordered by SKU, those whose SKU contains ``contains`` (any case) when given,
    starting after ``after_sku`` (keyset paging: the SKU is unique)."""
    if not 1 <= limit <= 500:
        raise validation_problem("limit", "must be between 1 and 500")
    query = _VARIANT_INFO
    text = (contains or "").strip()
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(_VARIANTS.c.sku.ilike(f"%{escaped}%", escape="\\"))
    if after_sku is not None:
        query = query.where(_VARIANTS.c.sku > after_sku)
    rows = await session.execute(query.order_by(_VARIANTS.c.sku).limit(limit))
    return [_variant_info_from_row(row) for row in rows]


@dataclass(frozen=True, slots=True)
class StaffProductPage:
    items: list[ProductView]
    next_before: str | None  # pass as ``before`` for the next (older) page


async def staff_products(
    session: AsyncSession,
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
    rows = list((await session.scalars(query.order_by(Product.id.desc()).limit(limit + 1))).all())
    next_before = rows[limit - 1].id if len(rows) > limit else None
    views = await _views(session, rows[:limit], only_active_variants=False)
    return StaffProductPage(views, next_before)


# --------------------------------------------------------------------------------------------
# For the storefront


async def get_product_by_slug(session: AsyncSession, slug: str) -> ProductView | None:
    """The active product with this slug (slugs are not unique: the oldest such product), with
    its active variants; None when there is none."""
    product = await session.scalar(
        select(Product)
        .where(Product.slug == slug, Product.status == "active")
        .order_by(Product.id)
        .limit(1)
    )
    if product is None:
        return None
    return (await _views(session, [product], only_active_variants=True))[0]
