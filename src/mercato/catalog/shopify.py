"""Products in Shopify's product CSV format, read in and written out.

The format: one row per variant, the rows of one product sharing its ``Handle`` and following
each other; the first row of a product carries its own fields (``Title``, ``Body (HTML)``,
``Vendor``, ``Type``, ``Tags``, ``Published``, ``Status``, the option names), the rows after
it only variant cells (``Option1 Value``…, ``Variant SKU``, ``Variant Price``…) and image cells
(``Image Src``, ``Image Position``); a row with only a handle and an image adds an image.

How it maps onto the catalog:

* ``Handle`` is the product's slug, and what a re-import finds the product by; a variant is
  found by its SKU (an empty ``Variant SKU`` becomes the handle and the option values, the same
  on every import), so importing the same file twice changes nothing the second time.
* ``Vendor`` is the brand and ``Type`` the category (both found by slug, made when missing; no
  type: the "Uncategorised" category); ``Tags`` are kept as the product attribute ``tags``.
* ``Body (HTML)`` becomes the plain text the shop shows (its pages escape descriptions, they
  never render HTML): :func:`html_to_text` keeps the words and the paragraph breaks, drops
  markup, scripts and styles. Exported, each line is a paragraph again.
* ``Status`` (active, draft, archived) decides the status; without it ``Published``
  (true: active, false: draft); without either a new product is a draft, and an existing one
  keeps its status.
* Prices are decimal strings in the shop's currency (never floats); ``Variant Grams`` is the
  weight; ``Variant Inventory Qty`` is what is free in the import's warehouse (set through the
  inventory, whose ``WarehouseStock`` the caller hands in as :class:`ShopStock`).
* Images are the product's media, in ``Image Position`` order. A product row with images
  replaces the media; image rows of a product seen earlier in the file add to it.
* Not held by the catalog, so read past and written empty: ``Image Alt Text``, ``SEO Title``,
  ``SEO Description``, ``Variant Barcode``, and the rest of Shopify's columns.

Bad input is reported per row (numbered as a spreadsheet shows them: the header is row 1)
and column, and never stops the rows around it: a bad product row leaves its whole product
out; a bad variant row leaves that variant out and the product imports without it.
"""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Protocol, cast

import nh3
from sqlalchemy import select

from mercato.catalog.brands import create_brand, get_brand_by_slug
from mercato.catalog.categories import create_category, get_category_by_slug
from mercato.catalog.common import SKU_PATTERN, UNSET, ProductStatus, slugify
from mercato.catalog.models import PRODUCT_STATUSES, Product, Variant
from mercato.catalog.products import (
    NewProduct,
    NewVariant,
    ProductChanges,
    ProductView,
    VariantChanges,
    add_variant,
    create_product,
    product_views,
    update_product,
    update_variant,
)
from mercato.catalog.variants import get_variant_by_sku
from mercato.db import UnitOfWork
from mercato.money import MoneyError, format_minor, to_minor
from mercato.problems import Problem
from mercato.text import problem_with

HANDLE = "Handle"
TITLE = "Title"
BODY = "Body (HTML)"
VENDOR = "Vendor"
TYPE = "Type"
TAGS = "Tags"
PUBLISHED = "Published"
SKU = "Variant SKU"
GRAMS = "Variant Grams"
QUANTITY = "Variant Inventory Qty"
PRICE = "Variant Price"
COMPARE_AT = "Variant Compare At Price"
IMAGE_SRC = "Image Src"
IMAGE_POSITION = "Image Position"
IMAGE_ALT = "Image Alt Text"
STATUS = "Status"
OPTION_NAMES = ("Option1 Name", "Option2 Name", "Option3 Name")
OPTION_VALUES = ("Option1 Value", "Option2 Value", "Option3 Value")

COLUMNS: tuple[str, ...] = (
    HANDLE,
    TITLE,
    BODY,
    VENDOR,
    TYPE,
    TAGS,
    PUBLISHED,
    OPTION_NAMES[0],
    OPTION_VALUES[0],
    OPTION_NAMES[1],
    OPTION_VALUES[1],
    OPTION_NAMES[2],
    OPTION_VALUES[2],
    SKU,
    GRAMS,
    "Variant Inventory Tracker",
    QUANTITY,
    "Variant Inventory Policy",
    "Variant Fulfillment Service",
    PRICE,
    COMPARE_AT,
    "Variant Requires Shipping",
    "Variant Taxable",
    IMAGE_SRC,
    IMAGE_POSITION,
    IMAGE_ALT,
    "SEO Title",
    "SEO Description",
    STATUS,
)
"""The columns :func:`export_rows` writes, in Shopify's order."""

