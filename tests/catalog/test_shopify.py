"""Products from and to Shopify's product CSV: bad rows reported by row and column while the
good ones import, a dry run writing nothing, a second import changing nothing, and a file
exported, imported into a fresh shop and exported again reading the same."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from mercato.catalog import service as catalog
from mercato.catalog.models import Brand, Category, Product, Variant
from mercato.cli import app as cli
from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.inventory import service as inventory
from mercato.settings import get_settings
from tests.conftest import _db_counter

FIXTURE = Path(__file__).parent / "data" / "shopify_products.csv"
WAREHOUSE = "MAIN"


def invoke(*args: str) -> tuple[int, str]:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, list(args), env={"MERCATO_CURRENCY": "EUR"})
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


async def run_cli(*args: str) -> tuple[int, str]:
    return await asyncio.to_thread(invoke, *args)


async def add_warehouse(db: Database) -> None:
    async with db.transaction() as uow:
        await inventory.create_warehouse(uow, code=WAREHOUSE, name="Main", countries=["DE"])


async def counts(db: Database) -> dict[str, int]:
    found: dict[str, int] = {}
    async with db.transaction() as uow:
        for model in (Category, Brand, Product, Variant, OutboxEvent):
            table = model.__table__
            found[table.name] = int(  # type: ignore[attr-defined]
                await uow.scalar(select(func.count()).select_from(table)) or 0
            )
        found["stock"] = await inventory.count_stock_rows(uow)
    return found


async def import_file(db: Database, path: Path) -> list[catalog.ProductImported]:
    """What ``mercato import products`` does, product by product."""
    async with db.transaction() as uow:
        stock = await inventory.warehouse_stock(uow, None)
    outcomes = []
    with path.open(newline="", encoding="utf-8-sig") as lines:
        for product in catalog.read_shopify_products(lines, "EUR"):
            async with db.transaction() as uow:
                outcomes.append(
                    await catalog.import_shopify_product(uow, product, currency="EUR", stock=stock)
                )
    return outcomes


async def product_by_handle(db: Database, handle: str) -> catalog.ProductView | None:
    async with db.transaction() as uow:
        found = await uow.scalar(select(Product.id).where(Product.slug == handle))
        return (
            None if found is None else await catalog.get_product(uow, found, include_inactive=True)
        )


async def free_units(db: Database, variant_ids: list[str]) -> list[int]:
    async with db.transaction() as uow:
        free = await inventory.WarehouseStock(WAREHOUSE).available(uow, variant_ids)
    return [free[v] for v in variant_ids]


async def test_import_reports_bad_rows_imports_the_rest_and_is_idempotent(db: Database) -> None:
    await add_warehouse(db)
    outcomes = await import_file(db, FIXTURE)

    errors = {(e.row, e.column) for o in outcomes for e in o.errors}
    # Row 2's description spans two lines of the file: rows are counted as a spreadsheet does.
    assert errors == {
        (8, "Variant Price"),  # "abc"
        (9, "Variant Inventory Qty"),  # -2
        (10, "Title"),  # the first row of a new handle without a title
        (12, "Status"),  # "retired"
    }

    tee = await product_by_handle(db, "organic-tee")
    assert tee is not None and tee.status == "active"
    assert tee.title == "Organic Tee"
    assert tee.description == "Soft organic cotton & more.\nMachine washable\nFair trade"
    assert tee.brand is not None and tee.brand.name == "Nordhaven"
    assert tee.category.name == "T-Shirts"
    assert tee.attributes == {"tags": "cotton, summer"}
    assert tee.media == [
        "https://cdn.example.com/tee-front.jpg",
        "https://cdn.example.com/tee-back.jpg",
        "https://cdn.example.com/tee-detail.jpg",
    ]
    assert [(v.sku, v.options, v.price, v.compare_at, v.weight_grams) for v in tee.variants] == [
        ("TEE-S-BLK", {"Size": "S", "Color": "Black"}, 1999, 2499, 180),
        ("TEE-M-BLK", {"Size": "M", "Color": "Black"}, 1999, 2499, 185),
        ("TEE-L-WHT", {"Size": "L", "Color": "White"}, 2150, None, 190),
    ]
    assert await free_units(db, [v.id for v in tee.variants]) == [12, 8, 0]

    bottle = await product_by_handle(db, "steel-bottle")
    assert bottle is not None and bottle.status == "draft"
    assert [(v.sku, v.options) for v in bottle.variants] == [("steel-bottle", {})]
    assert await free_units(db, [bottle.variants[0].id]) == [5]

    mug = await product_by_handle(db, "camp-mug")  # imported without its two bad variants
    assert mug is not None and [v.sku for v in mug.variants] == ["MUG-BLU"]
    assert await product_by_handle(db, "mystery-box") is None
    assert await product_by_handle(db, "old-lamp") is None

    # The same file again: the same errors, and not one row or event written.
    before = await counts(db)
    again = await import_file(db, FIXTURE)
    assert {(e.row, e.column) for o in again for e in o.errors} == errors
    assert not any(o.created or o.updated for o in again)
    assert await counts(db) == before


async def test_cli_dry_run_writes_nothing_then_the_round_trip_keeps_the_catalog(
    db: Database,
    database_url: str,
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    await add_warehouse(db)
    before = await counts(db)
    code, output = await run_cli(
        "import", "products", str(FIXTURE), "--dry-run", "--database", database_url
    )
    assert code == 1, output  # rows were reported
    assert "Would import: 3 products created" in output and "2 rejected" in output
    assert "Nothing was written" in output
    assert await counts(db) == before

    code, output = await run_cli("import", "products", str(FIXTURE), "--database", database_url)
    assert code == 1 and "Imported: 3 products created" in output, output
    first = tmp_path / "first.csv"
    code, output = await run_cli("export", "products", str(first), "--database", database_url)
    assert code == 0, output

    # A fresh shop of the same backend takes the exported file without a complaint.
    fresh_url = await fresh_database(backend, request, tmp_path)
    fresh = Database(fresh_url, pool_size=2)
    try:
        await add_warehouse(fresh)
        code, output = await run_cli("import", "products", str(first), "--database", fresh_url)
        assert code == 0 and "3 products created" in output, output
    finally:
        await fresh.dispose()
    second = tmp_path / "second.csv"
    code, output = await run_cli("export", "products", str(second), "--database", fresh_url)
    assert code == 0, output
    assert read_csv(second) == read_csv(first)
    rows = read_csv(first)
    tee = [r for r in rows if r["Handle"] == "organic-tee"]
    assert [r["Variant SKU"] for r in tee] == ["TEE-S-BLK", "TEE-M-BLK", "TEE-L-WHT"]
    assert [r["Variant Price"] for r in tee] == ["19.99", "19.99", "21.50"]
    assert [r["Variant Inventory Qty"] for r in tee] == ["12", "8", "0"]
    assert tee[0]["Body (HTML)"] == (
        "<p>Soft organic cotton &amp; more.</p><p>Machine washable</p><p>Fair trade</p>"
    )

    # Standard output works as a target too.
    code, output = await run_cli("export", "products", "-", "--database", fresh_url)
    assert code == 0 and output.startswith("Handle,Title,Body (HTML)")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


async def fresh_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Another empty, migrated database on the same backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "fresh.db"
        await asyncio.to_thread(shutil.copyfile, template, target)
        return f"sqlite+aiosqlite:///{target}"
    server = request.getfixturevalue("pg_server")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"t{next(_db_counter)}"
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    finally:
        await conn.close()
    return str(server.url(name))


def test_descriptions_keep_words_and_paragraphs_only() -> None:
    body = (
        '<div class="x"><h2>Care</h2><p onclick="evil()">Wash <em>cold</em>&nbsp;only'
        "<br>Dry flat</p><style>p{}</style><!-- note --><img src=x onerror=alert(1)></div>"
    )
    assert catalog.html_to_text(body) == "Care\nWash cold only\nDry flat"
    assert catalog.html_to_text(catalog.text_to_html("a < b\nc & d")) == "a < b\nc & d"


def test_a_file_without_handle_column_is_refused() -> None:
    with pytest.raises(catalog.ShopifyFileError):
        list(catalog.read_shopify_products(io.StringIO("Title,Price\nA,1\n"), "EUR"))
