"""The relevance step's tables: paper vectors, and (below) ratings and reader models."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    SmallInteger,
)
from sqlmodel import Field, SQLModel


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PaperVector(SQLModel, table=True):
    """One paper's vector, in the vector model it was computed with.

    It is current while `model` is the configured vector model and `text_hash` is the hash
    of the paper's title and abstract as embedded (see newsletter.relevance.embed).
    """

    __tablename__ = "paper_vectors"

    paper_id: int = Field(sa_column=Column(
        Integer, ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False))
    model: str = Field(max_length=200)  # e.g. "openai:text-embedding-3-small:256"
    dims: int
    text_hash: str = Field(max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # vectors.encode
    # This vector's share of its request's tokens and cost (0 offline; cost None when the
    # model's price is unknown).
    input_tokens: int = 0
    cost_usd: float | None = None
    # When the paper was last read for this vector: a paper updated after it is re-checked.
    checked_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))


class Rating(SQLModel, table=True):
    """A reader's "more like this" (+1) or "less like this" (-1) on one paper.

    One per reader and paper: rating again replaces it, clearing deletes it.
    """

    __tablename__ = "ratings"
    __table_args__ = (CheckConstraint("value IN (-1, 1)", name="ck_ratings_value"),)

    subscriber_id: int = Field(sa_column=Column(
        Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False))
    paper_id: int = Field(sa_column=Column(
        Integer, ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False))
    value: int = Field(sa_column=Column(SmallInteger, nullable=False))
    rated_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))


class ReaderModelRow(SQLModel, table=True):
    """A reader's trained model (`model.encode_model`: a few KB), in one vector model.

    Written when a rating, the description or the liked papers change, never during a
    send; no row means nothing to go on, and the reader is ranked by topics alone.
    """

    __tablename__ = "reader_models"

    subscriber_id: int = Field(sa_column=Column(
        Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False))
    vector_model: str = Field(max_length=200)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    trained_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))
    ratings: int = 0  # how many ratings it was trained on
    # The description's vector (vectors.encode) in `vector_model`, and the SHA-256 of the
    # description it was computed from: a rating retrains without embedding the description
    # again (no OpenAI call while a reader waits); a changed description does.
    description_vector: bytes | None = Field(default=None,
                                             sa_column=Column(LargeBinary, nullable=True))
    description_hash: str | None = Field(default=None, max_length=64)
