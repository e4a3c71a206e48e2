"""Back office: products and their variants.

The pages read a form, validate it with the catalog API's own schemas, turn prices into minor
units with :mod:`mercato.money`, and call the catalog service as the staff API does. Every
refusal is shown next to its field with what was typed kept in the form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from itertools import zip_longest
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from mercato.catalog import service
from mercato.catalog.schemas import (
    ProductIn,
    ProductPatch,
    VariantIn,
    VariantPatch,
    product_changes,
)
from mercato.catalog.schemas import new_product as product_spec
from mercato.catalog.service import ProductView, VariantView
from mercato.checkout import service as checkout
from mercato.db import UnitOfWork
from mercato.inventory import service as inventory
from mercato.money import MoneyError, format_minor, to_minor
from mercato.problems import Problem, not_found
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.admin.cfg_forms import (
    Errors,
    Rename,
    checked,
    problem_errors,
    read_form,
    schema_errors,
    text,
    texts,
    whole_number,
)
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import flash, redirect, render

_Body = TypeVar("_Body", bound=BaseModel)
_Result = TypeVar("_Result")

router = APIRouter()

PAGE_SIZE = 25
STATUSES = ("draft", "active", "archived")
BLANK_ROWS = 2
Rows = list[tuple[str, str]]


# --------------------------------------------------------------------------------------------
# Reading the forms


def _rows(form: FormData, names: str, values: str) -> Rows:
    """Name/value rows as typed (fully blank rows dropped)."""
    pairs = zip_longest(texts(form, names), texts(form, values), fillvalue="")
    return [(n, v) for n, v in pairs if n or v]


def _row_dict(rows: Rows, key: str, errors: Errors) -> dict[str, str]:
    """The rows as a mapping; a row without a name or a name given twice is an error on it."""
    found: dict[str, str] = {}
    for i, (name, value) in enumerate(rows):
        if not name:
            errors[f"{key}.{i}"] = "needs a name"
        elif name in found:
            errors[f"{key}.{i}"] = f"{name!r} is given twice"
        else:
            found[name] = value
    return found


def _row_rename(rows: Rows, schema_field: str, key: str) -> Rename:
    """Schema fields (``attributes.colour``) → the form row that holds them (``attr.0``)."""

    def rename(field: str) -> str:
        if field.startswith(schema_field + "."):
            name = field.split(".")[1]
            for i, (row_name, _) in enumerate(rows):
                if row_name == name:
                    return f"{key}.{i}"
            return schema_field
        return field.split(".")[0]

    return rename


def _product_values(form: FormData) -> dict[str, Any]:
    return {
        "title": text(form, "title"),
        "slug": text(form, "slug"),
        "description": text(form, "description"),
        "category_id": text(form, "category_id"),
        "brand_id": text(form, "brand_id"),
        "status": text(form, "status") or "draft",
        "tax_class": text(form, "tax_class") or "standard",
        "currency": text(form, "currency").upper(),
        "attributes": _rows(form, "attr_name", "attr_value"),
        "media": text(form, "media"),
    }


def _media_list(media_text: str) -> list[str]:
    return [line.strip() for line in media_text.splitlines() if line.strip()]


def _product_data(values: dict[str, Any], errors: Errors, *, new: bool) -> dict[str, Any]:
    """The schema's input from the form: empty optional fields are left out (or cleared)."""
    data: dict[str, Any] = {
        "title": values["title"],
        "description": values["description"],
        "status": values["status"],
        "tax_class": values["tax_class"],
        "attributes": _row_dict(values["attributes"], "attr", errors),
        "media": _media_list(values["media"]),
    }
    if values["category_id"] or not new:
        data["category_id"] = values["category_id"]
    if values["slug"]:
        data["slug"] = values["slug"]
    if values["brand_id"]:
        data["brand_id"] = values["brand_id"]
    elif not new:
        data["brand_id"] = None
    if new and values["currency"]:
        data["currency"] = values["currency"]  # else the shop's (see ``product_spec``)
    return data


def _read_product(
    model: type[_Body], values: dict[str, Any], *, new: bool
) -> tuple[_Body | None, Errors, Rename]:
    """The product form checked against ``model`` (create or patch): the body (None when it
    does not validate), the errors by form field, and the renaming of schema fields to form
    fields (for the service's errors too)."""
    errors: Errors = {}
    data = _product_data(values, errors, new=new)
    rename = _row_rename(values["attributes"], "attributes", "attr")
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        errors.update(schema_errors(exc, rename, lines=("media",)))
        return None, errors, rename
    return body, errors, rename


