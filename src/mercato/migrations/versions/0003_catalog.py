"""catalog: categories, brands, products, variants

Revision ID: 0003_catalog
Revises: 0002_identity
Create Date: 2026-11-23
"""

from __future__ import annotations

revision = "0003_catalog"
down_revision = "0002_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
