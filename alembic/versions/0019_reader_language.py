"""preferences.language and card_translations: each reader's cards, site and mail in their language

A reader picks one of the operator's CARD_LANGUAGES; NULL means English, so readers from
before this revision keep what they had. A card is translated once per paper and language
some reader uses, never per reader (newsletter/cards/translate.py), and the translation
is kept against the English text it came from.

Revision ID: 0019
Revises: 0018
"""
import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("preferences") as batch:
        batch.add_column(sa.Column("language", sa.String(16), nullable=True))
    op.create_table(
        "card_translations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("paper_id", sa.Integer(), sa.ForeignKey("papers.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("key_points", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("methodology", sa.Text(), nullable=False),
        sa.Column("results", sa.Text(), nullable=False),
        sa.Column("implications", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_version", sa.String(32), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("paper_id", "language", name="uq_card_translations_paper_language"),
    )
    op.create_index("ix_card_translations_paper_id", "card_translations", ["paper_id"])
    op.create_index("ix_card_translations_status", "card_translations", ["status"])


def downgrade() -> None:
    op.drop_index("ix_card_translations_status", table_name="card_translations")
    op.drop_index("ix_card_translations_paper_id", table_name="card_translations")
    op.drop_table("card_translations")
    with op.batch_alter_table("preferences") as batch:
        batch.drop_column("language")
