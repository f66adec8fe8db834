"""sent_papers: only the delivery is a foreign key; subscriber and paper are plain columns

The ledger writes about ten sent_papers rows per reader, a million per 100,000-reader
edition, and Postgres checks each foreign key of each row with a row lock on the parent.
Every row of an edition locks the same few hundred papers, from every mail worker at
once, so those locks pile up as shared multixacts: the paper and subscriber checks took
two thirds of the bulk write. Neither is needed. A subscriber's rows still go when the
subscriber does, through their deliveries (`delivery_id` keeps its ON DELETE CASCADE), and
papers are never deleted. The unique (subscriber_id, paper_id) constraint, which is what
keeps a paper from reaching a reader twice, is unchanged.

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Postgres's own names for these keys; SQLite's keys are unnamed, and batch mode gives
# them these names when it reflects the table, so one name works on both.
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
DROPPED = {"subscriber_id": "subscribers", "paper_id": "papers"}


def upgrade() -> None:
    with op.batch_alter_table("sent_papers", naming_convention=NAMING) as batch:
        for column in DROPPED:
            batch.drop_constraint(f"sent_papers_{column}_fkey", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("sent_papers", naming_convention=NAMING) as batch:
        for column, table in DROPPED.items():
            batch.create_foreign_key(f"sent_papers_{column}_fkey", table, [column], ["id"],
                                     ondelete="CASCADE")
