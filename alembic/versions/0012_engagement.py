"""engagement: first delivered/opened/clicked/bounced per delivery, paper_clicks,
subscribers.last_active_at, preferences.tracking

What SendGrid's events teach, kept as counts and first times, never as a log: a
delivery's first delivered, opened, clicked and bounced time (unique opens of an edition
are `count(opened_at)`), clicks per edition and paper (`paper_clicks`, gone with their
edition), a reader's last open, click or rating, and their choice not to be tracked
(true for every reader until they say otherwise on the manage page; no mail is tracked
unless the operator also turns SendGrid's tracking on). The received events themselves
(`webhook_events`) are deleted after ENGAGEMENT_RETENTION_DAYS by a nightly task.

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FIRST_TIMES = ("delivered_at", "opened_at", "clicked_at", "bounced_at")


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        for name in FIRST_TIMES:
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "paper_clicks",
        sa.Column("edition_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("paper_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.ForeignKeyConstraint(["edition_id"], ["editions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["paper_id"], ["papers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("edition_id", "paper_id"),
    )
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("last_active_at", sa.DateTime(timezone=True),
                                   nullable=True))
    with op.batch_alter_table("preferences") as batch:
        batch.add_column(sa.Column("tracking", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
    # The retention sweep deletes by age.
    op.create_index("ix_webhook_events_received_at", "webhook_events", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_received_at", table_name="webhook_events")
    with op.batch_alter_table("preferences") as batch:
        batch.drop_column("tracking")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("last_active_at")
    op.drop_table("paper_clicks")
    with op.batch_alter_table("deliveries") as batch:
        for name in reversed(FIRST_TIMES):
            batch.drop_column(name)
