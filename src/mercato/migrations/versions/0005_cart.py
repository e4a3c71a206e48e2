"""cart: carts and lines

Revision ID: 0005_cart
Revises: 0004_inventory
Create Date: 2026-11-23
"""

from __future__ import annotations

revision = "0005_cart"
down_revision = "0004_inventory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
