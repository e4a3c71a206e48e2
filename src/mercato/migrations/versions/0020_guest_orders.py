"""orders and returns: guest orders have no customer until their e-mail joins an account

Revision ID: 0020_guest_orders
Revises: 0018_sales_ranks
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_guest_orders"
down_revision = "0018_sales_ranks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite can only change a column's nullability by copying the table.
    with op.batch_alter_table("orders_orders") as batch:
        batch.alter_column("user_id", existing_type=sa.String(40), nullable=True)
    with op.batch_alter_table("returns_requests") as batch:
        batch.alter_column("user_id", existing_type=sa.String(40), nullable=True)


def downgrade() -> None:
    # A guest order or return cannot be given a customer it never had: refuse rather than lose
    # them.
    bind = op.get_bind()
    for table in ("orders_orders", "returns_requests"):
        left = bind.execute(sa.text(f"SELECT count(*) FROM {table} WHERE user_id IS NULL"))  # noqa: S608
        if left.scalar_one():
            raise RuntimeError(f"{table} holds guest rows; they cannot be downgraded")
    with op.batch_alter_table("returns_requests") as batch:
        batch.alter_column("user_id", existing_type=sa.String(40), nullable=False)
    with op.batch_alter_table("orders_orders") as batch:
        batch.alter_column("user_id", existing_type=sa.String(40), nullable=False)