def _read_variant(
    model: type[_Body], values: dict[str, Any], currency: str
) -> tuple[_Body | None, int | None, int | None, Errors, Rename]:
    """The variant form checked against ``model`` (add or patch): the body (None when it does
    not validate), the price and compare-at price in minor units of ``currency``, the errors
    by form field (a field keeps its first error), and the schema-to-form renaming."""
    errors: Errors = {}
    rename = _variant_rename(values["options"])
    data: dict[str, Any] = {
        "sku": values["sku"],
        "price": values["price"],
        "title": values["variant_title"],
        "options": _row_dict(values["options"], "opt", errors),
        "active": values["active"],
        "compare_at_price": values["compare_at_price"] or None,
        "weight_grams": whole_number(values["weight_grams"], "weight_grams", errors, default=0),
    }
    body: _Body | None = None
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        for field, message in schema_errors(exc, rename).items():
            errors.setdefault(field, message)
    price = _amount(values["price"], currency, "price", errors)
    compare_at = (
        _amount(values["compare_at_price"], currency, "compare_at_price", errors)
        if values["compare_at_price"]
        else None
    )
    return body, price, compare_at, errors, rename


def _product_values_of(view: ProductView) -> dict[str, Any]:
    return {
        "title": view.title,
        "slug": view.slug,
        "description": view.description,
        "category_id": view.category.id,
        "brand_id": view.brand.id if view.brand else "",
        "status": view.status,
        "tax_class": view.tax_class,
        "currency": view.currency,
        "attributes": [(k, str(v)) for k, v in view.attributes.items()],
        "media": "\n".join(view.media),
    }


def _variant_values(form: FormData) -> dict[str, Any]:
    return {
        "sku": text(form, "sku"),
        "variant_title": text(form, "variant_title"),
        "price": text(form, "price"),
        "compare_at_price": text(form, "compare_at_price"),
        "weight_grams": text(form, "weight_grams"),
        "active": checked(form, "active"),
        "options": _rows(form, "opt_name", "opt_value"),
    }


def _variant_values_of(v: VariantView) -> dict[str, Any]:
    return {
        "sku": v.sku,
        "variant_title": v.title,
        "price": format_minor(v.price, v.currency),
        "compare_at_price": "" if v.compare_at is None else format_minor(v.compare_at, v.currency),
        "weight_grams": str(v.weight_grams),
        "active": v.active,
        "options": list(v.options.items()),
    }


def _empty_variant() -> dict[str, Any]:
    return {
        "sku": "",
        "variant_title": "",
        "price": "",
        "compare_at_price": "",
        "weight_grams": "",
        "active": True,
        "options": [],
    }


def _variant_rename(rows: Rows) -> Rename:
    by_row = _row_rename(rows, "options", "opt")

    def rename(field: str) -> str:
        name = by_row(field)
        return "variant_title" if name == "title" else name

    return rename


def _amount(value: str, currency: str, field: str, errors: Errors) -> int | None:
    """A decimal string in ``currency`` as minor units, exactly; else an error on ``field``."""
    if field in errors:
        return None
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        errors[field] = str(exc)
        return None


async def _saved(
    uow: UnitOfWork,
    change: Callable[[], Awaitable[_Result]],
    rename: Rename,
    lines: tuple[str, ...] = (),
) -> tuple[_Result | None, Errors]:
    """Run a catalog change in a savepoint: (its result, no errors), or, when the service
    refuses it with field errors, (None, the errors by form field) with nothing of it left
    behind and the request's unit of work still usable to show the form again. A refusal
    that names no field goes on as an error page."""
    try:
        async with uow.begin_nested():
            return await change(), {}
    except Problem as problem:
        found = problem_errors(problem, rename, lines=lines)
        if found is None:
            raise
        return None, found


# --------------------------------------------------------------------------------------------
# What the forms offer


def _flatten(nodes: list[service.CategoryNode], out: list[tuple[str, str]]) -> None:
    for node in nodes:
        c = node.category
        out.append((c.id, "\u2003" * c.depth + c.name))
        _flatten(node.children, out)


