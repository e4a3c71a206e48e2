"""Offers uploaded as CSV, with a report per row.

The file is UTF-8 (a byte-order mark is allowed), comma-separated, with a header row naming its
columns: ``sku`` or ``variant_id`` (one of them), ``price``, ``shipping`` (decimal strings in
the variant's currency), ``quantity`` (units free to sell), ``handling_days`` and ``active``
(``true``/``false``). Row numbers count the header as row 1, as a spreadsheet shows them.

Modes:

* ``add_update``: each row is a whole offer (``price`` and ``quantity`` required; missing
  optional columns take their defaults); new offers are created, existing ones overwritten;
* ``partial_update``: each row changes only the cells it fills, of an offer that exists;
* ``replace``: as ``add_update``, and the seller's offers the file does not name are taken off
  sale; all or nothing: one bad row and nothing is written (422 with every row's errors).

In the first two modes the good rows are applied and the bad ones reported; a row whose write
fails is rolled back alone (a savepoint per row).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import update

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.inventory import service as inventory
from mercato.marketplace.common import OFFERS, SellerInfo, publish_offers_changed
from mercato.marketplace.offers import (
    DEFAULT_HANDLING_DAYS,
    OfferValues,
    change_offer,
    check_handling_days,
    check_stock_quantity,
    insert_offer,
    offer_rows_of,
    offering_seller,
    parse_price,
    parse_shipping,
)
from mercato.problems import Problem

MAX_IMPORT_BYTES = 1_000_000
MAX_IMPORT_ROWS = 10_000
ImportMode = Literal["add_update", "partial_update", "replace"]
MODES: tuple[str, ...] = ("add_update", "partial_update", "replace")
COLUMNS: tuple[str, ...] = (
    "sku",
    "variant_id",
    "price",
    "shipping",
    "quantity",
    "handling_days",
    "active",
)
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str | None
    message: str


@dataclass
class ImportReport:
    mode: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Row:
    number: int
    variant: catalog.VariantInfo
    values: OfferValues


class _RowProblem(Exception):
    def __init__(self, column: str | None, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def _file_problem(status: int, code: str, detail: str) -> Problem:
    return Problem(
        status, code, detail, errors=[{"field": "file", "message": detail, "type": code}]
    )


def read_rows(data: bytes) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the data rows (with their numbers) of a CSV file; 413 when too large,
    422 when not UTF-8, without a usable header or with too many rows."""
    if len(data) > MAX_IMPORT_BYTES:
        raise _file_problem(413, "file_too_large", f"The file is over {MAX_IMPORT_BYTES:,} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _file_problem(
            422, "invalid_encoding", f"The file is not UTF-8 (byte {exc.start} is not valid)"
        ) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        unknown = [h for h in header if h not in COLUMNS]
        if not header or unknown or len(set(header)) != len(header):
            raise _file_problem(
                422,
                "invalid_header",
                f"The first row must name the columns, once each, among {', '.join(COLUMNS)}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
            )
        if ("sku" in header) == ("variant_id" in header):
            raise _file_problem(
                422, "invalid_header", "The header needs a sku or a variant_id column (one)"
            )
        rows: list[tuple[int, dict[str, str]]] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(rows) >= MAX_IMPORT_ROWS:
                raise _file_problem(
                    422, "too_many_rows", f"The file has over {MAX_IMPORT_ROWS:,} rows"
                )
            rows.append((reader.line_num, _cells(header, cells, reader.line_num)))
    except csv.Error as exc:
        raise _file_problem(422, "invalid_csv", f"Line {reader.line_num}: {exc}") from exc
    return header, rows


def _cells(header: list[str], cells: list[str], number: int) -> dict[str, str]:
    if len(cells) > len(header):
        return {"": "extra"}
    return {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header)}


def _value(row: Mapping[str, str], column: str) -> str | None:
    text = row.get(column, "")
    return text if text else None


def _int(row: Mapping[str, str], column: str) -> int | None:
    text = _value(row, column)
    if text is None:
        return None
    if not text.lstrip("-").isdigit():
        raise _RowProblem(column, "must be a whole number")
    return int(text)


