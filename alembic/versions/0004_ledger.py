"""the delivery ledger: editions, deliveries, sent papers

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "editions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("window_start", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("frequency", "day", name="uq_editions_frequency_day"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("edition_id", sa.Integer(),
                  sa.ForeignKey("editions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("subscriber_id", sa.Integer(),
                  sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claim", sa.String(32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("paper_count", sa.Integer(), nullable=False),
        sa.Column("more_count", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscriber_id", "edition_id",
                            name="uq_deliveries_subscriber_edition"),
    )
    op.create_index("ix_deliveries_edition_id", "deliveries", ["edition_id"])
    op.create_index("ix_deliveries_subscriber_id", "deliveries", ["subscriber_id"])
    op.create_index("ix_deliveries_status", "deliveries", ["status"])
    op.create_table(
        "sent_papers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(),
                  sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("subscriber_id", sa.Integer(),
                  sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("paper_id", sa.Integer(),
                  sa.ForeignKey("papers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscriber_id", "paper_id",
                            name="uq_sent_papers_subscriber_paper"),
    )
    op.create_index("ix_sent_papers_delivery_id", "sent_papers", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("sent_papers")
    op.drop_table("deliveries")
    op.drop_table("editions")
