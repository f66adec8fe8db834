"""A paper: one row per versionless arXiv id (or per item of another source).

`PaperEntry` is what a feed says about a paper on one day; `Paper` is what we keep.
`merge` decides, without I/O, what an entry changes in a stored paper.

A paper is listed when one of our feeds announced it on some day (new: `announced_on`,
revised: `revised_on`). A paper fetched from the arXiv API only because a reader likes it
(relevance/liked.py) has neither day: it teaches that reader's model and nothing else. It
is on no day and no page, gets no card and goes in nobody's digest (`listed`), until a
feed of ours lists it: then it takes that entry's day like a paper first seen then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, ColumnElement, Index, func, or_
from sqlmodel import Field, Session, SQLModel, select

from newsletter.ingest.identity import normal_doi, published_doi, title_key

ANNOUNCE_TYPES = ("new", "cross", "replace", "replace-cross")
# A fresh listing outranks a cross-list: if a paper reaches us as both, it is "new".
_FIRST_LISTING_RANK = {"new": 0, "cross": 1, "replace": 2, "replace-cross": 3}

_CODE_URL = re.compile(
    r"https?://(?:www\.)?(?:github\.com|gitlab\.com)/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+",
)


def find_code_url(*texts: str | None) -> str | None:
    """The first GitHub or GitLab repository URL in the texts, trailing punctuation removed."""
    for text in texts:
        if not text:
            continue
        match = _CODE_URL.search(text)
        if match:
            return match.group(0).rstrip(".,;:)").removesuffix(".git")
    return None


@dataclass(frozen=True)
class PaperEntry:
    """One item of one feed document, already cleaned. Pure data."""

    key: str
    arxiv_id: str | None
    version: int
    title: str
    abstract: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    primary_category: str | None
    announce_type: str
    announced_on: date | None
    abs_url: str | None
    pdf_url: str | None
    doi: str | None = None
    journal_ref: str | None = None
    comment: str | None = None
    license: str | None = None
    source: str = "arxiv"
    # The day version 1 appeared, when the document says (the API does; RSS does not).
    first_announced_on: date | None = None

    @property
    def code_url(self) -> str | None:
        return find_code_url(self.abstract, self.comment)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Paper(SQLModel, table=True):
    __tablename__ = "papers"
    __table_args__ = (Index("ix_papers_announced_on", "announced_on"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    arxiv_id: str | None = Field(default=None, max_length=64, index=True)
    version: int = 1
    title: str
    abstract: str
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    primary_category: str | None = Field(default=None, max_length=64)
    announce_type: str = Field(max_length=16)
    announced_on: date | None = None
    revised_on: date | None = None
    abs_url: str | None = None
    pdf_url: str | None = None
    doi: str | None = None
    journal_ref: str | None = None
    comment: str | None = None
    code_url: str | None = None
    license: str | None = None
    source: str = Field(default="arxiv", max_length=100)
    # What another source's announcement of the same work is matched by (identity.py), and
    # the links of those that joined it (same_work.py): [{"source": ..., "url": ...}].
    title_key: str | None = Field(default=None, max_length=300, index=True)
    doi_key: str | None = Field(default=None, max_length=200, index=True)
    # The journal article's DOI a preprint server says the preprint became: an arXiv record
    # or a journal's item that arrives later with that DOI is the same work.
    published_doi_key: str | None = Field(default=None, max_length=200, index=True)
    also_on: list[dict[str, str]] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=_utcnow)
    updated_at: datetime = Field(default_factory=_utcnow)


def listed() -> ColumnElement[bool]:
    """Papers a feed of ours listed on some day, new or revised: what days, pages, cards
    and digests are made of. Not a paper fetched only for a reader's liked papers."""
    return or_(Paper.announced_on.is_not(None),  # type: ignore[union-attr]
               Paper.revised_on.is_not(None))  # type: ignore[union-attr]


def _listing_days(entry: PaperEntry) -> dict[str, date | None]:
    """The days of a paper first listed by this entry."""
    revised = entry.announce_type in ("replace", "replace-cross")
    # A revision of a paper we never saw announced has no announcement day we know of:
    # it must not look like one of today's new papers.
    return {"announced_on": entry.first_announced_on or (None if revised
                                                         else entry.announced_on),
            "revised_on": entry.announced_on if revised else None}


def new_row(entry: PaperEntry) -> dict[str, Any]:
    """Column values for a paper we have never seen."""
    now = _utcnow()
    return {
        "key": entry.key,
        "arxiv_id": entry.arxiv_id,
        "version": entry.version,
        "title": entry.title,
        "abstract": entry.abstract,
        "authors": list(entry.authors),
        "categories": list(entry.categories),
        "primary_category": entry.primary_category,
        "announce_type": entry.announce_type,
        **_listing_days(entry),
        "abs_url": entry.abs_url,
        "pdf_url": entry.pdf_url,
        "doi": entry.doi,
        "journal_ref": entry.journal_ref,
        "comment": entry.comment,
        "code_url": entry.code_url,
        "license": entry.license,
        "source": entry.source,
        **identity_keys(entry),
        "created_at": now,
        "updated_at": now,
    }


