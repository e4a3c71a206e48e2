"""What crosses the catalog API: staff requests (strict: no coercion, no unknown fields), and
products, categories and brands as JSON (the one place a product becomes an answer, for the
catalog's staff API and the storefront's product reads alike)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mercato.catalog.service import (
    NO_STOCK,
    SKU_PATTERN,
    BrandInfo,
    CategoryInfo,
    CategoryNode,
    NewProduct,
    NewVariant,
    ProductChanges,
    ProductView,
    StockNote,
    VariantView,
)
from mercato.money import CurrencyCode, DecimalStr, MoneyError, format_minor, to_minor
from mercato.openapi import NO_SPACE_OR_CONTROL, Integer, WholeNumber
from mercato.problems import validation_problem
from mercato.text import PlainLine, PlainText

Slug = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
Name = Annotated[str, PlainLine(min_length=1, max_length=120)]
Title = Annotated[str, PlainLine(min_length=1, max_length=200)]
Description = Annotated[str, PlainText(max_length=20_000)]
Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=SKU_PATTERN)]
EntityId = Annotated[str, PlainLine(min_length=1, max_length=40)]
AttributeName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
AttributeValue = Annotated[str, PlainLine(max_length=200)] | Integer | bool
OptionName = Annotated[str, PlainLine(min_length=1, max_length=40)]
OptionValue = Annotated[str, PlainLine(min_length=1, max_length=100)]
# No whitespace, and none of the characters mercato.text refuses in free text (the class reads
# the same in the Rust, Python and ECMA 262 regular expressions).
MediaUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        pattern=rf"^(https?://|/)[^{NO_SPACE_OR_CONTROL}\u00ad\u200b-\u200f\u202a-\u202e"
        r"\u2060-\u206f]*$",
    ),
]
TaxClass = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
Position = Annotated[int, Field(ge=0, le=100_000), WholeNumber]
Weight = Annotated[int, Field(ge=0, le=10_000_000), WholeNumber]
Status = Literal["draft", "active", "archived"]

# additionalProperties: names that do not match AttributeName's pattern are refused.
Attributes = Annotated[
    dict[AttributeName, AttributeValue],
    Field(max_length=50, json_schema_extra={"additionalProperties": False}),
]
Options = Annotated[
    dict[OptionName, OptionValue],
    Field(max_length=10, json_schema_extra={"additionalProperties": False}),
]
Media = Annotated[list[MediaUrl], Field(max_length=20)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _null_only_where_nullable(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The document of a patch: fields are optional, but ``null`` only where it clears."""
    nullable: frozenset[str] = getattr(model, "nullable", frozenset())
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf")
        if name in nullable or not isinstance(options, list):
            continue
        kept = [o for o in options if o != {"type": "null"}]
        if len(kept) == 1:
            del prop["anyOf"]
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class _Patch(_Strict):
    """A partial update: absent fields stay as they are; ``null`` only where it means "clear"."""

    model_config = ConfigDict(json_schema_extra=_null_only_where_nullable)
    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _no_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("may not be null")
        return value


def normalise_attributes(attributes: dict[str, str | int | bool]) -> dict[str, str]:
    """Attribute values are stored as text so that filters compare alike on every database."""
    out: dict[str, str] = {}
    for name, value in attributes.items():
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


class CategoryIn(_Strict):
    name: Name
    slug: Slug | None = None
    parent_id: EntityId | None = None
    position: Position = 0


class CategoryPatch(_Patch):
    nullable = frozenset({"parent_id"})

    name: Name | None = None
    slug: Slug | None = None
    parent_id: EntityId | None = None
    position: Position | None = None


class BrandIn(_Strict):
    name: Name
    slug: Slug | None = None


class VariantIn(_Strict):
    sku: Sku
    price: DecimalStr
    currency: CurrencyCode | None = None
    compare_at_price: DecimalStr | None = None
    title: Annotated[str, PlainLine(max_length=200)] = ""
    options: Options = Field(default_factory=dict)
    weight_grams: Weight = 0
    active: bool = True
    position: Position | None = None


