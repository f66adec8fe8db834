"""One paper per work: an entry another source already announced joins that paper.

`store.store_entries` asks `find` about the entries whose key it has never stored. An
entry that names a stored paper of another source (by DOI, arXiv id, or title and first
author: identity.py) does not become a paper of its own: it becomes an alias of that one
(`paper_aliases`, so its next version finds it by its key at once) and a link in the
paper's `also_on`. The paper keeps its listing days, its card and its place in digests
already sent, so the work is never carded twice nor mailed twice.

Which text the paper shows: the first source's, unless that was a feed's item (a lab's
blurb, a blog post) and the newcomer is a preprint server's own record (arXiv, bioRxiv,
medRxiv). Then the record takes over the paper's text and key, the item becomes the
alias, and the card is written again from the paper's own abstract (its text changed).

Entries of the same source are never merged: a source that lists two records of one work
means two (arXiv's duplicates are withdrawn by arXiv, not by us).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Integer, insert, or_, update
from sqlalchemy import select as select_rows
from sqlmodel import Field, Session, SQLModel

from newsletter.db import chunked
from newsletter.ingest.identity import PREPRINT_SOURCES, normal_doi, published_doi, title_key
from newsletter.ingest.paper import Paper, PaperEntry, new_row


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PaperAlias(SQLModel, table=True):
    """Another source's record of a stored paper: its key, where it is, its version."""

    __tablename__ = "paper_aliases"

    key: str = Field(primary_key=True, max_length=200)
    paper_id: int = Field(sa_column=Column(
        Integer, ForeignKey("papers.id", ondelete="CASCADE"), nullable=False, index=True))
    source: str = Field(max_length=100)
    url: str | None = None
    version: int = 1
    created_at: datetime = Field(default_factory=_utcnow)


papers = Paper.__table__  # type: ignore[attr-defined]
aliases = PaperAlias.__table__  # type: ignore[attr-defined]

# Filled from a joining record when the paper lacks them: its other identifiers and links.
_BLANKS = ("arxiv_id", "doi", "doi_key", "journal_ref", "code_url")


@dataclass(frozen=True)
class Match:
    paper: dict[str, Any]  # the stored paper's row
    alias: dict[str, Any] | None = None  # the entry's alias row, when it has one


def find(session: Session, entries: Sequence[PaperEntry]) -> dict[str, Match]:
    """For entries not stored under their key: the stored paper each is the same work as."""
    if not entries:
        return {}
    found: dict[str, Match] = {}
    keys = [e.key for e in entries]
    for chunk in chunked(keys):
        rows = session.execute(select_rows(aliases, papers).join(
            papers, papers.c.id == aliases.c.paper_id).where(aliases.c.key.in_(chunk)))
        for row in rows.mappings():
            alias = {c.name: row[aliases.c[c.name]] for c in aliases.columns}
            paper = {c.name: row[papers.c[c.name]] for c in papers.columns}
            found[alias["key"]] = Match(paper=paper, alias=alias)

    rest = [e for e in entries if e.key not in found]
    dois = {d for e in rest for d in _dois(e)}
    arxiv_ids = {e.arxiv_id for e in rest if e.arxiv_id}
    titles = {t for e in rest if (t := title_key(e.title, e.authors))}
    if not (dois or arxiv_ids or titles):
        return found
    conditions = []
    for column, values in ((papers.c.doi_key, dois), (papers.c.published_doi_key, dois),
                           (papers.c.arxiv_id, arxiv_ids), (papers.c.title_key, titles)):
        conditions += [column.in_(chunk) for chunk in chunked(sorted(values))]
    candidates = [dict(r) for r in session.execute(
        select_rows(papers).where(or_(*conditions)).order_by(papers.c.id)).mappings()]
    for entry in rest:
        paper = _same_work(entry, candidates)
        if paper is not None:
            found[entry.key] = Match(paper=paper)
    return found


def _dois(entry: PaperEntry) -> list[str]:
    """The entry's own DOI, and the journal article's a preprint server says it became."""
    return [d for d in (normal_doi(entry.doi), normal_doi(published_doi(entry.journal_ref)))
            if d]


def _same_work(entry: PaperEntry, candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The stored paper of another source that this entry names, strongest key first."""
    others = [c for c in candidates if c["source"] != entry.source]
    # A DOI names the work as the stored paper's own, or as the journal article a stored
    # preprint became.
    keys = [(column, doi) for doi in _dois(entry) for column in ("doi_key", "published_doi_key")]
    keys += [("arxiv_id", entry.arxiv_id), ("title_key", title_key(entry.title, entry.authors))]
    for column, value in keys:
        if value:
            for paper in others:
                if paper[column] == value:
                    return paper
    return None


def _link(source: str, url: str | None) -> dict[str, str]:
    return {"source": source, "url": url or ""}


def _with_link(also_on: list[dict[str, str]] | None, link: dict[str, str]
               ) -> list[dict[str, str]]:
    """The paper's other places, one per source, the newest link of each."""
    kept = [item for item in also_on or [] if item.get("source") != link["source"]]
    return [*kept, link] if link["url"] else kept


def join(session: Session, match: Match, entry: PaperEntry) -> str:
    """Record the entry on its paper; return "merged", "updated" or "unchanged"."""
    paper = match.paper
    if match.alias is not None:
        return _refresh_alias(session, match.alias, paper, entry)
    if paper["source"] not in PREPRINT_SOURCES and entry.source in PREPRINT_SOURCES:
        _take_over(session, paper, entry)
        return "merged"
    session.execute(insert(aliases).values(
        key=entry.key, paper_id=paper["id"], source=entry.source, url=entry.abs_url,
        version=entry.version, created_at=_utcnow()))
    fresh = new_row(entry)
    changes: dict[str, Any] = {c: fresh[c] for c in _BLANKS if fresh[c] and not paper[c]}
    changes["also_on"] = _with_link(paper["also_on"], _link(entry.source, entry.abs_url))
    session.execute(update(papers).where(papers.c.id == paper["id"]).values(
        **changes, updated_at=_utcnow()))
    return "merged"


def _refresh_alias(session: Session, alias: dict[str, Any], paper: dict[str, Any],
                   entry: PaperEntry) -> str:
    # A new version on the other source moves its link; the paper's own text is its
    # first source's, and a revision elsewhere does not make it news again.
    if entry.version <= alias["version"]:
        return "unchanged"
    session.execute(update(aliases).where(aliases.c.key == alias["key"]).values(
        version=entry.version, url=entry.abs_url or alias["url"]))
    also_on = _with_link(paper["also_on"], _link(entry.source, entry.abs_url))
    if also_on != (paper["also_on"] or []):
        session.execute(update(papers).where(papers.c.id == paper["id"]).values(
            also_on=also_on))
    return "updated"


def _take_over(session: Session, paper: dict[str, Any], entry: PaperEntry) -> None:
    """A preprint server's record replaces a feed item's text; the item becomes an alias."""
    fresh = new_row(entry)
    # The listing days stay: the work was already on a day (and maybe in a digest).
    for kept in ("created_at", "announced_on", "revised_on", "announce_type"):
        fresh.pop(kept)
    fresh["also_on"] = _with_link(paper["also_on"], _link(paper["source"], paper["abs_url"]))
    fresh["updated_at"] = _utcnow()
    session.execute(update(papers).where(papers.c.id == paper["id"]).values(**fresh))
    session.execute(insert(aliases).values(
        key=paper["key"], paper_id=paper["id"], source=paper["source"], url=paper["abs_url"],
        version=paper["version"], created_at=_utcnow()))
