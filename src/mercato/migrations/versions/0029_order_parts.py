"""marketplace split: cart lines name their seller; an order has one part per seller

Revision ID: 0029_order_parts
Revises: 0028_marketplace_ledger
Create Date: 2026-12-12

* ``cart_lines.seller_id``: the seller of the offer a line buys, ``""`` for the house (not
  NULL, so that the unique (cart, variant, seller) key treats the house like any seller);
* ``orders_order_parts``: one row per (order, seller) with its share of the order's money;
* ``orders_lines.seller_id`` and ``part_id``. Existing orders get one house part, holding all
  their lines and all their money.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0029_order_parts"
down_revision = "0028_marketplace_ledger"
branch_labels = None
depends_on = None

HOUSE = "sel_house"


def upgrade() -> None:
    with op.batch_alter_table("cart_lines") as batch:
        batch.add_column(sa.Column("seller_id", sa.String(40), nullable=False, server_default=""))
        batch.drop_constraint("uq_cart_lines_cart_id_variant_id", type_="unique")
        batch.create_unique_constraint(
            "uq_cart_lines_cart_id_variant_id_seller_id", ["cart_id", "variant_id", "seller_id"]
        )

    op.create_table(
        "orders_order_parts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("seller_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("discount", sa.BigInteger(), nullable=False),
        sa.Column("shipping", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("handling_days", sa.Integer(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "subtotal >= 0 AND discount >= 0 AND shipping >= 0 AND tax >= 0 AND total >= 0",
            name=op.f("ck_orders_order_parts_amounts_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders_orders.id"],
            name=op.f("fk_orders_order_parts_order_id_orders_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders_order_parts")),
        sa.UniqueConstraint(
            "order_id", "seller_id", name=op.f("uq_orders_order_parts_order_id_seller_id")
        ),
    )
    op.create_index(
        "ix_orders_order_parts_seller_id_created_at",
        "orders_order_parts",
        ["seller_id", "created_at"],
    )
    with op.batch_alter_table("orders_lines") as batch:
        batch.add_column(
            sa.Column("seller_id", sa.String(40), nullable=False, server_default=HOUSE)
        )
        batch.add_column(sa.Column("part_id", sa.String(40), nullable=True))

    # One house part per existing order, with all of its money; every line joins it.
    op.execute(
        sa.text(
            "INSERT INTO orders_order_parts (id, order_id, seller_id, status, subtotal, "
            "discount, shipping, tax, total, handling_days, created_at) "
            "SELECT 'opt_' || substr(id, 5), id, :house, status, subtotal, discount, "
            "shipping, tax, total, 1, created_at FROM orders_orders"
        ).bindparams(house=HOUSE)
    )
    op.execute(
        sa.text(
            "UPDATE orders_lines SET part_id = (SELECT p.id FROM orders_order_parts p "
            "WHERE p.order_id = orders_lines.order_id AND p.seller_id = :house)"
        ).bindparams(house=HOUSE)
    )


def downgrade() -> None:
    with op.batch_alter_table("orders_lines") as batch:
        batch.drop_column("part_id")
        batch.drop_column("seller_id")
    op.drop_index("ix_orders_order_parts_seller_id_created_at", table_name="orders_order_parts")
    op.drop_table("orders_order_parts")
    with op.batch_alter_table("cart_lines") as batch:
        batch.drop_constraint("uq_cart_lines_cart_id_variant_id_seller_id", type_="unique")
        batch.create_unique_constraint(
            "uq_cart_lines_cart_id_variant_id", ["cart_id", "variant_id"]
        )
        batch.drop_column("seller_id")
