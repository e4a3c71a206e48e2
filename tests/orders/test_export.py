"""``mercato export orders``: one row per order line, amounts as decimal strings."""

from __future__ import annotations

import asyncio
import csv
import io

from typer.testing import CliRunner

from mercato.cli import app as cli
from mercato.db import Database
from mercato.orders import service
from mercato.settings import get_settings
from tests.orders.conftest import LineSpec, place


def export(database_url: str) -> tuple[int, str]:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["export", "orders", "-", "--database", database_url])
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.stdout


async def test_orders_export_writes_each_line_with_the_order_figures(
    db: Database, database_url: str
) -> None:
    order = await place(
        db,
        lines=[
            LineSpec("var_a", "prod_a", 2, 1999, "SKU-A"),
            LineSpec("var_b", "prod_b", 1, 4550, "SKU-B"),
        ],
    )
    other = await place(db, lines=[LineSpec("var_c", "prod_c", 3, 500, "SKU-C")])

    code, output = await asyncio.to_thread(export, database_url)
    assert code == 0, output
    reader = csv.DictReader(io.StringIO(output))
    assert tuple(reader.fieldnames or ()) == service.EXPORT_COLUMNS
    rows = list(reader)
    assert [(r["order_id"], r["line_position"], r["sku"]) for r in rows] == [
        (order.id, "1", "SKU-A"),
        (order.id, "2", "SKU-B"),
        (other.id, "1", "SKU-C"),
    ]
    first = rows[0]
    assert first["order_number"] == order.id
    assert first["status"] == "paid" and first["email"] == "shopper@example.com"
    assert first["currency"] == "EUR"
    assert (first["quantity"], first["unit_price"], first["line_total"]) == ("2", "19.99", "39.98")
    assert first["order_subtotal"] == "85.48"
    assert first["order_shipping"] == "4.95"
    assert first["order_total"] == "90.43"
    assert first["options"] == "colour: red"
    assert first["placed_at"].startswith(order.created_at.date().isoformat())