def _row_values(row: Mapping[str, str], currency: str, *, whole: bool) -> OfferValues:
    try:
        price = _value(row, "price")
        if whole and price is None:
            raise _RowProblem("price", "is required")
        quantity = _int(row, "quantity")
        if whole and quantity is None:
            raise _RowProblem("quantity", "is required")
        shipping = _value(row, "shipping")
        days = _int(row, "handling_days")
        active_text = _value(row, "active")
        if active_text is not None and active_text.lower() not in _BOOLEANS:
            raise _RowProblem("active", "must be true or false")
        active = None if active_text is None else _BOOLEANS[active_text.lower()]
        return OfferValues(
            price=None if price is None else parse_price(price, currency),
            shipping_price=(
                (0 if whole else None) if shipping is None else parse_shipping(shipping, currency)
            ),
            quantity=None if quantity is None else check_stock_quantity(quantity),
            handling_days=(
                (DEFAULT_HANDLING_DAYS if whole else None)
                if days is None
                else check_handling_days(days)
            ),
            active=(True if whole else None) if active is None else active,
        )
    except Problem as exc:
        error = (exc.extra.get("errors") or [{}])[0]
        raise _RowProblem(error.get("field"), error.get("message", exc.detail)) from exc


async def _parse(
    uow: UnitOfWork,
    rows: list[tuple[int, dict[str, str]]],
    key: str,
    mode: str,
    report: ImportReport,
) -> list[_Row]:
    good: list[_Row] = []
    seen: dict[str, int] = {}
    for number, cells in rows:
        try:
            if "" in cells:
                raise _RowProblem(None, "has more cells than the header has columns")
            ref = cells.get(key, "")
            if not ref:
                raise _RowProblem(key, "is required")
            try:
                variant = await inventory.resolve_variant(uow, ref, field=key)
            except Problem as exc:
                raise _RowProblem(key, f"no variant with {key} {ref!r}") from exc
            if variant.id in seen:
                raise _RowProblem(key, f"the same variant as row {seen[variant.id]}")
            seen[variant.id] = number
            values = _row_values(cells, variant.currency, whole=mode != "partial_update")
            good.append(_Row(number, variant, values))
        except _RowProblem as exc:
            report.errors.append(RowError(number, exc.column, exc.message))
    return good


async def _apply_row(
    uow: UnitOfWork, seller: SellerInfo, row: _Row, existing: str | None, report: ImportReport
) -> None:
    if existing is None:
        await insert_offer(uow, seller, row.variant, row.values)
        report.created += 1
    else:
        await change_offer(uow, seller, row.variant, existing, row.values)
        report.updated += 1


async def import_offers(
    uow: UnitOfWork,
    scope: str | None,
    data: bytes,
    mode: ImportMode,
    *,
    seller_id: str | None = None,
) -> ImportReport:
    """Apply a CSV file of offers for the caller's seller (staff: ``seller_id``'s); see the
    module's docstring for the columns and modes."""
    seller = await offering_seller(uow, scope, seller_id)
    header, rows = read_rows(data)
    key = "sku" if "sku" in header else "variant_id"
    report = ImportReport(mode=mode, rows=len(rows))
    parsed = await _parse(uow, rows, key, mode, report)
    existing = await offer_rows_of(uow, seller.id)
    if mode == "partial_update":
        for row in list(parsed):
            if row.variant.id not in existing:
                report.errors.append(RowError(row.number, key, "the seller has no such offer"))
                parsed.remove(row)
    if mode == "replace":
        if report.errors:
            raise _rejected(report)
        for row in parsed:
            found = existing.get(row.variant.id)
            await _apply_row(uow, seller, row, found.id if found else None, report)
        await _deactivate_others(uow, seller, existing, {r.variant.id for r in parsed}, report)
    else:
        for row in parsed:
            found = existing.get(row.variant.id)
            try:
                async with uow.begin_nested():
                    await _apply_row(uow, seller, row, found.id if found else None, report)
            except Problem as exc:
                report.errors.append(RowError(row.number, "quantity", exc.detail))
    report.errors.sort(key=lambda e: (e.row, e.column or ""))
    touched = {r.variant.product_id for r in parsed}
    touched |= {r.product_id for r in existing.values()} if mode == "replace" else set()
    await publish_offers_changed(uow, touched)
    return report


async def _deactivate_others(
    uow: UnitOfWork,
    seller: SellerInfo,
    existing: Mapping[str, object],
    named: set[str],
    report: ImportReport,
) -> None:
    others = sorted(set(existing) - named)
    if not others:
        return
    report.deactivated = await uow.changed(
        update(OFFERS)
        .where(
            OFFERS.c.seller_id == seller.id,
            OFFERS.c.variant_id.in_(others),
            OFFERS.c.active.is_(True),
        )
        .values(active=False, updated_at=utcnow())
    )


def _rejected(report: ImportReport) -> Problem:
    rows = [{"row": e.row, "column": e.column, "message": e.message} for e in report.errors]
    first = report.errors[0]
    return Problem(
        422,
        "import_rejected",
        f"{len(rows)} row(s) have errors (first: row {first.row}, "
        f"{first.column or 'row'}: {first.message}); nothing was written",
        rows=rows,
    )
