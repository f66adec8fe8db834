"""library_uploads, library_entries, preferences.arxiv_author: a reader starts from their own papers

A reader may give their arXiv author identifier or ORCID iD (the papers of its arXiv feed
count as papers they like) and upload their reference library (BibTeX, RIS or CSL JSON).
Each entry keeps only what matching needs: its title, arXiv id or DOI, and the abstract
while it may stand for the paper (newsletter/relevance/library/).

Revision ID: 0020
Revises: 0019
"""
import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("preferences") as batch:
        batch.add_column(sa.Column("arxiv_author", sa.String(64), nullable=True))
        batch.add_column(sa.Column("author_fetched_at", sa.DateTime(timezone=True),
                                   nullable=True))
    op.create_table(
        "library_uploads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subscriber_id", sa.Integer(),
                  sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=True),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
    )
    op.create_index("ix_library_uploads_subscriber_id", "library_uploads", ["subscriber_id"])
    op.create_table(
        "library_entries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subscriber_id", sa.Integer(),
                  sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("upload_id", sa.Integer(),
                  sa.ForeignKey("library_uploads.id", ondelete="CASCADE"), nullable=True),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("arxiv_id", sa.String(32), nullable=True),
        sa.Column("doi", sa.String(200), nullable=True),
        sa.Column("abstract", sa.Text(), nullable=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("dropped", sa.Boolean(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("vector_model", sa.String(200), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_library_entries_subscriber", "library_entries",
                    ["subscriber_id", "source"])
    op.create_index("ix_library_entries_state", "library_entries", ["state"])
    op.create_index("ix_library_entries_upload_id", "library_entries", ["upload_id"])


def downgrade() -> None:
    op.drop_index("ix_library_entries_upload_id", table_name="library_entries")
    op.drop_index("ix_library_entries_state", table_name="library_entries")
    op.drop_index("ix_library_entries_subscriber", table_name="library_entries")
    op.drop_table("library_entries")
    op.drop_index("ix_library_uploads_subscriber_id", table_name="library_uploads")
    op.drop_table("library_uploads")
    with op.batch_alter_table("preferences") as batch:
        batch.drop_column("author_fetched_at")
        batch.drop_column("arxiv_author")
