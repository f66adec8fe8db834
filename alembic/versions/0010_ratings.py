"""ratings, reader_models, and a reader's own words: preferences.description and liked_papers

A reader's "more like this" / "less like this" on a paper (one per reader and paper), the
model trained from their ratings, description and liked papers (a few KB per reader, with
the description's vector so a rating never embeds it again), and those two inputs on the
preferences row. Everything goes with the reader (ON DELETE
CASCADE; privacy.erase also deletes it explicitly).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ratings",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.SmallInteger(), nullable=False),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("value IN (-1, 1)", name="ck_ratings_value"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["paper_id"], ["papers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscriber_id", "paper_id"),
    )
    op.create_table(
        "reader_models",
        sa.Column("subscriber_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("vector_model", sa.String(200), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ratings", sa.Integer(), nullable=False),
        sa.Column("description_vector", sa.LargeBinary(), nullable=True),
        sa.Column("description_hash", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscriber_id"),
    )
    with op.batch_alter_table("preferences") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch.add_column(sa.Column("liked_papers", sa.JSON(), nullable=False,
                                   server_default=sa.text("'[]'")))


def downgrade() -> None:
    with op.batch_alter_table("preferences") as batch:
        batch.drop_column("liked_papers")
        batch.drop_column("description")
    op.drop_table("reader_models")
    op.drop_table("ratings")
