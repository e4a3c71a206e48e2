"""recommendations: the lists stored as a few binary parts per version instead of a JSON row per
product (a million products' rows took minutes to read back; the parts take about a second)

Revision ID: 0026_recommendation_rows
Revises: 0025_flash_sales
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0026_recommendation_rows"
down_revision = "0025_flash_sales"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recommendations_parts",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("version", "part", name=op.f("pk_recommendations_parts")),
    )
    op.drop_table("recommendations_lists")
    # The old rows are gone: without a state row the worker's next run rebuilds from every
    # order (and until then the pages fall back to no suggestions, as before a first build).
    op.execute("DELETE FROM recommendations_state")


def downgrade() -> None:
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
    op.drop_table("recommendations_parts")
    op.execute("DELETE FROM recommendations_state")