async def _form_options(uow: UnitOfWork, current_tax_class: str) -> dict[str, Any]:
    categories: list[tuple[str, str]] = []
    _flatten(await service.get_category_tree(uow), categories)
    brands = [(b.id, b.name) for b in await service.list_brands(uow)]
    classes = {r.tax_class for r in await checkout.list_tax_rates(uow)}
    classes.update({"standard", current_tax_class})
    return {
        "categories": [("", "Choose a category"), *categories],
        "brands": [("", "No brand"), *brands],
        "statuses": [(s, s.capitalize()) for s in STATUSES],
        "tax_classes": [(c, c) for c in sorted(classes)],
    }


async def _product_page(
    request: Request,
    uow: UnitOfWork,
    *,
    view: ProductView | None,
    values: dict[str, Any],
    errors: Errors | None = None,
    variant: dict[str, Any] | None = None,
    variant_errors: Errors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    stock: dict[str, int] = {}
    if view is not None and view.variants:
        stock = await inventory.availability(uow, [v.id for v in view.variants])
    context = {
        "product": view,
        "values": values,
        "errors": errors or {},
        "variant": variant or _empty_variant(),
        "variant_errors": variant_errors or {},
        "stock": stock,
        "blank_rows": BLANK_ROWS,
        **await _form_options(uow, values["tax_class"]),
    }
    return render(request, "admin/products/form.html", context, status_code=status_code)


async def _product_or_404(uow: UnitOfWork, product_id: str) -> ProductView:
    view = await service.get_product(uow, product_id, include_inactive=True)
    if view is None:
        raise not_found("Product", product_id)
    return view


# --------------------------------------------------------------------------------------------
# The product list


@router.get("/products")
async def product_list(
    request: Request,
    uow: UowDep,
    _staff: PageStaff,
    q: Annotated[str, Query(max_length=200)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    before: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:
    chosen = status if status in STATUSES else None
    page = await service.staff_products(
        uow, text=q, status=chosen, before=before or None, limit=PAGE_SIZE
    )
    context = {
        "products": page.items,
        "next_before": page.next_before,
        "q": q,
        "status": chosen or "",
        "paged": before is not None,
        "statuses": [("", "Any status"), *((s, s.capitalize()) for s in STATUSES)],
    }
    return render(request, "admin/products/list.html", context)


@router.get("/products/row")
async def blank_row(
    request: Request, _staff: PageStaff, kind: Annotated[str, Query(pattern="^(attr|opt)$")]
) -> HTMLResponse:
    """One more empty name/value row for the attributes or options (fetched by htmx)."""
    return render(request, "admin/products/_row.html", {"kind": kind})


# --------------------------------------------------------------------------------------------
# Creating and editing products


def _new_values(currency: str) -> dict[str, Any]:
    return {
        "title": "",
        "slug": "",
        "description": "",
        "category_id": "",
        "brand_id": "",
        "status": "draft",
        "tax_class": "standard",
        "currency": currency,
        "attributes": [],
        "media": "",
    }


@router.get("/products/new")
async def new_product(
    request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse:
    values = _new_values(runtime.settings.currency)
    return await _product_page(request, uow, view=None, values=values)


@router.post("/products", dependencies=[CsrfChecked], response_model=None)
async def create_product(
    request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse | Response:
    values = _product_values(await read_form(request))
    body, errors, rename = _read_product(ProductIn, values, new=True)
    if body is None or errors:
        return await _product_page(
            request, uow, view=None, values=values, errors=errors, status_code=422
        )
    view, found = await _saved(
        uow,
        lambda: service.create_product(uow, product_spec(body, runtime.settings.currency)),
        rename,
        ("media",),
    )
    if view is None:
        return await _product_page(
            request, uow, view=None, values=values, errors=found, status_code=422
        )
    response = redirect(f"/admin/products/{view.id}")
    flash(request, response, f"Product “{view.title}” created; now add its variants", "success")
    return response


@router.get("/products/{product_id}")
async def edit_product(
    product_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> HTMLResponse:
    view = await _product_or_404(uow, product_id)
    return await _product_page(request, uow, view=view, values=_product_values_of(view))


@router.post("/products/{product_id}", dependencies=[CsrfChecked], response_model=None)
async def update_product(
    product_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> HTMLResponse | Response:
    view = await _product_or_404(uow, product_id)
    values = _product_values(await read_form(request))
    values["currency"] = view.currency
    body, errors, rename = _read_product(ProductPatch, values, new=False)
    if body is None or errors:
        return await _product_page(
            request, uow, view=view, values=values, errors=errors, status_code=422
        )
    updated, found = await _saved(
        uow,
        lambda: service.update_product(uow, product_id, product_changes(body)),
        rename,
        ("media",),
    )
    if updated is None:
        view = await _product_or_404(uow, product_id)
        return await _product_page(
            request, uow, view=view, values=values, errors=found, status_code=422
        )
    response = redirect(f"/admin/products/{updated.id}")
    flash(request, response, "Product saved", "success")
    return response


@router.post("/products/{product_id}/archive", dependencies=[CsrfChecked])
async def archive_product(
    product_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> Response:
    view = await service.archive_product(uow, product_id)
    response = redirect(f"/admin/products/{view.id}")
    flash(request, response, f"“{view.title}” archived: shoppers no longer see it", "success")
    return response


# --------------------------------------------------------------------------------------------
# Variants


@router.post("/products/{product_id}/variants", dependencies=[CsrfChecked], response_model=None)
async def add_variant(
    product_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> HTMLResponse | Response:
    view = await _product_or_404(uow, product_id)
    values = _variant_values(await read_form(request))
    body, price, compare_at, errors, rename = _read_variant(VariantIn, values, view.currency)
    if body is None or price is None or errors:
        return await _product_page(
            request,
            uow,
            view=view,
            values=_product_values_of(view),
            variant=values,
            variant_errors=errors,
            status_code=422,
        )
    spec = service.NewVariant(
        sku=body.sku,
        price=price,
        title=body.title,
        options=body.options,
        compare_at=compare_at,
        weight_grams=body.weight_grams,
        active=body.active,
        position=body.position,
    )
    variant, found = await _saved(uow, lambda: service.add_variant(uow, product_id, spec), rename)
    if variant is None:
        view = await _product_or_404(uow, product_id)
        return await _product_page(
            request,
            uow,
            view=view,
            values=_product_values_of(view),
            variant=values,
            variant_errors=found,
            status_code=422,
        )
    response = redirect(f"/admin/products/{product_id}#variants")
    flash(request, response, f"Variant {variant.sku} added", "success")
    return response


async def _variant_or_404(
    uow: UnitOfWork, product_id: str, variant_id: str
) -> tuple[ProductView, VariantView]:
    view = await _product_or_404(uow, product_id)
    for variant in view.variants:
        if variant.id == variant_id:
            return view, variant
    raise not_found("Variant", variant_id)


def _variant_page(
    request: Request,
    view: ProductView,
    variant: VariantView,
    values: dict[str, Any],
    errors: Errors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "product": view,
        "current": variant,
        "variant": values,
        "variant_errors": errors or {},
        "blank_rows": BLANK_ROWS,
    }
    return render(request, "admin/products/variant.html", context, status_code=status_code)


@router.get("/products/{product_id}/variants/{variant_id}")
async def edit_variant(
    product_id: str, variant_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> HTMLResponse:
    view, variant = await _variant_or_404(uow, product_id, variant_id)
    return _variant_page(request, view, variant, _variant_values_of(variant))


@router.post(
    "/products/{product_id}/variants/{variant_id}",
    dependencies=[CsrfChecked],
    response_model=None,
)
async def update_variant(
    product_id: str, variant_id: str, request: Request, uow: UowDep, _staff: PageStaff
) -> HTMLResponse | Response:
    view, variant = await _variant_or_404(uow, product_id, variant_id)
    values = _variant_values(await read_form(request))
    body, price, compare_at, errors, rename = _read_variant(VariantPatch, values, variant.currency)
    if body is None or price is None or errors:
        return _variant_page(request, view, variant, values, errors, status_code=422)
    changes = service.VariantChanges(
        sku=body.sku if body.sku is not None else service.UNSET,
        title=body.title if body.title is not None else service.UNSET,
        options=body.options if body.options is not None else service.UNSET,
        price=price,
        compare_at=compare_at,
        weight_grams=body.weight_grams if body.weight_grams is not None else service.UNSET,
        active=body.active if body.active is not None else service.UNSET,
    )
    saved, found = await _saved(
        uow, lambda: service.update_variant(uow, variant_id, changes), rename
    )
    if saved is None:
        view, variant = await _variant_or_404(uow, product_id, variant_id)
        return _variant_page(request, view, variant, values, found, status_code=422)
    response = redirect(f"/admin/products/{product_id}#variants")
    flash(request, response, f"Variant {saved.sku} saved", "success")
    return response
