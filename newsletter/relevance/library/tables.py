"""The tables of a reader's own papers: what their library file gave, and their author feed.

A `LibraryUpload` is one file a reader sent: its name, format and the report of what it
gave. A `LibraryEntry` is one paper of it, or one paper of their arXiv author feed, kept
with only what matching needs: its title, its arXiv id or DOI, and the abstract while it
may have to stand for the paper (no arXiv match), never the rest of the reader's library.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Index, Integer, LargeBinary, Text
from sqlmodel import Field, SQLModel


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LibraryUpload(SQLModel, table=True):
    """One library file a reader sent, and what it gave.

    A sign-up's upload waits with its confirmation: `nonce` is the confirmation it belongs
    to, and it becomes the reader's (nonce NULL) only when that link is clicked, since
    anyone can type anyone's address. A reader has at most one upload in use: a new one
    replaces the old with its entries.
    """

    __tablename__ = "library_uploads"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(sa_column=Column(
        Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False, index=True))
    nonce: str | None = Field(default=None, max_length=64)
    filename: str = Field(max_length=200)
    format: str = Field(max_length=16)  # bibtex, ris, csl-json
    uploaded_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))
    # What could not be used, entry by entry: [{"number", "title", "reason"}] (reason is a
    # code of files.reason_said), and the counts of the rest.
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class LibraryEntry(SQLModel, table=True):
    """One of a reader's own papers: from their library file, or their arXiv author feed.

    `state` says how it counts:
    - "arxiv": an arXiv paper (`arxiv_id`), fetched and embedded like a liked paper;
    - "lookup": no arXiv id yet; its exact title is to be asked of the arXiv API;
    - "text": no arXiv match, but an abstract: its title and abstract are embedded as a
      vector of the reader's own (`vector`, in `vector_model`);
    - "unmatched": no arXiv match and nothing to embed: kept for the report only.
    A dropped entry stays (so the next author feed does not bring it back) but counts for
    nothing.
    """

    __tablename__ = "library_entries"
    __table_args__ = (
        Index("ix_library_entries_subscriber", "subscriber_id", "source"),
        Index("ix_library_entries_state", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(sa_column=Column(
        Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False))
    upload_id: int | None = Field(default=None, sa_column=Column(
        Integer, ForeignKey("library_uploads.id", ondelete="CASCADE"), nullable=True,
        index=True))
    source: str = Field(max_length=8)  # "library" or "author"
    number: int = 0  # its position in the file or the feed
    title: str = Field(sa_type=Text)
    arxiv_id: str | None = Field(default=None, max_length=32)
    doi: str | None = Field(default=None, max_length=200)
    abstract: str | None = Field(default=None, sa_type=Text)
    state: str = Field(max_length=12)
    dropped: bool = False
    vector: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    vector_model: str | None = Field(default=None, max_length=200)
    # When it last changed in a way the reader's model learns from (added, matched,
    # embedded, dropped): a model trained before is outdated (train.retrain_outdated).
    changed_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))