_VARIANT_CELLS = (SKU, PRICE, COMPARE_AT, GRAMS, QUANTITY, *OPTION_VALUES)
_SINGLE_OPTION = ("Title", "Default Title")  # Shopify's name and value for "no options"
UNCATEGORISED = "Uncategorised"
TAGS_ATTRIBUTE = "tags"
MAX_IMAGES = 20  # what the catalog's media holds
MAX_QUANTITY = 1_000_000
MAX_GRAMS = 10_000_000
_SKU = re.compile(SKU_PATTERN)
_HANDLE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_MEDIA = re.compile(r"^(https?://|/)\S+$")
_CREATED, _UPDATED, _UNCHANGED = 0, 1, 2
_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
# The block-level elements whose ends are line breaks in the text kept of a description.
_BLOCKS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
    "tr", "table", "blockquote", "pre", "section", "article", "header", "footer",
}  # fmt: skip
_BLOCK_TAG = re.compile(r"</?[a-z0-9]+\s*/?>")


class ShopifyFileError(ValueError):
    """A file that cannot be read as a Shopify product CSV at all (no ``Handle`` column…)."""


class ShopStock(Protocol):
    """What the import and export need of the stock: free units in one warehouse."""

    async def set_available(self, uow: UnitOfWork, variant_id: str, quantity: int) -> None: ...

    async def available(
        self, uow: UnitOfWork, variant_ids: Collection[str]
    ) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str | None
    message: str


@dataclass(frozen=True, slots=True)
class ShopifyVariant:
    row: int
    sku: str
    options: dict[str, str]
    price: int
    compare_at: int | None
    grams: int | None
    quantity: int | None


@dataclass(frozen=True, slots=True)
class ShopifyImage:
    row: int
    src: str
    position: int | None


@dataclass(frozen=True, slots=True)
class ShopifyFields:
    """What the first row of a product says of the product itself."""

    title: str
    description: str
    vendor: str
    type: str
    tags: str
    status: ProductStatus | None


@dataclass(slots=True)
class ShopifyProduct:
    """The rows of one handle, read and checked (no database yet)."""

    handle: str
    row: int
    rows: int = 0
    fields: ShopifyFields | None = None  # None: rows of a product defined elsewhere
    continued: bool = False  # the handle appeared earlier in the file
    variants: list[ShopifyVariant] = field(default_factory=list)
    images: list[ShopifyImage] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rejected: bool = False  # its product row is bad: nothing of it is imported


@dataclass(frozen=True, slots=True)
class ProductImported:
    """What importing one product did."""

    product_id: str | None
    created: bool = False
    updated: bool = False
    variants_created: int = 0
    variants_updated: int = 0
    images: int = 0
    errors: tuple[RowError, ...] = ()


class _Bad(Exception):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


# --------------------------------------------------------------------------------------------
# Descriptions


def html_to_text(body: str) -> str:
    """Shopify's ``Body (HTML)`` as the plain text the shop shows: words and paragraph breaks
    kept, markup dropped, entities decoded. nh3 (the Rust ammonia sanitiser) parses the markup
    as a browser would, malformed or not, drops scripts and styles with their content, and
    leaves only bare block tags, which become line breaks."""
    cleaned = nh3.clean(body, tags=_BLOCKS, attributes={}, strip_comments=True)
    text = html.unescape(_BLOCK_TAG.sub("\n", cleaned))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def text_to_html(text: str) -> str:
    """A plain-text description as ``Body (HTML)``: each line a paragraph."""
    return "".join(f"<p>{html.escape(line)}</p>" for line in text.split("\n") if line.strip())


# --------------------------------------------------------------------------------------------
# Reading the file


def _cell(row: Mapping[str, str], column: str) -> str:
    return (row.get(column) or "").strip()


def _plain(row: Mapping[str, str], column: str, max_length: int, *, required: bool = False) -> str:
    value = _cell(row, column)
    if required and not value:
        raise _Bad(column, "is required")
    if len(value) > max_length:
        raise _Bad(column, f"must be at most {max_length} characters")
    problem = problem_with(value)
    if problem is not None:
        raise _Bad(column, problem)
    return value


