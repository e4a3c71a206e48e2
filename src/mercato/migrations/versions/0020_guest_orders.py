"""orders and returns: guest orders have no customer until their e-mail joins an account

Revision ID: 0020_guest_orders
Revises: 0018_sales_ranks
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_guest_orders"
down_revision = "0019_addresses"
branch_labels = None
depends_on = None

TABLES = ("orders_orders", "returns_requests")


def _sqlite_foreign_keys_off() -> bool:
    """SQLite changes a column by rebuilding its table, and dropping the old ``orders_orders``
    (or ``returns_requests``) would refuse for the rows that point at it. SQLite's own recipe:
    foreign keys off, which only takes effect between transactions, then checked at the end.
    What earlier migrations of this run did is committed first, with their revision stamped.
    (The migration's connection is closed afterwards, so nothing else runs without them.)"""
    if op.get_bind().dialect.name != "sqlite":
        return False
    op.execute("COMMIT")
    op.execute("PRAGMA foreign_keys=OFF")
    op.execute("BEGIN IMMEDIATE")
    return True


def _check_foreign_keys() -> None:
    broken = op.get_bind().execute(sa.text("PRAGMA foreign_key_check")).all()
    if broken:
        raise RuntimeError(f"rows left pointing nowhere: {broken[:10]}")


def _set_nullable(nullable: bool) -> None:
    rebuilt = _sqlite_foreign_keys_off()
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("user_id", existing_type=sa.String(40), nullable=nullable)
    if rebuilt:
        _check_foreign_keys()


def upgrade() -> None:
    _set_nullable(True)


def downgrade() -> None:
    # A guest's order or return cannot be given a customer it never had: refuse rather than
    # lose them.
    bind = op.get_bind()
    for table in TABLES:
        left = bind.execute(sa.text(f"SELECT count(*) FROM {table} WHERE user_id IS NULL"))  # noqa: S608
        if left.scalar_one():
            raise RuntimeError(f"{table} holds guests' rows; they cannot be downgraded")
    _set_nullable(False)
