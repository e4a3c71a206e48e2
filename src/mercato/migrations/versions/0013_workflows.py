"""workflows: one row per durable workflow run

Revision ID: 0013_workflows
Revises: 0012_notifications
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0013_workflows"
down_revision = "0012_notifications"
branch_labels = None
depends_on = None

# Every committed insert into the outbox wakes the workers listening on this channel (the
# notification is sent at commit, once per transaction and channel).
NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION mercato_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('mercato_outbox', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
FOR EACH STATEMENT EXECUTE FUNCTION mercato_outbox_notify()
"""

RUN_STATUSES = "status IN ('running', 'waiting', 'compensating', 'completed', 'failed')"


def upgrade() -> None:
    op.create_table(
        "workflow_runs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("workflow", sa.String(60), nullable=False),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("step", sa.String(60), nullable=False),
        sa.Column("state", mercato.db.JSONType, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("error", mercato.db.JSONType, nullable=True),
        sa.Column("result", mercato.db.JSONType, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lease_until", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_runs")),
        sa.UniqueConstraint("workflow", "key", name=op.f("uq_workflow_runs_workflow_key")),
        sa.CheckConstraint(RUN_STATUSES, name=op.f("ck_workflow_runs_status")),
    )
    op.create_index(
        "ix_workflow_runs_status_lease_until", "workflow_runs", ["status", "lease_until"]
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_events_notify ON outbox_events")
        op.execute("DROP FUNCTION IF EXISTS mercato_outbox_notify()")
    op.drop_index("ix_workflow_runs_status_lease_until", table_name="workflow_runs")
    op.drop_table("workflow_runs")
