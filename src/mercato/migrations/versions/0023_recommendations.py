"""recommendations: the precomputed lists per product and the version shoppers are served

Revision ID: 0023_recommendations
Revises: 0022_delivery_estimates
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0023_recommendations"
down_revision = "0022_delivery_estimates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recommendations_lists",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("product_id", sa.String(40), nullable=False),
        sa.Column("items", mercato.db.JSONType, nullable=False),
        sa.CheckConstraint(
            "kind IN ('bought_together', 'also_bought', 'popular')",
            name=op.f("ck_recommendations_lists_kind"),
        ),
        sa.PrimaryKeyConstraint(
            "version", "kind", "product_id", name=op.f("pk_recommendations_lists")
        ),
    )
    op.create_table(
        "recommendations_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("built_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("orders_seen", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(24), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_recommendations_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recommendations_state")),
    )


def downgrade() -> None:
    op.drop_table("recommendations_state")
    op.drop_table("recommendations_lists")
