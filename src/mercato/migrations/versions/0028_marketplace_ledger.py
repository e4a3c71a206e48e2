"""marketplace: commission rules, frozen commission lines, the double-entry ledger, payouts

Revision ID: 0028_marketplace_ledger
Revises: 0027_marketplace
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0028_marketplace_ledger"
down_revision = "0027_marketplace"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "marketplace_commission_rules",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("seller_id", sa.String(40), nullable=True),
        sa.Column("category_id", sa.String(40), nullable=True),
        sa.Column("rate_bp", sa.Integer(), nullable=False),
        sa.Column("min_commission", sa.BigInteger(), nullable=True),
        sa.Column("max_commission", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("valid_from", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("valid_to", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("deactivated_at", mercato.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "rate_bp BETWEEN 0 AND 10000",
            name=op.f("ck_marketplace_commission_rules_rate_in_range"),
        ),
        sa.CheckConstraint(
            "min_commission >= 0", name=op.f("ck_marketplace_commission_rules_min_not_negative")
        ),
        sa.CheckConstraint(
            "max_commission >= 0", name=op.f("ck_marketplace_commission_rules_max_not_negative")
        ),
        sa.CheckConstraint(
            "min_commission <= max_commission",
            name=op.f("ck_marketplace_commission_rules_min_not_above_max"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_commission_rules")),
    )
    op.create_index(
        "ix_marketplace_commission_rules_scope",
        "marketplace_commission_rules",
        ["seller_id", "category_id"],
    )
    op.create_table(
        "marketplace_commission_lines",
        sa.Column("reference", sa.String(80), nullable=False),
        sa.Column("seller_id", sa.String(40), nullable=False),
        sa.Column("category_id", sa.String(40), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("rate_bp", sa.Integer(), nullable=False),
        sa.Column("min_commission", sa.BigInteger(), nullable=True),
        sa.Column("max_commission", sa.BigInteger(), nullable=True),
        sa.Column("commission", sa.BigInteger(), nullable=False),
        sa.Column("rule_id", sa.String(40), nullable=True),
        sa.Column("entry_id", sa.String(40), nullable=False),
        sa.Column("sold_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("returned", sa.BigInteger(), nullable=False),
        sa.Column("reversed", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "gross > 0", name=op.f("ck_marketplace_commission_lines_gross_positive")
        ),
        sa.CheckConstraint(
            "commission BETWEEN 0 AND gross",
            name=op.f("ck_marketplace_commission_lines_commission_within_gross"),
        ),
        sa.CheckConstraint(
            "returned BETWEEN 0 AND gross",
            name=op.f("ck_marketplace_commission_lines_returned_within_gross"),
        ),
        sa.CheckConstraint(
            "reversed BETWEEN 0 AND commission",
            name=op.f("ck_marketplace_commission_lines_reversed_within_commission"),
        ),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_marketplace_commission_lines")),
    )
    op.create_index(
        "ix_marketplace_commission_lines_seller_id", "marketplace_commission_lines", ["seller_id"]
    )
    op.create_table(
        "marketplace_journal_entries",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(80), nullable=False),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("seller_id", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("occurred_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('sale', 'refund', 'cancellation', 'payout')",
            name=op.f("ck_marketplace_journal_entries_kind_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_journal_entries")),
        sa.UniqueConstraint(
            "idempotency_key", name=op.f("uq_marketplace_journal_entries_idempotency_key")
        ),
    )
    op.create_index(
        "ix_marketplace_journal_entries_seller_at",
        "marketplace_journal_entries",
        ["seller_id", "occurred_at"],
    )
    op.create_table(
        "marketplace_postings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.String(40), nullable=False),
        sa.Column("account", sa.String(80), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_marketplace_postings_amount_not_zero")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_postings")),
    )
    op.create_index("ix_marketplace_postings_entry_id", "marketplace_postings", ["entry_id"])
    op.create_index(
        "ix_marketplace_postings_account", "marketplace_postings", ["account", "currency"]
    )
    op.create_table(
        "marketplace_payouts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("seller_id", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(80), nullable=False),
        sa.Column("period_start", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("period_end", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(40), nullable=True),
        sa.Column("entry_id", sa.String(40), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_marketplace_payouts_amount_positive")),
        sa.CheckConstraint(
            "period_start < period_end", name=op.f("ck_marketplace_payouts_period_ordered")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_payouts")),
        sa.UniqueConstraint("reference", name=op.f("uq_marketplace_payouts_reference")),
    )
    op.create_index("ix_marketplace_payouts_seller_id", "marketplace_payouts", ["seller_id"])


def downgrade() -> None:
    op.drop_index("ix_marketplace_payouts_seller_id", table_name="marketplace_payouts")
    op.drop_table("marketplace_payouts")
    op.drop_index("ix_marketplace_postings_account", table_name="marketplace_postings")
    op.drop_index("ix_marketplace_postings_entry_id", table_name="marketplace_postings")
    op.drop_table("marketplace_postings")
    op.drop_index(
        "ix_marketplace_journal_entries_seller_at", table_name="marketplace_journal_entries"
    )
    op.drop_table("marketplace_journal_entries")
    op.drop_index(
        "ix_marketplace_commission_lines_seller_id", table_name="marketplace_commission_lines"
    )
    op.drop_table("marketplace_commission_lines")
    op.drop_index(
        "ix_marketplace_commission_rules_scope", table_name="marketplace_commission_rules"
    )
    op.drop_table("marketplace_commission_rules")
