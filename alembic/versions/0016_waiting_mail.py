"""waiting_mail: mail a request queued with a broker configured, until a worker sent it;
write_probes: the table /healthz writes to, and rolls back, to see the database can write

A job waits here while the broker is down, and is sent by beat's sweep once it is back
(newsletter/mail_queue.py). A database that answers reads but refuses writes (read-only,
a standby) is not healthy (newsletter/status.py).

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "waiting_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.JSON(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "write_probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("write_probes")
    op.drop_table("waiting_mail")
