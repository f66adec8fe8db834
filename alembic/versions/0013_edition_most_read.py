"""editions.most_read: a weekly edition's "most read this week", fixed when it is planned

Every chunk of the edition, sent whenever, and the digest viewed in the browser later show
the list that was mailed, however many clicks arrive meanwhile. Editions planned before
this revision keep NULL and are shown the week's list as it stands.

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("editions") as batch:
        batch.add_column(sa.Column("most_read", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("editions") as batch:
        batch.drop_column("most_read")
