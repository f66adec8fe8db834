"""mail_limit_hits: confirmation mails a sign-up limit held back (no address kept)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_limit_hits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("limit", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mail_limit_hits_at", "mail_limit_hits", ["at"])


def downgrade() -> None:
    op.drop_index("ix_mail_limit_hits_at", table_name="mail_limit_hits")
    op.drop_table("mail_limit_hits")
