"""identity: customers' saved addresses (an address book, at most one default each)

Revision ID: 0019_addresses
Revises: 0018_sales_ranks
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0019_addresses"
down_revision = "0018_sales_ranks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_addresses",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("line1", sa.String(200), nullable=False),
        sa.Column("line2", sa.String(200), nullable=True),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("postal_code", sa.String(20), nullable=False),
        sa.Column("region", sa.String(16), nullable=True),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_addresses")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_users.id"],
            name=op.f("fk_identity_addresses_user_id_identity_users"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_identity_addresses_user_id"), "identity_addresses", ["user_id"])
    # One default per customer, kept by the database even under concurrent changes.
    op.create_index(
        "uq_identity_addresses_one_default",
        "identity_addresses",
        ["user_id"],
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    )


def downgrade() -> None:
    op.drop_index("uq_identity_addresses_one_default", table_name="identity_addresses")
    op.drop_index(op.f("ix_identity_addresses_user_id"), table_name="identity_addresses")
    op.drop_table("identity_addresses")
