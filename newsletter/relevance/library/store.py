"""A reader's own papers as stored: their library file's entries and their author feed's.

A library file is parsed (files.py) and stored at once, in the web request or the command
that received it: each entry that names an arXiv paper is a liked paper, fetched and
embedded by the next sweep like one; one without an arXiv id waits for its title to be
looked up on arXiv (sweep.py), and failing that stands for itself by its title and
abstract, as a vector of the reader's own. Nothing here calls arXiv: the web never waits
on it.

A sign-up's file waits with its confirmation (`nonce`), and only the click on the mailed
link makes it the reader's (`adopt`): anyone can type anyone's address, and a file sent
for an address must change nothing of its reader until they say so.

Functions that take a Session change state; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import scipy.sparse as sp
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import defer
from sqlmodel import Session

from newsletter.db import aware
from newsletter.readers.tables import Preferences
from newsletter.relevance import vectors
from newsletter.relevance.library.files import ParsedLibrary
from newsletter.relevance.library.tables import LibraryEntry, LibraryUpload

# How each entry counts (LibraryEntry.state).
ARXIV, LOOKUP, TEXT, UNMATCHED = "arxiv", "lookup", "text", "unmatched"
# Where it came from (LibraryEntry.source).
LIBRARY, AUTHOR = "library", "author"
# The newest papers of an author feed that count: a prolific author's 400 papers would
# otherwise be most of what their model learns from.
AUTHOR_PAPERS = 100


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _clean_filename(name: str | None) -> str:
    # A name to show back to the reader, never a path: only its last part, printable.
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in base if c.isprintable())[:200] or "library"


def _entry_rows(subscriber_id: int, upload_id: int, parsed: ParsedLibrary,
                now: datetime) -> list[dict[str, Any]]:
    rows = []
    for entry in parsed.entries:
        # The abstract is kept only while the entry may have to stand for itself: an arXiv
        # paper brings its own, so the reader's copy is not kept.
        state = ARXIV if entry.arxiv_id else LOOKUP
        rows.append({"subscriber_id": subscriber_id, "upload_id": upload_id,
                     "source": LIBRARY, "number": entry.number, "title": entry.title,
                     "arxiv_id": entry.arxiv_id, "doi": entry.doi,
                     "abstract": None if entry.arxiv_id else entry.abstract,
                     "state": state, "dropped": False, "vector": None,
                     "vector_model": None, "changed_at": now})
    return rows


def import_file(session: Session, subscriber_id: int, parsed: ParsedLibrary,
                filename: str | None, *, nonce: str | None = None,
                now: datetime | None = None) -> LibraryUpload:
    """Store a parsed library file for this reader: theirs at once (replacing the file
    they had), or, given the `nonce` of a sign-up's confirmation, waiting for it."""
    now = now or _utcnow()
    if nonce is None:
        remove_library(session, subscriber_id)
    upload = LibraryUpload(
        subscriber_id=subscriber_id, nonce=nonce, filename=_clean_filename(filename),
        format=parsed.format, uploaded_at=now,
        report={"entries": len(parsed.entries),
                "skipped": [{"number": s.number, "title": s.title, "reason": s.reason}
                            for s in parsed.skipped]})
    session.add(upload)
    session.flush()
    assert upload.id is not None
    rows = _entry_rows(subscriber_id, upload.id, parsed, now)
    if rows:
        session.execute(LibraryEntry.__table__.insert(), rows)  # type: ignore[attr-defined]
    return upload


def adopt(session: Session, subscriber_id: int, nonce: str) -> bool:
    """A confirmed sign-up's waiting file becomes the reader's, replacing theirs; files
    of other sign-ups for the address go. True when there was one."""
    waiting = session.execute(select(LibraryUpload.id).where(
        LibraryUpload.subscriber_id == subscriber_id,  # type: ignore[arg-type]
        LibraryUpload.nonce == nonce)).scalars().first()  # type: ignore[arg-type]
    if waiting is None:
        discard_waiting(session, subscriber_id)
        return False
    remove_library(session, subscriber_id)
    discard_waiting(session, subscriber_id, keep=waiting)
    session.execute(update(LibraryUpload).where(
        LibraryUpload.id == waiting).values(nonce=None))  # type: ignore[arg-type]
    session.execute(update(LibraryEntry).where(
        LibraryEntry.upload_id == waiting).values(changed_at=_utcnow()))  # type: ignore[arg-type]
    return True


