"""recommendations: the customers' wishlists (with the back-in-stock state) and the products
each shopper viewed lately

Revision ID: 0024_shopper_signals
Revises: 0023_recommendations
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0024_shopper_signals"
down_revision = "0023_recommendations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recommendations_wishlist",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("product_id", sa.String(40), nullable=False),
        sa.Column("variant_id", sa.String(40), nullable=True),
        sa.Column("saved_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("sold_out_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("restock_notified_at", mercato.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "product_id", name=op.f("pk_recommendations_wishlist")),
    )
    op.create_index(
        "ix_recommendations_wishlist_product_id", "recommendations_wishlist", ["product_id"]
    )
    op.create_table(
        "recommendations_recent_views",
        sa.Column("owner", sa.String(40), nullable=False),
        sa.Column("product_id", sa.String(40), nullable=False),
        sa.Column("viewed_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "owner", "product_id", name=op.f("pk_recommendations_recent_views")
        ),
    )
    op.create_index(
        "ix_recommendations_recent_views_viewed_at",
        "recommendations_recent_views",
        ["viewed_at"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_recommendations_recent_views_viewed_at", table_name="recommendations_recent_views"
    )
    op.drop_table("recommendations_recent_views")
    op.drop_index("ix_recommendations_wishlist_product_id", table_name="recommendations_wishlist")
    op.drop_table("recommendations_wishlist")