def _whole(row: Mapping[str, str], column: str, maximum: int) -> int | None:
    text = _cell(row, column)
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _Bad(column, "must be a whole number") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise _Bad(column, "must be a whole number")
    if value < 0:
        raise _Bad(column, "must not be negative")
    if value > maximum:
        raise _Bad(column, f"must be at most {maximum}")
    return int(value)


def _money(row: Mapping[str, str], column: str, currency: str) -> int | None:
    text = _cell(row, column)
    if not text:
        return None
    try:
        return to_minor(text, currency)
    except MoneyError as exc:
        raise _Bad(column, str(exc)) from None


def _checked(bads: list[_Bad], check: Callable[[], str]) -> str:
    try:
        return check()
    except _Bad as bad:
        bads.append(bad)
        return ""


def _description(row: Mapping[str, str]) -> str:
    description = html_to_text(_cell(row, BODY))
    if len(description) > 20_000:
        raise _Bad(BODY, "must be at most 20000 characters of text")
    problem = problem_with(description, multiline=True)
    if problem is not None:
        raise _Bad(BODY, problem)
    return description


def _product_fields(row: Mapping[str, str], number: int, errors: list[RowError]) -> ShopifyFields:
    bads: list[_Bad] = []
    title = _checked(bads, lambda: _plain(row, TITLE, 200, required=True))
    description = _checked(bads, lambda: _description(row))
    vendor = _checked(bads, lambda: _plain(row, VENDOR, 120))
    kind = _checked(bads, lambda: _plain(row, TYPE, 120))
    tag_text = _checked(bads, lambda: _plain(row, TAGS, 10_000))
    tags = ", ".join(dict.fromkeys(t.strip() for t in tag_text.split(",") if t.strip()))
    if len(tags) > 200:
        bads.append(_Bad(TAGS, "must be at most 200 characters"))
    status: ProductStatus | None = None
    status_text = _cell(row, STATUS).lower()
    published_text = _cell(row, PUBLISHED).lower()
    if status_text:
        if status_text not in PRODUCT_STATUSES:
            bads.append(_Bad(STATUS, f"must be one of {', '.join(PRODUCT_STATUSES)}"))
        else:
            status = cast(ProductStatus, status_text)
    if published_text and published_text not in _BOOLEANS:
        bads.append(_Bad(PUBLISHED, "must be TRUE or FALSE"))
    elif published_text and status is None:
        status = "active" if _BOOLEANS[published_text] else "draft"
    for column in OPTION_NAMES:
        _checked(bads, lambda column=column: _plain(row, column, 40))  # type: ignore[misc]
    errors.extend(RowError(number, bad.column, bad.message) for bad in bads)
    return ShopifyFields(title, description, vendor, kind, tags, status)


def _variant(
    row: Mapping[str, str],
    number: int,
    handle: str,
    names: Sequence[str],
    currency: str,
) -> ShopifyVariant:
    """One variant row; raises the first bad cell (the variant is then left out)."""
    options: dict[str, str] = {}
    for name, column in zip(names, OPTION_VALUES, strict=True):
        value = _plain(row, column, 100)
        if value and not name:
            raise _Bad(column, f"has a value but the product's first row names no {column[:7]}")
        if name and value and (name, value) != _SINGLE_OPTION:
            options[name] = value
    sku = _cell(row, SKU) or "-".join([handle, *(slugify(v) for v in options.values())])
    if len(sku) > 64:
        raise _Bad(SKU, "must be at most 64 characters")
    if not _SKU.match(sku):
        raise _Bad(SKU, "letters, digits and . _ / - only, starting with a letter or digit")
    price = _money(row, PRICE, currency)
    if price is None:
        raise _Bad(PRICE, "is required")
    return ShopifyVariant(
        row=number,
        sku=sku,
        options=options,
        price=price,
        compare_at=_money(row, COMPARE_AT, currency),
        grams=_whole(row, GRAMS, MAX_GRAMS),
        quantity=_whole(row, QUANTITY, MAX_QUANTITY),
    )


def _image(row: Mapping[str, str], number: int) -> ShopifyImage:
    src = _cell(row, IMAGE_SRC)
    if len(src) > 500 or not _MEDIA.match(src) or problem_with(src) is not None:
        raise _Bad(IMAGE_SRC, "must be an http(s) address of at most 500 characters")
    position = _whole(row, IMAGE_POSITION, 10_000)
    return ShopifyImage(number, src, position)


