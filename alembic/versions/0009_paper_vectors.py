"""paper_vectors: one vector per paper, in the vector model it was computed with

A paper's vector is computed once, from its title and abstract, and again only when that
text changes (`text_hash`) or the configured vector model does (`model`, e.g.
"openai:text-embedding-3-small:256" or the offline "hashing-tfidf-v1"). The vector is
stored compactly (`data`, newsletter.relevance.vectors.encode), with its share of the
request's tokens and cost. It goes with its paper (ON DELETE CASCADE).

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_vectors",
        sa.Column("paper_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("text_hash", sa.String(64), nullable=False),
        # BLOB on SQLite, BYTEA on Postgres.
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["paper_id"], ["papers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("paper_id"),
    )


def downgrade() -> None:
    op.drop_table("paper_vectors")
