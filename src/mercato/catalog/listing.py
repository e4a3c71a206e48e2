"""The public product listing read from the database (what answers while no search index is
built), keyset-paged; and the reads the search index is projected from."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from mercato.catalog.brands import BrandInfo
from mercato.catalog.common import SORTS, Sort, chunks, unknown_brand, unknown_category
from mercato.catalog.models import Brand, Category, Product, Variant
from mercato.catalog.products import ProductView, product_views
from mercato.db import UnitOfWork
from mercato.problems import Problem, validation_problem


@dataclass(frozen=True, slots=True)
class ProductPage:
    items: list[ProductView]
    next_cursor: str | None


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
    uow: UnitOfWork, query: ProductQuery, *, secret_key: str, cursor: str | None = None
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
        category = await uow.scalar(select(Category).where(Category.slug == query.category_slug))
        if category is None:
            raise unknown_category("category", query.category_slug)
        subtree = select(Category.id).where(
            or_(
                Category.path == category.path,
                Category.path.startswith(category.path + "/", autoescape=True),
            )
        )
        stmt = stmt.where(Product.category_id.in_(subtree))
    if query.brand_slug is not None:
        brand = await uow.scalar(select(Brand).where(Brand.slug == query.brand_slug))
        if brand is None:
            raise unknown_brand("brand", query.brand_slug)
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
    rows = list((await uow.scalars(stmt.limit(query.limit + 1))).all())
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        last = rows[-1]
        sort_key: int | str = (
            last.created_at.isoformat() if query.sort == "newest" else int(last.min_price or 0)
        )
        next_cursor = encode_cursor(secret_key, query.sort, sort_key, last.id)
    return ProductPage(await product_views(uow, rows, only_active_variants=True), next_cursor)


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


async def count_listed_products(uow: UnitOfWork) -> int:
    """How many products a shopper can find (active and priced)."""
    count = await uow.scalar(select(func.count()).select_from(Product).where(_listed()))
    return int(count or 0)


async def listed_product_ids(
    uow: UnitOfWork, *, after: str | None = None, limit: int = 1000
) -> list[str]:
    """Ids of listed products in id order, the next ``limit`` after ``after`` (a keyset walk
    over the whole catalog in short transactions)."""
    query = select(Product.id).where(_listed()).order_by(Product.id).limit(limit)
    if after is not None:
        query = query.where(Product.id > after)
    return list((await uow.scalars(query)).all())


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


async def listed_products(uow: UnitOfWork, ids: Collection[str]) -> dict[str, ListedProduct]:
    """Listed products by id, two statements per 500 ids; unknown or unlisted ids are absent."""
    found: dict[str, ListedProduct] = {}
    for chunk in chunks(sorted(set(ids))):
        variants: dict[str, list[ListedVariant]] = {}
        for variant_id, product_id, sku, options in await uow.execute(
            select(Variant.id, Variant.product_id, Variant.sku, Variant.options)
            .where(Variant.product_id.in_(chunk), Variant.active.is_(True))
            .order_by(Variant.product_id, Variant.position, Variant.id)
        ):
            variants.setdefault(product_id, []).append(
                ListedVariant(variant_id, sku, dict(options or {}))
            )
        rows = await uow.execute(
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