def read_products(lines: Iterable[str], currency: str) -> Iterator[ShopifyProduct]:
    """The products of a Shopify product CSV (``lines``: a text file opened with
    ``newline=""``), one at a time as their rows end, each with the errors of its rows. Prices
    are read in ``currency``. Raises :class:`ShopifyFileError` when there is no header with a
    ``Handle`` column, or the CSV itself is broken."""
    reader = csv.DictReader(lines)
    try:
        header = [name.strip() for name in reader.fieldnames or []]
    except csv.Error as exc:
        raise ShopifyFileError(f"Row 1: {exc}") from exc
    if HANDLE not in header:
        raise ShopifyFileError("The first row must name the columns, among them Handle")
    reader.fieldnames = header
    seen_handles: set[str] = set()
    seen_skus: dict[str, int] = {}
    current: ShopifyProduct | None = None
    names: list[str] = ["", "", ""]
    number = 1
    try:
        for row in reader:
            number += 1
            if None in row:
                bad = ShopifyProduct(handle="", row=number, rows=1, rejected=True)
                bad.errors.append(RowError(number, None, "has more cells than the header"))
                yield bad
                continue
            handle = _cell(row, HANDLE)
            if not any(_cell(row, c) for c in header):
                continue
            if current is None or handle != current.handle:
                if current is not None:
                    yield current
                current = ShopifyProduct(handle=handle, row=number)
                current.continued = handle in seen_handles
                seen_handles.add(handle)
                names = [_cell(row, c) for c in OPTION_NAMES]
                if not _HANDLE.match(handle):
                    current.rejected = True
                    message = "lower-case letters, digits and hyphens only" if handle else ""
                    current.errors.append(RowError(number, HANDLE, message or "is required"))
                elif _cell(row, TITLE):
                    # A first row without a title names no product: its rows extend the product
                    # of that handle (reported when there is none, see import_product).
                    before = len(current.errors)
                    current.fields = _product_fields(row, number, current.errors)
                    current.rejected = len(current.errors) > before
            current.rows += 1
            if current.rejected:
                continue
            _read_row(current, row, number, names, currency, seen_skus)
    except csv.Error as exc:
        raise ShopifyFileError(f"Row {number}: {exc}") from exc
    if current is not None:
        yield current


def _read_row(
    product: ShopifyProduct,
    row: Mapping[str, str],
    number: int,
    names: Sequence[str],
    currency: str,
    seen_skus: dict[str, int],
) -> None:
    if any(_cell(row, c) for c in _VARIANT_CELLS):
        try:
            variant = _variant(row, number, product.handle, names, currency)
            if variant.sku in seen_skus:
                raise _Bad(SKU, f"the same SKU as row {seen_skus[variant.sku]}")
            seen_skus[variant.sku] = number
            product.variants.append(variant)
        except _Bad as bad:
            product.errors.append(RowError(number, bad.column, bad.message))
    if _cell(row, IMAGE_SRC):
        try:
            product.images.append(_image(row, number))
        except _Bad as bad:
            product.errors.append(RowError(number, bad.column, bad.message))


def count_rows(lines: Iterable[str]) -> int:
    """How many data rows a CSV file has (for a progress bar)."""
    return max(sum(1 for _ in csv.reader(lines)) - 1, 0)


# --------------------------------------------------------------------------------------------
# Writing one product into the catalog


async def _category_id(uow: UnitOfWork, name: str) -> str:
    name = name or UNCATEGORISED
    slug = slugify(name)
    found = await get_category_by_slug(uow, slug)
    if found is None:
        found = await create_category(uow, name=name, slug=slug)
    return found.id


async def _brand_id(uow: UnitOfWork, name: str) -> str | None:
    if not name:
        return None
    found = await get_brand_by_slug(uow, slugify(name))
    if found is None:
        found = await create_brand(uow, name=name, slug=slugify(name))
    return found.id


def _problem_error(row: int, column: str, exc: Problem) -> RowError:
    return RowError(row, column, exc.detail)


def _ordered_media(images: Sequence[ShopifyImage]) -> list[str]:
    ordered = sorted(
        images, key=lambda i: (i.position is None, i.position if i.position is not None else 0)
    )
    return list(dict.fromkeys(i.src for i in ordered))