class VariantPatch(_Patch):
    nullable = frozenset({"compare_at_price"})

    sku: Sku | None = None
    price: DecimalStr | None = None
    compare_at_price: DecimalStr | None = None
    title: Annotated[str, PlainLine(max_length=200)] | None = None
    options: Options | None = None
    weight_grams: Weight | None = None
    active: bool | None = None
    position: Position | None = None


class ProductIn(_Strict):
    title: Title
    slug: Annotated[str, Field(min_length=1, max_length=220, pattern=r"^[a-z0-9-]+$")] | None = None
    description: Description = ""
    category_id: EntityId
    brand_id: EntityId | None = None
    status: Status = "draft"
    attributes: Attributes = Field(default_factory=dict)
    media: Media = Field(default_factory=list)
    tax_class: TaxClass = "standard"
    currency: CurrencyCode | None = None
    variants: Annotated[list[VariantIn], Field(max_length=100)] = Field(default_factory=list)


class ProductPatch(_Patch):
    nullable = frozenset({"brand_id"})

    title: Title | None = None
    slug: Annotated[str, Field(min_length=1, max_length=220, pattern=r"^[a-z0-9-]+$")] | None = None
    description: Description | None = None
    category_id: EntityId | None = None
    brand_id: EntityId | None = None
    status: Status | None = None
    attributes: Attributes | None = None
    media: Media | None = None
    tax_class: TaxClass | None = None
    currency: CurrencyCode | None = None


# --------------------------------------------------------------------------------------------
# Requests into the service's terms


def minor(amount: str, currency: str, field: str) -> int:
    """A decimal string in ``currency`` as minor units; a 422 naming ``field`` otherwise."""
    try:
        return to_minor(amount, currency)
    except MoneyError as exc:
        raise validation_problem(field, str(exc)) from exc


def new_variant(body: VariantIn, currency: str, field_prefix: str = "") -> NewVariant:
    # Amounts are read in the variant's own currency when it names one, so that a mismatch is
    # reported as such rather than as a decimal-places error.
    own = body.currency or currency
    return NewVariant(
        sku=body.sku,
        price=minor(body.price, own, f"{field_prefix}price"),
        currency=body.currency,
        title=body.title,
        options=body.options,
        compare_at=(
            minor(body.compare_at_price, own, f"{field_prefix}compare_at_price")
            if body.compare_at_price is not None
            else None
        ),
        weight_grams=body.weight_grams,
        active=body.active,
        position=body.position,
    )


def new_product(body: ProductIn, shop_currency: str) -> NewProduct:
    """A new product as the service takes it: its currency is the one named, else its first
    variant's, else the shop's; prices in minor units."""
    currency = body.currency or next(
        (v.currency for v in body.variants if v.currency), shop_currency
    )
    return NewProduct(
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
        variants=[new_variant(v, currency, f"variants.{i}.") for i, v in enumerate(body.variants)],
    )


def product_changes(body: ProductPatch) -> ProductChanges:
    values = body.model_dump(exclude_unset=True)
    if "attributes" in values:
        values["attributes"] = normalise_attributes(values["attributes"])
    return ProductChanges(**values)


# --------------------------------------------------------------------------------------------
# Answers


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


def _stocked_variant_json(v: VariantView, note: StockNote) -> dict[str, Any]:
    # An inactive variant is never in stock for a shopper, whatever its shelf holds.
    return {
        **variant_json(v),
        "in_stock": v.active and note.in_stock,
        "stock_hint": note.hint if v.active else None,
        "available_elsewhere": v.active and note.available_elsewhere,
    }


def product_json(p: ProductView, *, detail: bool, stock: Mapping[str, StockNote]) -> dict[str, Any]:
    """A product as the API answers it, with each variant's stock note (``stock`` by variant
    id; a variant it does not name has none)."""
    variants = [_stocked_variant_json(v, stock.get(v.id, NO_STOCK)) for v in p.variants]
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
        "variants": variants,
    }
    if detail:
        body["description"] = p.description
        body["tax_class"] = p.tax_class
        body["updated_at"] = p.updated_at.isoformat()
    body["in_stock"] = any(v["in_stock"] for v in variants)
    # Out of reach rather than sold out: some variant could be sent elsewhere.
    body["available_elsewhere"] = not body["in_stock"] and any(
        v["available_elsewhere"] for v in variants
    )
    return body