def _delete_uploads(session: Session, upload_ids: Sequence[int]) -> None:
    if not upload_ids:
        return
    # Entries first: SQLite runs without cascades unless told, and the order is cheap.
    session.execute(delete(LibraryEntry).where(
        LibraryEntry.upload_id.in_(list(upload_ids))))  # type: ignore[union-attr]
    session.execute(delete(LibraryUpload).where(
        LibraryUpload.id.in_(list(upload_ids))))  # type: ignore[union-attr]


def discard_waiting(session: Session, subscriber_id: int | None = None, *,
                    keep: int | None = None, before: datetime | None = None) -> int:
    """Delete files waiting for a confirmation (one reader's, or every reader's waiting
    since before `before`: expired sign-ups). Returns how many."""
    query = select(LibraryUpload.id).where(LibraryUpload.nonce.is_not(None))  # type: ignore[union-attr]
    if subscriber_id is not None:
        query = query.where(LibraryUpload.subscriber_id == subscriber_id)  # type: ignore[arg-type]
    if keep is not None:
        query = query.where(LibraryUpload.id != keep)  # type: ignore[arg-type]
    if before is not None:
        query = query.where(LibraryUpload.uploaded_at < before)  # type: ignore[arg-type]
    ids = list(session.execute(query).scalars())
    _delete_uploads(session, ids)
    return len(ids)


def remove_library(session: Session, subscriber_id: int) -> bool:
    """The reader's library file and its entries gone (their author feed stays)."""
    ids = list(session.execute(select(LibraryUpload.id).where(
        LibraryUpload.subscriber_id == subscriber_id,  # type: ignore[arg-type]
        LibraryUpload.nonce.is_(None))).scalars())  # type: ignore[union-attr]
    _delete_uploads(session, ids)
    return bool(ids)


def set_author(session: Session, prefs: Preferences, author: str | None) -> bool:
    """Store the reader's author identifier; a new one (or none) drops the papers of the
    old one's feed, and the next sweep reads the new feed. True when it changed."""
    if prefs.arxiv_author == author:
        return False
    session.execute(delete(LibraryEntry).where(
        LibraryEntry.subscriber_id == prefs.subscriber_id,  # type: ignore[arg-type]
        LibraryEntry.source == AUTHOR))  # type: ignore[arg-type]
    prefs.arxiv_author = author
    prefs.author_fetched_at = None
    return True


def store_author_papers(session: Session, subscriber_id: int,
                        papers: Sequence[tuple[str, str]], now: datetime | None = None) -> int:
    """The (arXiv id, title) of an author feed, newest first, as the reader's author
    entries (the newest AUTHOR_PAPERS). A paper the reader dropped stays dropped; one no
    longer in the feed goes. Returns how many count."""
    now = now or _utcnow()
    kept = {arxiv_id: (entry_id, dropped) for entry_id, arxiv_id, dropped in session.execute(
        select(LibraryEntry.id, LibraryEntry.arxiv_id, LibraryEntry.dropped).where(
            LibraryEntry.subscriber_id == subscriber_id,  # type: ignore[arg-type]
            LibraryEntry.source == AUTHOR))}  # type: ignore[arg-type]
    wanted: dict[str, str] = {}
    for arxiv_id, title in papers:
        if len(wanted) < AUTHOR_PAPERS:
            wanted.setdefault(arxiv_id, title)
    gone = [entry_id for arxiv_id, (entry_id, _) in kept.items() if arxiv_id not in wanted]
    if gone:
        session.execute(delete(LibraryEntry).where(
            LibraryEntry.id.in_(gone)))  # type: ignore[union-attr]
    new = [{"subscriber_id": subscriber_id, "upload_id": None, "source": AUTHOR,
            "number": number, "title": title, "arxiv_id": arxiv_id, "doi": None,
            "abstract": None, "state": ARXIV, "dropped": False, "vector": None,
            "vector_model": None, "changed_at": now}
           for number, (arxiv_id, title) in enumerate(wanted.items(), start=1)
           if arxiv_id not in kept]
    if new:
        session.execute(LibraryEntry.__table__.insert(), new)  # type: ignore[attr-defined]
    return sum(1 for arxiv_id in wanted if not kept.get(arxiv_id, (0, False))[1])