async def import_product(
    uow: UnitOfWork, product: ShopifyProduct, *, currency: str, stock: ShopStock | None
) -> ProductImported:
    """Create or update the product of one handle with its variants, images and stock, in the
    caller's unit of work. A variant the catalog refuses is left out (its own savepoint) and
    reported; the rest goes in."""
    errors: list[RowError] = list(product.errors)
    if product.rejected:
        return ProductImported(None, errors=tuple(errors))
    existing = await uow.scalar(
        select(Product).where(Product.slug == product.handle).order_by(Product.id).limit(1)
    )
    fields = product.fields
    if existing is None and fields is None:
        errors.append(RowError(product.row, TITLE, "is required: no product has this handle"))
        return ProductImported(None, errors=tuple(errors))
    if existing is not None and existing.currency != currency:
        errors.append(
            RowError(product.row, PRICE, f"the product's prices are in {existing.currency}")
        )
        return ProductImported(None, errors=tuple(errors))
    created = updated = False
    if existing is None:
        assert fields is not None
        view = await create_product(
            uow,
            NewProduct(
                title=fields.title,
                category_id=await _category_id(uow, fields.type),
                currency=currency,
                description=fields.description,
                slug=product.handle,
                brand_id=await _brand_id(uow, fields.vendor),
                status=fields.status or "draft",
                attributes={TAGS_ATTRIBUTE: fields.tags} if fields.tags else {},
                media=_ordered_media(product.images)[:MAX_IMAGES],
            ),
        )
        product_id, media, created = view.id, list(view.media), True
    else:
        product_id, media = existing.id, list(existing.media or [])
        changes = ProductChanges()
        if fields is not None:
            attributes = {
                k: v for k, v in (existing.attributes or {}).items() if k != TAGS_ATTRIBUTE
            }
            if fields.tags:
                attributes[TAGS_ATTRIBUTE] = fields.tags
            changes = ProductChanges(
                title=fields.title,
                description=fields.description,
                brand_id=await _brand_id(uow, fields.vendor),
                category_id=await _category_id(uow, fields.type),
                status=fields.status if fields.status is not None else UNSET,
                attributes=attributes,
            )
        if product.images:
            wanted = _ordered_media(product.images)
            if fields is None or product.continued:
                wanted = media + [src for src in wanted if src not in media]
            changes = _with_media(changes, wanted[:MAX_IMAGES])
        before = await _snapshot(uow, product_id)
        after = await update_product(uow, product_id, changes)
        media = list(after.media)
        updated = _product_state(after) != before
    if len(_ordered_media(product.images)) > MAX_IMAGES:
        errors.append(
            RowError(product.images[MAX_IMAGES].row, IMAGE_SRC, f"at most {MAX_IMAGES} images")
        )
    counts = [0, 0, 0]
    for position, variant in enumerate(product.variants):
        try:
            async with uow.savepoint():
                counts[await _import_variant(uow, product_id, variant, position, stock)] += 1
        except _Bad as bad:
            errors.append(RowError(variant.row, bad.column, bad.message))
        except Problem as exc:
            errors.append(_problem_error(variant.row, SKU, exc))
    updated = updated or (not created and counts[_UPDATED] > 0)
    return ProductImported(
        product_id,
        created=created,
        updated=updated,
        variants_created=counts[_CREATED],
        variants_updated=counts[_UPDATED],
        images=len(media),
        errors=tuple(sorted(errors, key=lambda e: (e.row, e.column or ""))),
    )


def _with_media(changes: ProductChanges, media: list[str]) -> ProductChanges:
    return ProductChanges(
        title=changes.title,
        description=changes.description,
        brand_id=changes.brand_id,
        category_id=changes.category_id,
        status=changes.status,
        attributes=changes.attributes,
        media=media,
    )


def _product_state(view: ProductView) -> tuple[object, ...]:
    return (
        view.title,
        view.description,
        view.status,
        view.brand.id if view.brand else None,
        view.category.id,
        view.attributes,
        view.media,
    )


async def _snapshot(uow: UnitOfWork, product_id: str) -> tuple[object, ...]:
    found = await uow.get(Product, product_id)
    assert found is not None
    (view,) = await product_views(uow, [found], only_active_variants=False)
    return _product_state(view)


