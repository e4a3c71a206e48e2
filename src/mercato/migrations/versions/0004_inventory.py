"""inventory: warehouses, stock, reservations, movements

Revision ID: 0004_inventory
Revises: 0003_catalog
Create Date: 2026-11-23
"""

from __future__ import annotations

revision = "0004_inventory"
down_revision = "0003_catalog"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
