"""papers and feeds

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 21:14:15.157193
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feeds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(2000), nullable=False),
    sa.Column('label', sa.String(200), nullable=False),
    sa.Column('kind', sa.String(20), nullable=False),
    sa.Column('etag', sa.String(500), nullable=True),
    sa.Column('last_modified', sa.String(100), nullable=True),
    sa.Column('last_fetched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(20), nullable=False),
    sa.Column('announced_on', sa.Date(), nullable=True),
    sa.Column('items_seen', sa.Integer(), nullable=False),
    sa.Column('papers_added', sa.Integer(), nullable=False),
    sa.Column('papers_updated', sa.Integer(), nullable=False),
    sa.Column('papers_unchanged', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('url')
    )
    op.create_table('papers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(200), nullable=False),
    sa.Column('arxiv_id', sa.String(64), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('abstract', sa.Text(), nullable=False),
    sa.Column('authors', sa.JSON(), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('primary_category', sa.String(64), nullable=True),
    sa.Column('announce_type', sa.String(16), nullable=False),
    sa.Column('announced_on', sa.Date(), nullable=True),
    sa.Column('revised_on', sa.Date(), nullable=True),
    sa.Column('abs_url', sa.Text(), nullable=True),
    sa.Column('pdf_url', sa.Text(), nullable=True),
    sa.Column('doi', sa.Text(), nullable=True),
    sa.Column('journal_ref', sa.Text(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('code_url', sa.Text(), nullable=True),
    sa.Column('license', sa.Text(), nullable=True),
    sa.Column('source', sa.String(100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('papers', schema=None) as batch_op:
        batch_op.create_index('ix_papers_announced_on', ['announced_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_papers_arxiv_id'), ['arxiv_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('papers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_papers_arxiv_id'))
        batch_op.drop_index('ix_papers_announced_on')

    op.drop_table('papers')
    op.drop_table('feeds')
