"""sent_papers.clicked_at replaces paper_clicks: "most read this week" counts readers, once

A reader's clicks on a paper of their digest were added up per edition
(`paper_clicks`), so one reader's 200 clicks (or 200 click events) weighed as much as 200
readers. The first click on each paper of a digest is now kept on the row that records
the paper was sent (`sent_papers.clicked_at`), which names the reader, so each reader
counts once, and the list shows a paper only when enough readers went to it
(engagement/most_read.py). The partial index holds only clicked rows: the week's clicks
are found without reading the million rows an edition writes.

The old counts cannot be given to readers and are dropped: the list of the week after
the upgrade is built from the clicks that arrive from then on, and the up-ratings, which
were always per reader. Going down rebuilds `paper_clicks` from the clicked rows (one per
reader and paper).

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

CLICKED = sa.text("clicked_at IS NOT NULL")


def upgrade() -> None:
    op.add_column("sent_papers", sa.Column("clicked_at", sa.DateTime(timezone=True),
                                           nullable=True))
    op.create_index("ix_sent_papers_clicked_at", "sent_papers", ["clicked_at"],
                    postgresql_where=CLICKED, sqlite_where=CLICKED)
    op.drop_table("paper_clicks")


def downgrade() -> None:
    op.create_table(
        "paper_clicks",
        sa.Column("edition_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("paper_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.ForeignKeyConstraint(["edition_id"], ["editions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["paper_id"], ["papers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("edition_id", "paper_id"),
    )
    op.execute("""
        INSERT INTO paper_clicks (edition_id, paper_id, clicks)
        SELECT d.edition_id, s.paper_id, COUNT(*) FROM sent_papers s
        JOIN deliveries d ON d.id = s.delivery_id
        WHERE s.clicked_at IS NOT NULL GROUP BY d.edition_id, s.paper_id
    """)
    op.drop_index("ix_sent_papers_clicked_at", table_name="sent_papers")
    with op.batch_alter_table("sent_papers") as batch:
        batch.drop_column("clicked_at")
