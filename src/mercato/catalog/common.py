"""What the catalog's rule families share: slugs, the marker of a field a partial update
leaves alone, the problems they answer with, and the attribute-filter reading every listing
(the product API, search, the shop's pages) uses."""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mercato.catalog.models import Brand, Category
from mercato.db import UnitOfWork
from mercato.problems import Problem, validation_problem

ProductStatus = Literal["draft", "active", "archived"]
Sort = Literal["newest", "price_asc", "price_desc"]
SORTS: tuple[str, ...] = ("newest", "price_asc", "price_desc")
MAX_PATH_LENGTH = 500
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
"""What a SKU may be: the API's schemas and the product file import check the same rule."""
_CHUNK = 500


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET
"""Marks a field a partial update leaves alone (``None`` is a real value: "clear it")."""


def slugify(text: str, max_length: int = 80) -> str:
    """``"Nordhaven Kettle 1.7 L"`` → ``"nordhaven-kettle-1-7-l"`` (ASCII, lower case, hyphens)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "item"


def chunks(values: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def slug_taken(field_name: str, slug: str) -> Problem:
    return Problem(
        409, "slug_taken", f"The slug {slug!r} is already in use", field=field_name, slug=slug
    )


def unknown_category(field_name: str, ident: str) -> Problem:
    return validation_problem(field_name, f"no category {ident!r}", code="unknown_category")


def unknown_brand(field_name: str, ident: str) -> Problem:
    return validation_problem(field_name, f"no brand {ident!r}", code="unknown_brand")


async def slug_in_use(uow: UnitOfWork, model: type[Category] | type[Brand], slug: str) -> bool:
    found = await uow.scalar(select(model.id).where(model.slug == slug))
    return found is not None


async def flush_or_conflict(uow: UnitOfWork, problem: Problem) -> None:
    """Flush; a unique-constraint race lost to a concurrent writer becomes ``problem``."""
    try:
        await uow.flush()
    except IntegrityError as exc:
        raise problem from exc


# --------------------------------------------------------------------------------------------
# Attribute filters: ``attr.<name>=<value>`` in a query string


MAX_ATTRIBUTE_FILTERS = 20
MAX_ATTRIBUTE_VALUE = 200
ATTR_PREFIX = "attr."
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def attribute_filters(
    params: Iterable[tuple[str, str]], *, lenient: bool = False
) -> dict[str, list[str]]:
    """``attr.colour=red&attr.colour=blue&attr.size=M`` → {colour: [red, blue], size: [M]}:
    values of one attribute are alternatives, different attributes must all match (variant
    options count as attributes where the search index answers).

    Strict (the API): a bad name, an over-long value or too many filters is a 422 naming the
    parameter. ``lenient`` (the shop's pages, whose URLs people edit by hand): what cannot be
    used is left out, and a value given twice counts once.
    """
    filters: dict[str, list[str]] = {}
    count = 0
    for key, value in params:
        if not key.startswith(ATTR_PREFIX):
            continue
        name = key[len(ATTR_PREFIX) :]
        if lenient:
            usable = value and len(value) <= MAX_ATTRIBUTE_VALUE and ATTRIBUTE_NAME.fullmatch(name)
            if usable and count < MAX_ATTRIBUTE_FILTERS and value not in filters.get(name, []):
                filters.setdefault(name, []).append(value)
                count += 1
            continue
        count += 1
        if count > MAX_ATTRIBUTE_FILTERS:
            raise validation_problem(key, f"at most {MAX_ATTRIBUTE_FILTERS} attribute filters")
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise validation_problem(key, "not an attribute name")
        if len(value) > MAX_ATTRIBUTE_VALUE:
            raise validation_problem(key, f"at most {MAX_ATTRIBUTE_VALUE} characters")
        filters.setdefault(name, []).append(value)
    return filters
