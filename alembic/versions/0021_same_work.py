"""papers.title_key, papers.doi_key, papers.also_on, paper_aliases: one paper per work

The same work can reach us from several sources (arXiv, bioRxiv, medRxiv, a feed). The
first to arrive is the paper; the others join it as aliases, looked up by their own key,
and are listed on it as `also_on` links (newsletter/ingest/same_work.py). `doi_key` and
`title_key` are what a newcomer is matched by (newsletter/ingest/identity.py); they are
filled here for the papers already stored, with the rules as they stand today.

Revision ID: 0021
Revises: 0020
"""
import re
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_LATEX = re.compile(r"\\[a-zA-Z]+")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def _words(text):
    flat = unicodedata.normalize("NFKD", _LATEX.sub(" ", text)).encode("ascii", "ignore")
    return _NOT_WORD.sub(" ", flat.decode().lower()).split()


def _title_key(title, authors):
    words = _words(title or "")
    if len(words) < 4 or not authors:
        return None
    first = authors[0]
    name = first.split(",")[0] if "," in first else (first.split() or [""])[-1]
    family = "".join(_words(name))
    return (" ".join(words) + "|" + family)[:300] if family else None


def _doi_key(doi):
    if not doi:
        return None
    value = doi.strip().lower()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/",
                   "http://dx.doi.org/", "doi:"):
        value = value.removeprefix(prefix)
    return value if value.startswith("10.") and "/" in value else None


def upgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.add_column(sa.Column("title_key", sa.String(300), nullable=True))
        batch.add_column(sa.Column("doi_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("also_on", sa.JSON(), nullable=True))
    op.create_index("ix_papers_title_key", "papers", ["title_key"])
    op.create_index("ix_papers_doi_key", "papers", ["doi_key"])
    op.create_table(
        "paper_aliases",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("paper_id", sa.Integer(),
                  sa.ForeignKey("papers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_paper_aliases_paper_id", "paper_aliases", ["paper_id"])

    papers = sa.table("papers", sa.column("id", sa.Integer), sa.column("title", sa.Text),
                      sa.column("authors", sa.JSON), sa.column("doi", sa.Text),
                      sa.column("title_key", sa.String), sa.column("doi_key", sa.String))
    connection = op.get_bind()
    last = 0
    while True:
        rows = connection.execute(
            sa.select(papers.c.id, papers.c.title, papers.c.authors, papers.c.doi)
            .where(papers.c.id > last).order_by(papers.c.id).limit(2000)).all()
        if not rows:
            break
        for row in rows:
            connection.execute(papers.update().where(papers.c.id == row.id).values(
                title_key=_title_key(row.title, row.authors or []), doi_key=_doi_key(row.doi)))
        last = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_paper_aliases_paper_id", "paper_aliases")
    op.drop_table("paper_aliases")
    op.drop_index("ix_papers_doi_key", "papers")
    op.drop_index("ix_papers_title_key", "papers")
    # Not in batch mode: on SQLite a batch rebuilds the table, and dropping the old papers
    # table with foreign keys on would cascade into every reader's ratings. SQLite drops a
    # plain column in place (3.35 and later), as Postgres does.
    for column in ("also_on", "doi_key", "title_key"):
        op.drop_column("papers", column)