def identity_keys(entry: PaperEntry) -> dict[str, str | None]:
    return {"title_key": title_key(entry.title, entry.authors),
            "doi_key": normal_doi(entry.doi),
            "published_doi_key": normal_doi(published_doi(entry.journal_ref))}


def _merged_categories(stored: list[str], incoming: tuple[str, ...]) -> list[str]:
    return stored + [c for c in incoming if c not in stored]


def merge(stored: dict[str, Any], entry: PaperEntry) -> dict[str, Any]:
    """The columns an entry changes in a stored paper; empty when nothing changes.

    A newer version replaces the text and metadata and marks the paper revised; it never
    makes it new again. The same version seen in another category only adds categories.
    An older version (a late cross-list of v1 after v2) changes nothing but categories.
    """
    changes: dict[str, Any] = {}
    categories = _merged_categories(stored["categories"], entry.categories)
    if categories != stored["categories"]:
        changes["categories"] = categories

    if entry.version > stored["version"]:
        fresh = {
            "version": entry.version,
            "title": entry.title,
            "abstract": entry.abstract,
            "authors": list(entry.authors),
            "abs_url": entry.abs_url or stored["abs_url"],
            "pdf_url": entry.pdf_url or stored["pdf_url"],
            "doi": entry.doi or stored["doi"],
            "journal_ref": entry.journal_ref or stored["journal_ref"],
            "comment": entry.comment or stored["comment"],
            "license": entry.license or stored["license"],
            "code_url": entry.code_url or stored["code_url"],
            "revised_on": entry.announced_on or stored["revised_on"],
        }
        fresh.update(identity_keys(entry))
        fresh["doi_key"] = fresh["doi_key"] or stored["doi_key"]
        fresh["published_doi_key"] = fresh["published_doi_key"] or stored["published_doi_key"]
        changes.update({k: v for k, v in fresh.items() if v != stored[k]})
    elif entry.version == stored["version"]:
        if _FIRST_LISTING_RANK.get(entry.announce_type, 9) < _FIRST_LISTING_RANK.get(
            stored["announce_type"], 9
        ):
            changes["announce_type"] = entry.announce_type
        for column in ("doi", "journal_ref", "comment", "license", "primary_category"):
            value = getattr(entry, column)
            if value and not stored[column]:
                changes[column] = value
        if "doi" in changes:
            changes["doi_key"] = normal_doi(entry.doi)
        if "journal_ref" in changes:
            changes["published_doi_key"] = normal_doi(published_doi(entry.journal_ref))
        if entry.code_url and not stored["code_url"]:
            changes["code_url"] = entry.code_url
        revision = entry.announce_type in ("replace", "replace-cross")
        if entry.announced_on and not stored["announced_on"] and not revision:
            changes["announced_on"] = entry.announced_on

    if entry.announced_on and not stored["announced_on"] and not stored["revised_on"]:
        # Never listed (fetched for a reader's liked papers): a feed lists it now, whatever
        # version each holds, and it is listed as a paper first seen in this entry.
        changes.update({k: v for k, v in _listing_days(entry).items() if v is not None})

    if changes:
        changes["updated_at"] = _utcnow()
    return changes


def text_changed(changes: dict[str, Any]) -> bool:
    """Whether a merge touched what a card is written from."""
    return "title" in changes or "abstract" in changes


def paper_json(paper: Paper) -> dict[str, Any]:
    """The public shape of a paper (`newsletter papers --json`)."""
    return {
        "key": paper.key,
        "arxiv_id": paper.arxiv_id,
        "version": paper.version,
        "title": paper.title,
        "authors": list(paper.authors),
        "categories": list(paper.categories),
        "primary_category": paper.primary_category,
        "announce_type": paper.announce_type,
        "announced_on": paper.announced_on.isoformat() if paper.announced_on else None,
        "revised_on": paper.revised_on.isoformat() if paper.revised_on else None,
        "abstract": paper.abstract,
        "abs_url": paper.abs_url,
        "pdf_url": paper.pdf_url,
        "code_url": paper.code_url,
        "doi": paper.doi,
        "journal_ref": paper.journal_ref,
        "comment": paper.comment,
        "license": paper.license,
        "source": paper.source,
    }


def papers_of_day(session: Session, day: date | None = None) -> list[Paper]:
    """The papers announced or revised on a day (every paper when no day is given)."""
    query = select(Paper)
    if day is not None:
        query = query.where(or_(Paper.announced_on == day, Paper.revised_on == day))
    query = query.order_by(Paper.announced_on.desc(), Paper.key)  # type: ignore[union-attr]
    return list(session.exec(query))


def latest_announcement_day(session: Session) -> date | None:
    return session.exec(select(func.max(Paper.announced_on))).one()
