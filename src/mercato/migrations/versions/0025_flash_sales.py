"""flash sales: sales, their variants, and the places in their waiting rooms

Revision ID: 0025_flash_sales
Revises: 0024_shopper_signals
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0025_flash_sales"
down_revision = "0024_shopper_signals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flashsale_sales",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("allocation", sa.Integer(), nullable=False),
        sa.Column("per_customer_limit", sa.Integer(), nullable=False),
        sa.Column("admission_rate", sa.Integer(), nullable=False),
        sa.Column("starts_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("ends_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sold", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("admissions", sa.Integer(), nullable=False),
        sa.Column("next_position", sa.Integer(), nullable=False),
        sa.Column("served_through", sa.Integer(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("ended_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("end_reason", sa.String(16), nullable=True),
        sa.CheckConstraint(
            "status IN ('scheduled', 'live', 'ended')", name=op.f("ck_flashsale_sales_status_known")
        ),
        sa.CheckConstraint("allocation > 0", name=op.f("ck_flashsale_sales_allocation_positive")),
        sa.CheckConstraint("price >= 0", name=op.f("ck_flashsale_sales_price_not_negative")),
        sa.CheckConstraint(
            "per_customer_limit >= 1", name=op.f("ck_flashsale_sales_limit_positive")
        ),
        sa.CheckConstraint("admission_rate >= 1", name=op.f("ck_flashsale_sales_rate_positive")),
        sa.CheckConstraint(
            "sold >= 0 AND held >= 0", name=op.f("ck_flashsale_sales_counts_not_negative")
        ),
        sa.CheckConstraint(
            "sold + held <= allocation", name=op.f("ck_flashsale_sales_never_oversold")
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_flashsale_sales_ends_after_start")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flashsale_sales")),
    )
    op.create_index(
        "ix_flashsale_sales_status_starts_at", "flashsale_sales", ["status", "starts_at"]
    )
    op.create_table(
        "flashsale_sale_variants",
        sa.Column("sale_id", sa.String(40), nullable=False),
        sa.Column("variant_id", sa.String(40), nullable=False),
        sa.Column("allocation", sa.Integer(), nullable=False),
        sa.Column("sold", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "allocation > 0", name=op.f("ck_flashsale_sale_variants_allocation_positive")
        ),
        sa.CheckConstraint(
            "sold >= 0 AND sold <= allocation",
            name=op.f("ck_flashsale_sale_variants_sold_within_allocation"),
        ),
        sa.PrimaryKeyConstraint("sale_id", "variant_id", name=op.f("pk_flashsale_sale_variants")),
    )
    op.create_table(
        "flashsale_entries",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("sale_id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("purchased", sa.Integer(), nullable=False),
        sa.Column("joined_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("admitted_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("hold_expires_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("expired_reason", sa.String(16), nullable=True),
        sa.CheckConstraint(
            "state IN ('waiting', 'admitted', 'checking_out', 'purchased', 'expired')",
            name=op.f("ck_flashsale_entries_state_known"),
        ),
        sa.CheckConstraint(
            "units >= 0 AND purchased >= 0", name=op.f("ck_flashsale_entries_units_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flashsale_entries")),
        sa.UniqueConstraint(
            "sale_id", "customer_id", name=op.f("uq_flashsale_entries_sale_id_customer_id")
        ),
    )
    op.create_index(
        "ix_flashsale_entries_sale_id_state_position",
        "flashsale_entries",
        ["sale_id", "state", "position"],
    )


def downgrade() -> None:
    op.drop_index("ix_flashsale_entries_sale_id_state_position", table_name="flashsale_entries")
    op.drop_table("flashsale_entries")
    op.drop_table("flashsale_sale_variants")
    op.drop_index("ix_flashsale_sales_status_starts_at", table_name="flashsale_sales")
    op.drop_table("flashsale_sales")
