"""catalog: categories, brands, products, variants

Revision ID: 0003_catalog
Revises: 0002_identity
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0003_catalog"
down_revision = "0002_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_categories",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("parent_id", sa.String(40), nullable=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("slug", sa.String(80), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_categories")),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["catalog_categories.id"],
            name=op.f("fk_catalog_categories_parent_id_catalog_categories"),
        ),
        sa.UniqueConstraint("slug", name=op.f("uq_catalog_categories_slug")),
        sa.UniqueConstraint("path", name=op.f("uq_catalog_categories_path")),
    )
    op.create_index(op.f("ix_catalog_categories_parent_id"), "catalog_categories", ["parent_id"])

    op.create_table(
        "catalog_brands",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("slug", sa.String(80), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_brands")),
        sa.UniqueConstraint("slug", name=op.f("uq_catalog_brands_slug")),
    )

    op.create_table(
        "catalog_products",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(220), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("brand_id", sa.String(40), nullable=True),
        sa.Column("category_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attributes", mercato.db.JSONType, nullable=False),
        sa.Column("media", mercato.db.JSONType, nullable=False),
        sa.Column("tax_class", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("min_price", sa.BigInteger(), nullable=True),
        sa.Column("max_price", sa.BigInteger(), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_products")),
        sa.ForeignKeyConstraint(
            ["brand_id"],
            ["catalog_brands.id"],
            name=op.f("fk_catalog_products_brand_id_catalog_brands"),
        ),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["catalog_categories.id"],
            name=op.f("fk_catalog_products_category_id_catalog_categories"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'archived')", name=op.f("ck_catalog_products_status")
        ),
    )
    op.create_index(
        "ix_catalog_products_status_created_at_id",
        "catalog_products",
        ["status", "created_at", "id"],
    )
    op.create_index(
        "ix_catalog_products_status_min_price_id",
        "catalog_products",
        ["status", "min_price", "id"],
    )
    op.create_index("ix_catalog_products_category_id", "catalog_products", ["category_id"])
    op.create_index("ix_catalog_products_brand_id", "catalog_products", ["brand_id"])

    op.create_table(
        "catalog_variants",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("product_id", sa.String(40), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("options", mercato.db.JSONType, nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("compare_at", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("weight_grams", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_variants")),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["catalog_products.id"],
            name=op.f("fk_catalog_variants_product_id_catalog_products"),
        ),
        sa.UniqueConstraint("sku", name=op.f("uq_catalog_variants_sku")),
        sa.CheckConstraint("price >= 0", name=op.f("ck_catalog_variants_price_non_negative")),
        sa.CheckConstraint(
            "compare_at IS NULL OR compare_at >= 0",
            name=op.f("ck_catalog_variants_compare_at_non_negative"),
        ),
        sa.CheckConstraint(
            "weight_grams >= 0", name=op.f("ck_catalog_variants_weight_non_negative")
        ),
    )
    op.create_index(op.f("ix_catalog_variants_product_id"), "catalog_variants", ["product_id"])


def downgrade() -> None:
    op.drop_table("catalog_variants")
    op.drop_table("catalog_products")
    op.drop_table("catalog_brands")
    op.drop_table("catalog_categories")
