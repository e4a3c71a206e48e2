"""notifications: e-mails, webhook endpoints and deliveries

Revision ID: 0012_notifications
Revises: 0011_returns
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0012_notifications"
down_revision = "0011_returns"
branch_labels = None
depends_on = None

EMAIL_STATUSES = "'pending', 'sending', 'sent', 'failed', 'dead'"
DELIVERY_STATUSES = "'pending', 'sending', 'delivered', 'failed', 'dead'"


def upgrade() -> None:
    op.create_table(
        "notifications_emails",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=True),
        sa.Column("to_address", sa.String(254), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("file_name", sa.String(200), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("sent_at", mercato.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications_emails")),
        sa.UniqueConstraint("event_id", "kind", name=op.f("uq_notifications_emails_event_id_kind")),
        sa.CheckConstraint(
            f"status IN ({EMAIL_STATUSES})", name=op.f("ck_notifications_emails_status")
        ),
    )
    op.create_index(
        "ix_notifications_emails_status_next_attempt_at",
        "notifications_emails",
        ["status", "next_attempt_at"],
    )
    op.create_index("ix_notifications_emails_created_at", "notifications_emails", ["created_at"])
    op.create_index("ix_notifications_emails_order_id", "notifications_emails", ["order_id"])

    op.create_table(
        "notifications_webhook_endpoints",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("event_types", mercato.db.JSONType, nullable=False),
        sa.Column("description", sa.String(200), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("disabled_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications_webhook_endpoints")),
        sa.CheckConstraint(
            "consecutive_failures >= 0",
            name=op.f("ck_notifications_webhook_endpoints_failures_non_negative"),
        ),
    )
    op.create_index(
        "ix_notifications_webhook_endpoints_created_at",
        "notifications_webhook_endpoints",
        ["created_at"],
    )

    op.create_table(
        "notifications_webhook_deliveries",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("endpoint_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(80), nullable=False),
        sa.Column("payload", mercato.db.JSONType, nullable=False),
        sa.Column("occurred_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("delivered_at", mercato.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications_webhook_deliveries")),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["notifications_webhook_endpoints.id"],
            name=op.f("fk_notifications_webhook_deliveries_endpoint_id"),
        ),
        sa.UniqueConstraint(
            "endpoint_id",
            "event_id",
            name=op.f("uq_notifications_webhook_deliveries_endpoint_id_event_id"),
        ),
        sa.CheckConstraint(
            f"status IN ({DELIVERY_STATUSES})",
            name=op.f("ck_notifications_webhook_deliveries_status"),
        ),
        sa.CheckConstraint(
            "attempts >= 0", name=op.f("ck_notifications_webhook_deliveries_attempts_non_negative")
        ),
    )
    op.create_index(
        "ix_notifications_webhook_deliveries_status_next_attempt_at",
        "notifications_webhook_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_index(
        "ix_notifications_webhook_deliveries_endpoint_id_created_at",
        "notifications_webhook_deliveries",
        ["endpoint_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("notifications_webhook_deliveries")
    op.drop_table("notifications_webhook_endpoints")
    op.drop_table("notifications_emails")
