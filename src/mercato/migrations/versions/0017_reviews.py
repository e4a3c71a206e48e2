"""reviews: reviews from verified buyers, helpful votes, reports, per-product ratings, settings

Revision ID: 0017_reviews
Revises: 0015_orders_workflows
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0017_reviews"
down_revision = "0016_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews_reviews",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("product_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("author_name", sa.String(60), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(120), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("body_hash", sa.String(64), nullable=True),
        sa.Column("verified_purchase", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reject_reason", sa.String(500), nullable=True),
        sa.Column("flags", mercato.db.JSONType, nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("helpful_count", sa.Integer(), nullable=False),
        sa.Column("report_count", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("response_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("moderated_by", sa.String(80), nullable=True),
        sa.Column("moderated_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews_reviews")),
        sa.UniqueConstraint(
            "product_id", "user_id", name=op.f("uq_reviews_reviews_product_id_user_id")
        ),
        sa.CheckConstraint(
            "rating >= 1 AND rating <= 5", name=op.f("ck_reviews_reviews_rating_1_to_5")
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'approved', 'rejected')", name=op.f("ck_reviews_reviews_state")
        ),
        sa.CheckConstraint(
            "helpful_count >= 0", name=op.f("ck_reviews_reviews_helpful_non_negative")
        ),
        sa.CheckConstraint(
            "report_count >= 0", name=op.f("ck_reviews_reviews_reports_non_negative")
        ),
    )
    for name, columns in (
        ("ix_reviews_reviews_product_id_state_id", ["product_id", "state", "id"]),
        (
            "ix_reviews_reviews_product_id_state_rating_id",
            ["product_id", "state", "rating", "id"],
        ),
        (
            "ix_reviews_reviews_product_id_state_helpful_count_id",
            ["product_id", "state", "helpful_count", "id"],
        ),
        ("ix_reviews_reviews_state_id", ["state", "id"]),
        ("ix_reviews_reviews_user_id_created_at", ["user_id", "created_at"]),
        ("ix_reviews_reviews_ip_created_at", ["ip", "created_at"]),
        ("ix_reviews_reviews_body_hash", ["body_hash"]),
    ):
        op.create_index(name, "reviews_reviews", columns)

    op.create_table(
        "reviews_votes",
        sa.Column("review_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("review_id", "user_id", name=op.f("pk_reviews_votes")),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews_reviews.id"],
            name=op.f("fk_reviews_votes_review_id_reviews_reviews"),
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "reviews_reports",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("review_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews_reports")),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews_reviews.id"],
            name=op.f("fk_reviews_reports_review_id_reviews_reviews"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "review_id", "user_id", name=op.f("uq_reviews_reports_review_id_user_id")
        ),
        sa.CheckConstraint(
            "reason IN ('spam', 'offensive', 'off_topic')", name=op.f("ck_reviews_reports_reason")
        ),
    )

    op.create_table(
        "reviews_ratings",
        sa.Column("product_id", sa.String(40), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("stars_1", sa.Integer(), nullable=False),
        sa.Column("stars_2", sa.Integer(), nullable=False),
        sa.Column("stars_3", sa.Integer(), nullable=False),
        sa.Column("stars_4", sa.Integer(), nullable=False),
        sa.Column("stars_5", sa.Integer(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_reviews_ratings")),
        sa.CheckConstraint(
            "count >= 0 AND total >= 0 AND stars_1 >= 0 AND stars_2 >= 0 AND stars_3 >= 0 "
            "AND stars_4 >= 0 AND stars_5 >= 0",
            name=op.f("ck_reviews_ratings_non_negative"),
        ),
        sa.CheckConstraint(
            "count = stars_1 + stars_2 + stars_3 + stars_4 + stars_5",
            name=op.f("ck_reviews_ratings_histogram_sums"),
        ),
    )

    op.create_table(
        "reviews_settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", mercato.db.JSONType, nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_reviews_settings")),
    )


def downgrade() -> None:
    op.drop_table("reviews_settings")
    op.drop_table("reviews_ratings")
    op.drop_table("reviews_reports")
    op.drop_table("reviews_votes")
    op.drop_table("reviews_reviews")