def drop(session: Session, subscriber_id: int, entry_ids: Sequence[int],
         dropped: bool = True) -> int:
    """Drop (or bring back) some of the reader's entries; only their own are touched."""
    if not entry_ids:
        return 0
    result = session.execute(update(LibraryEntry).where(
        LibraryEntry.subscriber_id == subscriber_id,  # type: ignore[arg-type]
        LibraryEntry.id.in_(list(entry_ids)),  # type: ignore[union-attr]
        LibraryEntry.dropped != dropped).values(  # type: ignore[arg-type]
        dropped=dropped, changed_at=_utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Shelf:
    """What a reader brought, for their manage page and their export."""

    author: str | None
    author_read_at: datetime | None  # when their feed was last read (None: not yet)
    upload: LibraryUpload | None
    entries: tuple[LibraryEntry, ...]  # author feed first, then the file, in order

    def counting(self) -> int:
        return sum(1 for e in self.entries if not e.dropped and e.state in (ARXIV, TEXT))


def shelf_of(session: Session, subscriber_id: int) -> Shelf:
    prefs = session.get(Preferences, subscriber_id)
    upload = session.execute(select(LibraryUpload).where(
        LibraryUpload.subscriber_id == subscriber_id,  # type: ignore[arg-type]
        LibraryUpload.nonce.is_(None))).scalars().first()  # type: ignore[union-attr]
    # Not their vectors: a 3,000-entry library's would be megabytes for a page view.
    entries = session.execute(select(LibraryEntry).options(defer(LibraryEntry.vector)).where(
        LibraryEntry.subscriber_id == subscriber_id,  # type: ignore[arg-type]
        or_(LibraryEntry.source == AUTHOR,  # type: ignore[arg-type]
            LibraryEntry.upload_id == (upload.id if upload else -1)))  # type: ignore[arg-type]
        .order_by(LibraryEntry.source, LibraryEntry.number)).scalars().all()
    fetched = prefs.author_fetched_at if prefs else None
    return Shelf(prefs.arxiv_author if prefs else None,
                 aware(fetched) if fetched else None, upload,
                 tuple(sorted(entries, key=lambda e: (e.source != AUTHOR, e.number))))


def counted(session: Session, subscriber_id: int) -> tuple[list[str], list[bytes], str | None]:
    """What the reader's model learns from their own papers: the arXiv ids of the entries
    that count, and the vectors of those standing for themselves, with the vector model
    those are in (model mismatches are the caller's to skip)."""
    arxiv_ids: list[str] = []
    own: list[bytes] = []
    models: set[str] = set()
    for state, arxiv_id, vector, vector_model in session.execute(
            select(LibraryEntry.state, LibraryEntry.arxiv_id, LibraryEntry.vector,
                   LibraryEntry.vector_model).where(
                LibraryEntry.subscriber_id == subscriber_id,  # type: ignore[arg-type]
                LibraryEntry.dropped.is_(False),  # type: ignore[attr-defined]
                _in_use())):
        if state == ARXIV and arxiv_id and arxiv_id not in arxiv_ids:
            arxiv_ids.append(arxiv_id)
        elif state in (TEXT, LOOKUP) and vector is not None:
            # One still to be looked up counts by its own words meanwhile: a long library
            # takes days of sweeps to look up, and the first digest should not wait.
            own.append(vector)
            models.add(vector_model)
    return arxiv_ids, own, (models.pop() if len(models) == 1 else None)


def _in_use() -> Any:
    """Entries of the author feed, or of a file that is the reader's (not waiting)."""
    waiting = select(LibraryUpload.id).where(LibraryUpload.nonce.is_not(None))  # type: ignore[union-attr]
    return or_(LibraryEntry.upload_id.is_(None),  # type: ignore[union-attr]
               LibraryEntry.upload_id.not_in(waiting))  # type: ignore[union-attr]


def changed_since(session: Session) -> dict[int, datetime]:
    """Per reader, when their own papers last changed in a way their model learns from."""
    return {subscriber_id: aware(at) for subscriber_id, at in session.execute(
        select(LibraryEntry.subscriber_id, func.max(LibraryEntry.changed_at))
        .where(_in_use()).group_by(LibraryEntry.subscriber_id)) if at is not None}


def arxiv_ids_wanted(session: Session) -> set[str]:
    """Every arXiv id some reader's own papers name, for the sweep to fetch if we lack it."""
    return set(session.execute(select(LibraryEntry.arxiv_id).where(
        LibraryEntry.state == ARXIV, LibraryEntry.dropped.is_(False),  # type: ignore[arg-type, attr-defined]
        _in_use()).distinct()).scalars())


def counted_arxiv_ids(session: Session, subscriber_ids: Sequence[int] | None = None
                      ) -> dict[int, list[str]]:
    """Each reader's counting arXiv entries (every reader's, or these readers'), in order."""
    query = (select(LibraryEntry.subscriber_id, LibraryEntry.arxiv_id)
             .where(LibraryEntry.state == ARXIV,  # type: ignore[arg-type]
                    LibraryEntry.dropped.is_(False), _in_use())  # type: ignore[attr-defined]
             .order_by(LibraryEntry.subscriber_id, LibraryEntry.source, LibraryEntry.number))
    if subscriber_ids is not None:
        query = query.where(LibraryEntry.subscriber_id.in_(list(subscriber_ids)))  # type: ignore[attr-defined]
    found: dict[int, list[str]] = {}
    for subscriber_id, arxiv_id in session.execute(query):
        found.setdefault(subscriber_id, []).append(arxiv_id)
    return found


def own_arxiv_papers(session: Session, subscriber_ids: Sequence[int], most: int
                     ) -> dict[int, list[tuple[str, str]]]:
    """(arXiv id, source) of each reader's counting arXiv entries, at most `most` each
    (the author feed's newest first, then the file's in order), for the why-line."""
    found: dict[int, list[tuple[str, str]]] = {}
    for subscriber_id, arxiv_id, source in session.execute(
            select(LibraryEntry.subscriber_id, LibraryEntry.arxiv_id, LibraryEntry.source)
            .where(LibraryEntry.subscriber_id.in_(list(subscriber_ids)),  # type: ignore[attr-defined]
                   LibraryEntry.state == ARXIV,  # type: ignore[arg-type]
                   LibraryEntry.dropped.is_(False), _in_use())  # type: ignore[attr-defined]
            .order_by(LibraryEntry.subscriber_id, LibraryEntry.source, LibraryEntry.number)):
        mine = found.setdefault(subscriber_id, [])
        if len(mine) < most:
            mine.append((arxiv_id, source))
    return found


def own_texts(session: Session, subscriber_ids: Sequence[int], vector_model: str, most: int
              ) -> dict[int, list[tuple[int, str]]]:
    """(entry id, title) of each reader's entries standing for themselves with a vector in
    `vector_model`, at most `most` each, for the why-line."""
    found: dict[int, list[tuple[int, str]]] = {}
    for subscriber_id, entry_id, title in session.execute(
            select(LibraryEntry.subscriber_id, LibraryEntry.id, LibraryEntry.title)
            .where(LibraryEntry.subscriber_id.in_(list(subscriber_ids)),  # type: ignore[attr-defined]
                   LibraryEntry.state == TEXT,  # type: ignore[arg-type]
                   LibraryEntry.vector_model == vector_model,  # type: ignore[arg-type]
                   LibraryEntry.dropped.is_(False), _in_use())  # type: ignore[attr-defined]
            .order_by(LibraryEntry.subscriber_id, LibraryEntry.number)):
        mine = found.setdefault(subscriber_id, [])
        if len(mine) < most:
            mine.append((entry_id, title))
    return found


def own_vectors(session: Session, entry_ids: Sequence[int], vector_model: str, dims: int
                ) -> tuple[list[int], sp.csr_matrix | None]:
    """The entries of these that have a vector in `vector_model`, and those vectors."""
    if not entry_ids:
        return [], None
    rows = session.execute(select(LibraryEntry.id, LibraryEntry.vector).where(
        LibraryEntry.id.in_(list(entry_ids)),  # type: ignore[union-attr]
        LibraryEntry.vector_model == vector_model,  # type: ignore[arg-type]
        LibraryEntry.vector.is_not(None))  # type: ignore[union-attr]
        .order_by(LibraryEntry.id)).all()
    if not rows:
        return [], None
    return [r[0] for r in rows], vectors.stack([r[1] for r in rows], dims)
