"""marketplace: sellers (the house first), their users and offers; pooled warehouses

Revision ID: 0027_marketplace
Revises: 0026_recommendation_rows
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0027_marketplace"
down_revision = "0026_recommendation_rows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every existing warehouse is the shop's own: pooled, as all stock was until now.
    with op.batch_alter_table("inventory_warehouses") as batch:
        batch.add_column(
            sa.Column("pooled", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    sellers = op.create_table(
        "marketplace_sellers",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("legal_name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("payout_reference", sa.String(80), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(200), nullable=True),
        sa.Column("is_house", sa.Boolean(), nullable=False),
        sa.Column("warehouse_id", sa.String(40), nullable=True),
        sa.Column("warehouse_code", sa.String(16), nullable=True),
        sa.Column("applicant_user_id", sa.String(40), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("approved_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("suspended_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("orders_counted", sa.Integer(), nullable=False),
        sa.Column("defect_rate_bp", sa.Integer(), nullable=False),
        sa.Column("late_shipment_rate_bp", sa.Integer(), nullable=False),
        sa.Column("cancel_rate_bp", sa.Integer(), nullable=False),
        sa.Column("rating_x100", sa.Integer(), nullable=True),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        sa.Column("performance_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("eligible", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'suspended')",
            name=op.f("ck_marketplace_sellers_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_sellers")),
    )
    op.create_index("ix_marketplace_sellers_status", "marketplace_sellers", ["status"])
    op.create_table(
        "marketplace_seller_users",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("seller_id", sa.String(40), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_marketplace_seller_users")),
    )
    op.create_index(
        "ix_marketplace_seller_users_seller_id", "marketplace_seller_users", ["seller_id"]
    )
    op.create_table(
        "marketplace_offers",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("seller_id", sa.String(40), nullable=False),
        sa.Column("variant_id", sa.String(40), nullable=False),
        sa.Column("product_id", sa.String(40), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("shipping_price", sa.Integer(), nullable=False),
        sa.Column("handling_days", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint("price > 0", name=op.f("ck_marketplace_offers_price_positive")),
        sa.CheckConstraint(
            "shipping_price >= 0", name=op.f("ck_marketplace_offers_shipping_not_negative")
        ),
        sa.CheckConstraint(
            "handling_days BETWEEN 0 AND 30",
            name=op.f("ck_marketplace_offers_handling_days_in_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_offers")),
        sa.UniqueConstraint(
            "seller_id", "variant_id", name=op.f("uq_marketplace_offers_seller_id_variant_id")
        ),
    )
    op.create_index("ix_marketplace_offers_variant_id", "marketplace_offers", ["variant_id"])
    op.create_index("ix_marketplace_offers_product_id", "marketplace_offers", ["product_id"])
    # The shop itself is the first seller: it sells the catalog from the pooled warehouses.
    op.bulk_insert(
        sellers,
        [
            {
                "id": "sel_house",
                "name": "Mercato",
                "legal_name": "Mercato",
                "email": "shop@example.com",
                "country": "DE",
                "description": "",
                "payout_reference": None,
                "status": "approved",
                "status_reason": None,
                "is_house": True,
                "warehouse_id": None,
                "warehouse_code": None,
                "applicant_user_id": None,
                "created_at": mercato.db.utcnow(),
                "approved_at": mercato.db.utcnow(),
                "suspended_at": None,
                "orders_counted": 0,
                "defect_rate_bp": 0,
                "late_shipment_rate_bp": 0,
                "cancel_rate_bp": 0,
                "rating_x100": None,
                "rating_count": 0,
                "performance_at": None,
                "eligible": True,
            }
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_marketplace_offers_product_id", table_name="marketplace_offers")
    op.drop_index("ix_marketplace_offers_variant_id", table_name="marketplace_offers")
    op.drop_table("marketplace_offers")
    op.drop_index("ix_marketplace_seller_users_seller_id", table_name="marketplace_seller_users")
    op.drop_table("marketplace_seller_users")
    op.drop_index("ix_marketplace_sellers_status", table_name="marketplace_sellers")
    op.drop_table("marketplace_sellers")
    with op.batch_alter_table("inventory_warehouses") as batch:
        batch.drop_column("pooled")
