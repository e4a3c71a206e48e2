"""cart: carts and lines

Revision ID: 0005_cart
Revises: 0004_inventory
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0005_cart"
down_revision = "0004_inventory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cart_carts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cart_carts")),
        sa.UniqueConstraint("user_id", name=op.f("uq_cart_carts_user_id")),
    )
    op.create_index(op.f("ix_cart_carts_expires_at"), "cart_carts", ["expires_at"])
    op.create_table(
        "cart_lines",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("cart_id", sa.String(40), nullable=False),
        sa.Column("variant_id", sa.String(40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_seen", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("added_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cart_lines")),
        sa.ForeignKeyConstraint(
            ["cart_id"],
            ["cart_carts.id"],
            name=op.f("fk_cart_lines_cart_id_cart_carts"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("cart_id", "variant_id", name=op.f("uq_cart_lines_cart_id_variant_id")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_cart_lines_quantity_positive")),
    )


def downgrade() -> None:
    op.drop_table("cart_lines")
    op.drop_index(op.f("ix_cart_carts_expires_at"), table_name="cart_carts")
    op.drop_table("cart_carts")
