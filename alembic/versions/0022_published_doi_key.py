"""papers.published_doi_key: the journal article a stored preprint became

A bioRxiv or medRxiv record names the journal article its preprint became ("Published:
<doi>" in `journal_ref`). A newcomer carrying that DOI (an arXiv record, a journal's feed
item) is the same work, and finds the preprint by this key (newsletter/ingest/same_work.py).
Filled here for the preprints already stored, with the rules as they stand today.

Revision ID: 0022
Revises: 0021
"""
import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_PUBLISHED = "Published: "


def _doi_key(doi):
    value = doi.strip().lower()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/",
                   "http://dx.doi.org/", "doi:"):
        value = value.removeprefix(prefix)
    return value if value.startswith("10.") and "/" in value else None


def upgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.add_column(sa.Column("published_doi_key", sa.String(200), nullable=True))
    op.create_index("ix_papers_published_doi_key", "papers", ["published_doi_key"])

    papers = sa.table("papers", sa.column("id", sa.Integer), sa.column("journal_ref", sa.Text),
                      sa.column("published_doi_key", sa.String))
    connection = op.get_bind()
    rows = connection.execute(sa.select(papers.c.id, papers.c.journal_ref).where(
        papers.c.journal_ref.like(_PUBLISHED + "%"))).all()
    for row in rows:
        connection.execute(papers.update().where(papers.c.id == row.id).values(
            published_doi_key=_doi_key(row.journal_ref.removeprefix(_PUBLISHED))))


def downgrade() -> None:
    op.drop_index("ix_papers_published_doi_key", "papers")
    # In place, as 0021's columns: a batch rebuild of papers on SQLite would cascade into
    # every reader's ratings.
    op.drop_column("papers", "published_doi_key")
