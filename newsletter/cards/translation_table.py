"""A card in another language: one row per paper and language, written once for everyone.

The English card is the source; its translation is kept against the hash of the English
text it was made from (`source_hash`), so a rewritten card is translated again and a
reader never gets a translation of words the card no longer says. Topics are not stored:
they are the English card's slugs, shown by name in the reader's language (taxonomy).
Titles are never translated: they stay as the authors wrote them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CardTranslation(SQLModel, table=True):
    __tablename__ = "card_translations"
    __table_args__ = (UniqueConstraint("paper_id", "language",
                                       name="uq_card_translations_paper_language"),)

    id: int | None = Field(default=None, primary_key=True)
    paper_id: int = Field(sa_column=Column(
        Integer, ForeignKey("papers.id", ondelete="CASCADE"), nullable=False, index=True))
    language: str = Field(max_length=16)
    # The English card's text this was translated from (translation.translation_source_hash).
    source_hash: str = Field(max_length=64)
    key_points: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    summary: str = Field(default="", sa_type=Text)
    methodology: str = Field(default="", sa_type=Text)
    results: str = Field(default="", sa_type=Text)
    implications: str = Field(default="", sa_type=Text)
    # ok: checked and shown; failed: the reader gets the English card, marked as such.
    status: str = Field(max_length=16, index=True)
    model: str = Field(max_length=200)
    prompt_version: str = Field(max_length=32)
    # Spend on this translation, retries and failed runs included.
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    attempts: int = 0
    failures: int = 0  # failed runs in a row for this source text; caps the retries
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))
