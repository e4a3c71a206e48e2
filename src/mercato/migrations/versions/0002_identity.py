"""identity: users, tokens

Revision ID: 0002_identity
Revises: 0001_outbox
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0002_identity"
down_revision = "0001_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_users",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_users")),
        sa.UniqueConstraint("email", name=op.f("uq_identity_users_email")),
        sa.CheckConstraint(
            "role IN ('customer', 'staff', 'seller')", name=op.f("ck_identity_users_role")
        ),
    )
    op.create_table(
        "identity_tokens",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("user_agent", sa.String(255), nullable=True),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_tokens")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_users.id"],
            name=op.f("fk_identity_tokens_user_id_identity_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("token_hash", name=op.f("uq_identity_tokens_token_hash")),
    )
    op.create_index(op.f("ix_identity_tokens_user_id"), "identity_tokens", ["user_id"])
    op.create_index(op.f("ix_identity_tokens_expires_at"), "identity_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_table("identity_tokens")
    op.drop_table("identity_users")
