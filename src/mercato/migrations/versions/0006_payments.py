"""payments: intents, intent events, sandbox processor ledger

Revision ID: 0006_payments
Revises: 0005_cart
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0006_payments"
down_revision = "0005_cart"
branch_labels = None
depends_on = None

AMOUNTS_NON_NEGATIVE = "amount_authorized >= 0 AND amount_captured >= 0 AND amount_refunded >= 0"


def upgrade() -> None:
    op.create_table(
        "payments_intents",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_authorized", sa.BigInteger(), nullable=False),
        sa.Column("amount_captured", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("provider_charge_id", sa.String(80), nullable=True),
        sa.Column("card_brand", sa.String(20), nullable=True),
        sa.Column("card_last4", sa.String(4), nullable=True),
        sa.Column("token", sa.String(80), nullable=False),
        sa.Column("failure_code", sa.String(40), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_intents")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_payments_intents_idempotency_key")),
        sa.CheckConstraint(
            "status IN ('requires_payment', 'authorized', 'captured', 'partially_refunded', "
            "'refunded', 'voided', 'failed')",
            name=op.f("ck_payments_intents_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_intents_amount_positive")),
        sa.CheckConstraint(
            AMOUNTS_NON_NEGATIVE, name=op.f("ck_payments_intents_amounts_non_negative")
        ),
        sa.CheckConstraint(
            "amount_captured <= amount_authorized",
            name=op.f("ck_payments_intents_captured_le_authorized"),
        ),
        sa.CheckConstraint(
            "amount_refunded <= amount_captured",
            name=op.f("ck_payments_intents_refunded_le_captured"),
        ),
    )
    op.create_index(op.f("ix_payments_intents_owner"), "payments_intents", ["owner"])
    op.create_index(
        op.f("ix_payments_intents_provider_charge_id"), "payments_intents", ["provider_charge_id"]
    )

    op.create_table(
        "payments_intent_events",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("intent_id", sa.String(40), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("provider_key", sa.String(255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_from", sa.String(24), nullable=False),
        sa.Column("status_to", sa.String(24), nullable=True),
        sa.Column("code", sa.String(40), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("completed_at", mercato.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_intent_events")),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["payments_intents.id"],
            name=op.f("fk_payments_intent_events_intent_id_payments_intents"),
        ),
        sa.UniqueConstraint(
            "intent_id",
            "operation",
            "idempotency_key",
            name=op.f("uq_payments_intent_events_intent_id_operation_idempotency_key"),
        ),
        sa.CheckConstraint(
            "operation IN ('authorize', 'capture', 'void', 'refund')",
            name=op.f("ck_payments_intent_events_operation"),
        ),
        sa.CheckConstraint(
            "outcome IN ('pending', 'succeeded', 'failed')",
            name=op.f("ck_payments_intent_events_outcome"),
        ),
    )
    op.create_index(
        "ix_payments_intent_events_outcome_created_at",
        "payments_intent_events",
        ["outcome", "created_at"],
    )

    op.create_table(
        "payments_sandbox_charges",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("token", sa.String(80), nullable=False),
        sa.Column("card_brand", sa.String(20), nullable=True),
        sa.Column("card_last4", sa.String(4), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_authorized", sa.BigInteger(), nullable=False),
        sa.Column("amount_captured", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("failure_code", sa.String(40), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_sandbox_charges")),
        sa.CheckConstraint(
            "status IN ('authorized', 'captured', 'partially_refunded', 'refunded', "
            "'voided', 'failed')",
            name=op.f("ck_payments_sandbox_charges_status"),
        ),
        sa.CheckConstraint(
            AMOUNTS_NON_NEGATIVE, name=op.f("ck_payments_sandbox_charges_amounts_non_negative")
        ),
        sa.CheckConstraint(
            "amount_captured <= amount_authorized",
            name=op.f("ck_payments_sandbox_charges_captured_le_authorized"),
        ),
        sa.CheckConstraint(
            "amount_refunded <= amount_captured",
            name=op.f("ck_payments_sandbox_charges_refunded_le_captured"),
        ),
    )

    op.create_table(
        "payments_sandbox_operations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("charge_id", sa.String(40), nullable=True),
        sa.Column("fingerprint", sa.String(255), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", mercato.db.JSONType, nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_sandbox_operations")),
        sa.UniqueConstraint(
            "idempotency_key", name=op.f("uq_payments_sandbox_operations_idempotency_key")
        ),
    )
    op.create_index(
        op.f("ix_payments_sandbox_operations_charge_id"),
        "payments_sandbox_operations",
        ["charge_id"],
    )


def downgrade() -> None:
    op.drop_table("payments_sandbox_operations")
    op.drop_table("payments_sandbox_charges")
    op.drop_table("payments_intent_events")
    op.drop_table("payments_intents")