async def _import_variant(
    uow: UnitOfWork,
    product_id: str,
    variant: ShopifyVariant,
    position: int,
    stock: ShopStock | None,
) -> int:
    """Create, update or leave alone one variant (which of them it did), and set its stock
    when the row gives it."""
    title = " / ".join(variant.options.values())
    owner = await get_variant_by_sku(uow, variant.sku)
    if owner is not None and owner.product_id != product_id:
        raise _Bad(SKU, f"the SKU belongs to another product ({owner.product_id})")
    if owner is None:
        created = await add_variant(
            uow,
            product_id,
            NewVariant(
                sku=variant.sku,
                price=variant.price,
                title=title,
                options=variant.options,
                compare_at=variant.compare_at,
                weight_grams=variant.grams or 0,
                position=position,
            ),
        )
        variant_id, outcome = created.id, _CREATED
    else:
        row = await uow.get(Variant, owner.id)
        assert row is not None
        wanted = {
            "title": title,
            "options": variant.options,
            "price": variant.price,
            "compare_at": variant.compare_at,
            "weight_grams": row.weight_grams if variant.grams is None else variant.grams,
            "active": True,
            "position": position,
        }
        same = all(getattr(row, name) == value for name, value in wanted.items())
        if not same:
            await update_variant(uow, owner.id, VariantChanges(**wanted))  # type: ignore[arg-type]
        variant_id, outcome = owner.id, _UNCHANGED if same else _UPDATED
    if variant.quantity is not None and stock is not None:
        try:
            await stock.set_available(uow, variant_id, variant.quantity)
        except Problem as exc:
            raise _Bad(QUANTITY, exc.detail) from exc
    return outcome


# --------------------------------------------------------------------------------------------
# Writing products out


async def export_rows(
    uow: UnitOfWork, *, after: str | None, limit: int, stock: ShopStock | None
) -> tuple[list[dict[str, str]], str | None]:
    """The rows of up to ``limit`` products (every status) whose id comes after ``after``, in
    id order, and the id to continue after (None at the end). Inactive variants are left out:
    Shopify has no such thing. Quantities are what is free in ``stock``'s warehouse."""
    query = select(Product).order_by(Product.id).limit(limit)
    if after is not None:
        query = query.where(Product.id > after)
    products = list((await uow.scalars(query)).all())
    views = await product_views(uow, products, only_active_variants=True)
    variant_ids = [v.id for p in views for v in p.variants]
    free = await stock.available(uow, variant_ids) if stock is not None else {}
    rows: list[dict[str, str]] = []
    for view in views:
        rows.extend(_product_rows(view, free, stock is not None))
    return rows, (products[-1].id if len(products) == limit else None)


def _product_rows(
    view: ProductView, free: Mapping[str, int], tracked: bool
) -> list[dict[str, str]]:
    names = list(dict.fromkeys(n for v in view.variants for n in v.options))[:3]
    rows: list[dict[str, str]] = []
    for i in range(max(len(view.variants), len(view.media), 1)):
        row = dict.fromkeys(COLUMNS, "")
        row[HANDLE] = view.slug
        if i == 0:
            row.update(
                {
                    TITLE: view.title,
                    BODY: text_to_html(view.description),
                    VENDOR: view.brand.name if view.brand else "",
                    TYPE: view.category.name,
                    TAGS: str(view.attributes.get(TAGS_ATTRIBUTE, "")),
                    PUBLISHED: "TRUE" if view.status == "active" else "FALSE",
                    STATUS: view.status,
                }
            )
            if names:
                for column, name in zip(OPTION_NAMES, names, strict=False):
                    row[column] = name
            elif view.variants:
                row[OPTION_NAMES[0]] = _SINGLE_OPTION[0]
        if i < len(view.variants):
            v = view.variants[i]
            if names:
                for column, name in zip(OPTION_VALUES, names, strict=False):
                    row[column] = v.options.get(name, "")
            else:
                row[OPTION_VALUES[0]] = _SINGLE_OPTION[1]
            row.update(
                {
                    SKU: v.sku,
                    GRAMS: str(v.weight_grams),
                    "Variant Inventory Tracker": "shopify" if tracked else "",
                    QUANTITY: str(free.get(v.id, 0)) if tracked else "",
                    "Variant Inventory Policy": "deny",
                    "Variant Fulfillment Service": "manual",
                    PRICE: format_minor(v.price, v.currency),
                    COMPARE_AT: format_minor(v.compare_at, v.currency)
                    if v.compare_at is not None
                    else "",
                    "Variant Requires Shipping": "TRUE",
                    "Variant Taxable": "TRUE",
                }
            )
        if i < len(view.media):
            row[IMAGE_SRC] = view.media[i]
            row[IMAGE_POSITION] = str(i + 1)
        rows.append(row)
    return rows
