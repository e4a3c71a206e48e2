"""What crosses the catalog API: staff requests (strict: no coercion, no unknown fields)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mercato.money import CurrencyCode, DecimalStr

Slug = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
Name = Annotated[str, Field(min_length=1, max_length=120)]
Title = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=20_000)]
Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
EntityId = Annotated[str, Field(min_length=1, max_length=40)]
AttributeName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
AttributeValue = Annotated[str, Field(max_length=200)] | int | bool
OptionName = Annotated[str, Field(min_length=1, max_length=40)]
OptionValue = Annotated[str, Field(min_length=1, max_length=100)]
MediaUrl = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^(https?://|/)[^\s]*$")]
TaxClass = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
Position = Annotated[int, Field(ge=0, le=100_000)]
Weight = Annotated[int, Field(ge=0, le=10_000_000)]
Status = Literal["draft", "active", "archived"]

Attributes = Annotated[dict[AttributeName, AttributeValue], Field(max_length=50)]
Options = Annotated[dict[OptionName, OptionValue], Field(max_length=10)]
Media = Annotated[list[MediaUrl], Field(max_length=20)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Patch(_Strict):
    """A partial update: absent fields stay as they are; ``null`` only where it means "clear"."""

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
    title: Annotated[str, Field(max_length=200)] = ""
    options: Options = Field(default_factory=dict)
    weight_grams: Weight = 0
    active: bool = True
    position: Position | None = None


class VariantPatch(_Patch):
    nullable = frozenset({"compare_at_price"})

    sku: Sku | None = None
    price: DecimalStr | None = None
    compare_at_price: DecimalStr | None = None
    title: Annotated[str, Field(max_length=200)] | None = None
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
