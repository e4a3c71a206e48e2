"""checkout: shipping, tax, promo codes, sagas

Revision ID: 0008_checkout
Revises: 0007_orders
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0008_checkout"
down_revision = "0007_orders"
branch_labels = None
depends_on = None

SHIPPING_KINDS = "kind IN ('flat', 'weight_band', 'free_over')"
PROMO_KINDS = "kind IN ('percent', 'fixed')"
REDEMPTION_STATES = "state IN ('reserved', 'committed', 'released')"
SAGA_STATUSES = (
    "status IN ('started', 'reserved', 'priced', 'authorized', 'completed', 'compensating', "
    "'failed')"
)


def upgrade() -> None:
    op.create_table(
        "checkout_shipping_zones",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("countries", mercato.db.JSONType, nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_shipping_zones")),
        sa.UniqueConstraint("name", name=op.f("uq_checkout_shipping_zones_name")),
    )
    op.create_table(
        "checkout_shipping_methods",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("zone_id", sa.String(40), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("free_over", sa.BigInteger(), nullable=True),
        sa.Column("weight_bands", mercato.db.JSONType, nullable=False),
        sa.Column("min_days", sa.Integer(), nullable=False),
        sa.Column("max_days", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_shipping_methods")),
        sa.ForeignKeyConstraint(
            ["zone_id"],
            ["checkout_shipping_zones.id"],
            name=op.f("fk_checkout_shipping_methods_zone_id_checkout_shipping_zones"),
        ),
        sa.UniqueConstraint(
            "zone_id", "code", name=op.f("uq_checkout_shipping_methods_zone_id_code")
        ),
        sa.CheckConstraint(SHIPPING_KINDS, name=op.f("ck_checkout_shipping_methods_kind_known")),
        sa.CheckConstraint(
            "amount >= 0", name=op.f("ck_checkout_shipping_methods_amount_not_negative")
        ),
        sa.CheckConstraint(
            "free_over IS NULL OR free_over >= 0",
            name=op.f("ck_checkout_shipping_methods_free_over_not_negative"),
        ),
        sa.CheckConstraint(
            "kind <> 'free_over' OR free_over IS NOT NULL",
            name=op.f("ck_checkout_shipping_methods_free_over_given"),
        ),
        sa.CheckConstraint(
            "min_days >= 0 AND max_days >= min_days",
            name=op.f("ck_checkout_shipping_methods_days_ordered"),
        ),
    )
    op.create_table(
        "checkout_tax_rates",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("region", sa.String(16), nullable=False),
        sa.Column("tax_class", sa.String(32), nullable=False),
        sa.Column("rate_bps", sa.Integer(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_tax_rates")),
        sa.UniqueConstraint(
            "country",
            "region",
            "tax_class",
            name=op.f("uq_checkout_tax_rates_country_region_tax_class"),
        ),
        sa.CheckConstraint(
            "rate_bps >= 0 AND rate_bps <= 10000", name=op.f("ck_checkout_tax_rates_rate_in_range")
        ),
    )
    op.create_table(
        "checkout_settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", mercato.db.JSONType, nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_checkout_settings")),
    )
    op.create_table(
        "checkout_promo_codes",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("min_subtotal", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("ends_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("usage_limit", sa.Integer(), nullable=True),
        sa.Column("per_customer_limit", sa.Integer(), nullable=True),
        sa.Column("used_count", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_promo_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_checkout_promo_codes_code")),
        sa.CheckConstraint(PROMO_KINDS, name=op.f("ck_checkout_promo_codes_kind_known")),
        sa.CheckConstraint("value > 0", name=op.f("ck_checkout_promo_codes_value_positive")),
        sa.CheckConstraint(
            "kind <> 'percent' OR value <= 10000",
            name=op.f("ck_checkout_promo_codes_percent_at_most_100"),
        ),
        sa.CheckConstraint(
            "kind <> 'fixed' OR currency IS NOT NULL",
            name=op.f("ck_checkout_promo_codes_fixed_has_currency"),
        ),
        sa.CheckConstraint(
            "min_subtotal >= 0", name=op.f("ck_checkout_promo_codes_min_subtotal_not_negative")
        ),
        sa.CheckConstraint(
            "used_count >= 0", name=op.f("ck_checkout_promo_codes_used_count_not_negative")
        ),
        sa.CheckConstraint(
            "usage_limit IS NULL OR used_count <= usage_limit",
            name=op.f("ck_checkout_promo_codes_used_within_limit"),
        ),
        sa.CheckConstraint(
            "usage_limit IS NULL OR usage_limit >= 0",
            name=op.f("ck_checkout_promo_codes_usage_limit_valid"),
        ),
        sa.CheckConstraint(
            "per_customer_limit IS NULL OR per_customer_limit >= 1",
            name=op.f("ck_checkout_promo_codes_per_customer_limit_valid"),
        ),
    )
    op.create_table(
        "checkout_promo_redemptions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("promo_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("saga_id", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_promo_redemptions")),
        sa.ForeignKeyConstraint(
            ["promo_id"],
            ["checkout_promo_codes.id"],
            name=op.f("fk_checkout_promo_redemptions_promo_id_checkout_promo_codes"),
        ),
        sa.UniqueConstraint("saga_id", name=op.f("uq_checkout_promo_redemptions_saga_id")),
        sa.CheckConstraint(
            REDEMPTION_STATES, name=op.f("ck_checkout_promo_redemptions_state_known")
        ),
    )
    op.create_index(
        "ix_checkout_promo_redemptions_promo_id_user_id",
        "checkout_promo_redemptions",
        ["promo_id", "user_id"],
    )
    op.create_table(
        "checkout_sagas",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("cart_id", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("request", mercato.db.JSONType, nullable=False),
        sa.Column("cart_snapshot", mercato.db.JSONType, nullable=False),
        sa.Column("pricing", mercato.db.JSONType, nullable=True),
        sa.Column("promo_id", sa.String(40), nullable=True),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("payment_intent_id", sa.String(40), nullable=True),
        sa.Column("error", mercato.db.JSONType, nullable=True),
        sa.Column("response", mercato.db.JSONType, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_sagas")),
        sa.UniqueConstraint(
            "user_id", "idempotency_key", name=op.f("uq_checkout_sagas_user_id_idempotency_key")
        ),
        sa.UniqueConstraint("order_id", name=op.f("uq_checkout_sagas_order_id")),
        sa.CheckConstraint(SAGA_STATUSES, name=op.f("ck_checkout_sagas_status_known")),
    )
    op.create_index(
        "ix_checkout_sagas_status_updated_at", "checkout_sagas", ["status", "updated_at"]
    )


def downgrade() -> None:
    op.drop_table("checkout_sagas")
    op.drop_table("checkout_promo_redemptions")
    op.drop_table("checkout_promo_codes")
    op.drop_table("checkout_settings")
    op.drop_table("checkout_tax_rates")
    op.drop_table("checkout_shipping_methods")
    op.drop_table("checkout_shipping_zones")
