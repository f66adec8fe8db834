"""preferences.time_zone, send_hour, send_weekday: each reader's digest at their own hour

A reader picks an IANA time zone, the hour of their day their digest should come, and, if
weekly, the weekday. NULL in any of them means the operator's default (DEFAULT_TIME_ZONE,
DEFAULT_SEND_HOUR, WEEKLY_DIGEST_DAY), so readers from before this revision keep their
digest at the hour they had (newsletter/delivery/due.py). The indexes let a tick
find the slots in use, one slot's readers, and the readers who changed, without reading
everyone's preferences. `send_ticks` holds the instant
up to which `send --due` has planned, so each tick plans only the slots that came due
since (newsletter/delivery/schedule.py).

Revision ID: 0018
Revises: 0017
"""
import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("preferences") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(64), nullable=True))
        batch.add_column(sa.Column("send_hour", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("send_weekday", sa.Integer(), nullable=True))
    op.create_index("ix_preferences_send_time", "preferences",
                    ["time_zone", "send_hour", "frequency", "send_weekday"])
    op.create_index("ix_preferences_updated_at", "preferences", ["updated_at"])
    op.create_table(
        "send_ticks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("planned_until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("send_ticks")
    op.drop_index("ix_preferences_updated_at", table_name="preferences")
    op.drop_index("ix_preferences_send_time", table_name="preferences")
    with op.batch_alter_table("preferences") as batch:
        batch.drop_column("send_weekday")
        batch.drop_column("send_hour")
        batch.drop_column("time_zone")
